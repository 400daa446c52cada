"""What decides between canary steps. Metric gates arrive with the Prometheus work; until then a
step pauses for its configured time, and the interface is what those gates implement."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pipeline_bot.core.canary import (
    GateResult,
    Measurement,
    judge_gate,
    measure,
    render,
    seconds,
    verdict,
)
from pipeline_bot.errors import ConfigError, ConfigProblem, IntegrationError
from pipeline_bot.integrations.ports import MetricsPort
from pipeline_bot.models import MetricSample
from pipeline_bot.observability import GATE_EVALUATIONS
from pipeline_bot.repo_config import MetricGate

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
    def prepare(self, namespace: str, app: str) -> None:
        """Check what can be checked before anything is deployed; raise if it cannot work."""

    def evaluate(self, step: StepContext) -> Verdict: ...


class PauseGate:
    """Waits the step's pause, then lets the canary continue (no metrics consulted)."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self.sleep = sleep

    def prepare(self, namespace: str, app: str) -> None:
        return None

    def evaluate(self, step: StepContext) -> Verdict:
        if step.pause_seconds:
            self.sleep(step.pause_seconds)
        return Verdict(
            "continue",
            f"paused {step.pause_seconds}s at {step.weight}%; no metric gate is configured",
        )


class PrometheusGate:
    """Measures the canary with PromQL gates and judges it (see core.canary)."""

    def __init__(
        self,
        metrics: MetricsPort,
        gates: Sequence[MetricGate],
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.metrics = metrics
        self.gates = list(gates)
        self.sleep, self.clock, self.now = sleep, clock, now

    def prepare(self, namespace: str, app: str) -> None:
        """Run every query once before anything is deployed: a query Prometheus cannot parse
        (or a Prometheus that cannot be reached) stops the deploy before it starts."""
        values = _values(namespace, app, f"{app}-canary", app, "1m")
        for gate in self.gates:
            query = _render(gate, values)
            try:
                self.metrics.query(query, at=self.now())
            except IntegrationError as exc:
                if exc.status not in (400, 422):
                    raise  # Prometheus unreachable or failing: not the config's fault
                raise ConfigError(
                    "gates", [ConfigProblem(f"gates.{gate.name}.query", exc.message)]
                ) from None

    def check(
        self,
        *,
        namespace: str,
        app: str,
        canary: str,
        stable: str,
        last_step: bool,
        once: bool = False,
    ) -> tuple[str, str, list[GateResult]]:
        """Every gate's measurements on its own schedule (initial_delay, then count x interval),
        then the verdict. `once`: one measurement per gate, now."""
        schedule = sorted(
            (0.0 if once else seconds(g.initial_delay) + k * seconds(g.interval), i, g)
            for i, g in enumerate(self.gates)
            for k in range(1 if once else g.count)
        )
        start = self.clock()
        taken: dict[str, list[Measurement]] = {g.name: [] for g in self.gates}
        for at, _, gate in schedule:
            wait = at - (self.clock() - start)
            if wait > 0:
                self.sleep(wait)
            taken[gate.name].append(self._measure(gate, namespace, app, canary, stable))
        results = [judge_gate(g, taken[g.name]) for g in self.gates]
        for r in results:
            GATE_EVALUATIONS.labels(r.gate, r.outcome).inc()
        decision, reason = verdict(results, last_step=last_step)
        return decision, reason, results

    def evaluate(self, step: StepContext) -> Verdict:
        stable = (step.stable or {}).get("metadata", {}).get("name", step.app)
        decision, reason, results = self.check(
            namespace=step.namespace,
            app=step.app,
            canary=step.canary["metadata"]["name"],
            stable=stable,
            last_step=False,
        )
        rows = [m.as_dict() for r in results for m in r.measurements]
        return Verdict("continue" if decision == "promote" else decision, reason, rows)  # type: ignore[arg-type]

    def _measure(
        self, gate: MetricGate, namespace: str, app: str, canary: str, stable: str
    ) -> Measurement:
        values = _values(namespace, app, canary, stable, gate.interval)
        query = _render(gate, values)
        try:
            samples = self.metrics.query(query, at=self.now())
            baseline: list[MetricSample] | None = None
            if gate.compare_to_stable is not None:
                swapped = {"canary": stable, "canary_pods": values["stable_pods"]}
                base_query = _render(gate, {**values, **swapped})
                baseline = self.metrics.query(base_query, at=self.now())
        except IntegrationError as exc:
            return measure(gate, query, [], error=exc.message)
        return measure(gate, query, samples, stable=baseline)


def _values(namespace: str, app: str, canary: str, stable: str, interval: str) -> dict[str, str]:
    return {
        "app": app,
        "namespace": namespace,
        "canary": canary,
        "stable": stable,
        "interval": interval,
        "canary_pods": pods_of(canary),
        "stable_pods": pods_of(stable),
    }


def pods_of(deployment: str) -> str:
    """A regex for the pods of one Deployment (`<name>-<replicaset hash>-<pod hash>`): unlike
    `<name>-.*`, the stable `shop` does not also match the pods of `shop-canary`."""
    return f"{deployment}-[a-z0-9]+-[a-z0-9]+"


def _render(gate: MetricGate, values: dict[str, str]) -> str:
    try:
        return render(gate.query, values)
    except ValueError as exc:
        raise ConfigError("gates", [ConfigProblem(f"gates.{gate.name}.query", str(exc))]) from None
