"""Measurements -> a verdict on the canary: promote, continue, rollback or inconclusive.

Every measurement keeps its query, value, threshold and reason, so a report can say exactly why.
Per gate (Argo Rollouts' rules): more failed measurements than `failure_limit`, or more query
errors in a row than `consecutive_error_limit`, fail it; an empty result counts as its `no_data`
policy says; a gate whose measurements all errored is never a pass.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pipeline_bot.repo_config import MetricGate, StableComparison, Threshold

Decision = Literal["promote", "continue", "rollback", "inconclusive"]
Outcome = Literal["passed", "failed", "inconclusive"]

DEFAULT_GATES = (
    MetricGate(
        name="request-success-rate",
        query='sum(rate(http_requests_total{namespace="{{namespace}}",pod=~"{{canary_pods}}",'
        'code!~"5.."}[{{interval}}])) / sum(rate(http_requests_total{namespace="{{namespace}}",'
        'pod=~"{{canary_pods}}"}[{{interval}}]))',
        success_condition=Threshold(min=0.99),
    ),
    MetricGate(
        name="request-duration-p99",
        query="histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket{"
        'namespace="{{namespace}}",pod=~"{{canary_pods}}"}[{{interval}}])) by (le))',
        success_condition=Threshold(max=0.5),
    ),
)


@dataclass(frozen=True)
class Measurement:
    metric: str
    query: str
    value: float | None
    threshold: str
    passed: bool | None  # None: no data, or the query failed
    reason: str
    error: str | None = None
    baseline: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "query": self.query,
            "value": self.value,
            "threshold": self.threshold,
            "passed": self.passed,
            "reason": self.reason,
            "error": self.error,
            "baseline": self.baseline,
        }


@dataclass(frozen=True)
class GateResult:
    gate: str
    outcome: Outcome
    reason: str
    measurements: list[Measurement] = field(default_factory=list)


def render(template: str, values: dict[str, str]) -> str:
    """Fill {{name}} placeholders; an unknown one is an error, not an empty string."""

    def fill(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            raise ValueError(f"unknown placeholder {{{{{key}}}}} (known: {', '.join(values)})")
        return values[key]

    return re.sub(r"\{\{\s*(\w+)\s*\}\}", fill, template)


def describe(condition: Threshold, comparison: StableComparison | None = None) -> str:
    parts = []
    if condition.min is not None:
        parts.append(f">= {condition.min:g}")
    if condition.max is not None:
        parts.append(f"<= {condition.max:g}")
    if comparison and comparison.max_increase is not None:
        parts.append(f"<= stable x {1 + comparison.max_increase:g}")
    if comparison and comparison.max_decrease is not None:
        parts.append(f">= stable x {1 - comparison.max_decrease:g}")
    return " and ".join(parts)


def measure(
    gate: MetricGate,
    query: str,
    value: float | None,
    *,
    error: str | None = None,
    baseline: float | None = None,
) -> Measurement:
    """One measurement judged against the gate's threshold (and stable's value, if compared)."""
    threshold = describe(gate.success_condition, gate.compare_to_stable)
    if error is not None:
        return Measurement(gate.name, query, None, threshold, None, f"query failed: {error}", error)
    if value is None:
        passed = {"pass": True, "fail": False, "inconclusive": None}[gate.no_data]
        return Measurement(
            gate.name, query, None, threshold, passed, f"no data (policy: {gate.no_data})"
        )
    problems = _threshold_problems(value, gate.success_condition)
    if gate.compare_to_stable is not None:
        problems += _comparison_problems(value, baseline, gate.compare_to_stable)
    ok = not problems
    reason = f"{value:g} is within {threshold}" if ok else "; ".join(problems)
    return Measurement(gate.name, query, value, threshold, ok, reason, baseline=baseline)


def _threshold_problems(value: float, t: Threshold) -> list[str]:
    out = []
    if t.min is not None and value < t.min:
        out.append(f"{value:g} is below the minimum {t.min:g}")
    if t.max is not None and value > t.max:
        out.append(f"{value:g} is above the maximum {t.max:g}")
    return out


def _comparison_problems(value: float, baseline: float | None, c: StableComparison) -> list[str]:
    if baseline is None:
        return ["stable has no data to compare with"]
    out = []
    if c.max_increase is not None and value > baseline * (1 + c.max_increase):
        out.append(f"{value:g} is more than {c.max_increase:.0%} above stable's {baseline:g}")
    if c.max_decrease is not None and value < baseline * (1 - c.max_decrease):
        out.append(f"{value:g} is more than {c.max_decrease:.0%} below stable's {baseline:g}")
    return out


def judge_gate(gate: MetricGate, measurements: Sequence[Measurement]) -> GateResult:
    failed = [m for m in measurements if m.passed is False]
    errors = [m for m in measurements if m.error is not None]
    streak = longest = 0
    for m in measurements:
        streak = streak + 1 if m.error is not None else 0
        longest = max(longest, streak)
    ms = list(measurements)
    if len(failed) > gate.failure_limit:
        return GateResult(
            gate.name,
            "failed",
            f"{len(failed)} of {len(ms)} measurements failed "
            f"(limit {gate.failure_limit}): {failed[-1].reason}",
            ms,
        )
    if longest > gate.consecutive_error_limit:
        return GateResult(
            gate.name,
            "failed",
            f"{longest} query errors in a row (limit "
            f"{gate.consecutive_error_limit}): {errors[-1].error}",
            ms,
        )
    if ms and len(errors) == len(ms):
        return GateResult(gate.name, "inconclusive", f"every query failed: {errors[-1].error}", ms)
    unknown = [m for m in ms if m.passed is None]
    if unknown:
        return GateResult(
            gate.name,
            "inconclusive",
            f"{len(unknown)} of {len(ms)} measurements inconclusive: {unknown[-1].reason}",
            ms,
        )
    return GateResult(gate.name, "passed", f"{len(ms)} of {len(ms)} measurements passed", ms)


def verdict(results: Sequence[GateResult], *, last_step: bool) -> tuple[Decision, str]:
    """Any failed gate rolls back; any inconclusive one pauses; else on (or promote at the end)."""
    if not results:
        return "inconclusive", "no gates were evaluated"
    failed = [r for r in results if r.outcome == "failed"]
    if failed:
        return "rollback", "; ".join(f"{r.gate}: {r.reason}" for r in failed)
    unsure = [r for r in results if r.outcome == "inconclusive"]
    if unsure:
        return "inconclusive", "; ".join(f"{r.gate}: {r.reason}" for r in unsure)
    summary = "; ".join(f"{r.gate}: {r.reason}" for r in results)
    return ("promote" if last_step else "continue"), summary


def seconds(duration: str) -> float:
    """'90s', '5m', '1h', '250ms' -> seconds (the config's pattern guarantees the form)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    if not m:
        raise ValueError(f"{duration!r} is not a duration like 30s, 5m or 1h")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    return float(m.group(1)) * scale
