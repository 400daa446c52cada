"""What decides between canary steps. Metric gates arrive with the Prometheus work; until then a
step pauses for its configured time, and the interface is what those gates implement."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Decision = Literal["continue", "rollback", "inconclusive"]


@dataclass(frozen=True)
class StepContext:
    environment: str
    namespace: str
    app: str
    step: int
    weight: int
    pause_seconds: int
    canary: dict[str, Any]
    stable: dict[str, Any] | None


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str
    measurements: list[dict[str, Any]] = field(default_factory=list)


class Gate(Protocol):
    def evaluate(self, step: StepContext) -> Verdict: ...


class PauseGate:
    """Waits the step's pause, then lets the canary continue (no metrics consulted)."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self.sleep = sleep

    def evaluate(self, step: StepContext) -> Verdict:
        if step.pause_seconds:
            self.sleep(step.pause_seconds)
        return Verdict(
            "continue",
            f"paused {step.pause_seconds}s at {step.weight}%; no metric gate is configured",
        )
