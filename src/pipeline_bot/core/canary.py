"""Measurements -> a verdict on the canary: promote, continue, rollback or inconclusive.

Every measurement keeps its query, value, threshold and reason, so a report can say exactly why.
Per gate (Argo Rollouts' rules): more failed measurements than `failure_limit`, or more query
errors in a row than `consecutive_error_limit`, fail it; an empty result counts as its `no_data`
policy says, and so does a comparison with a stable version that has no data, and a query that
failed (Prometheus gone: no data either), except that a failed query never passes: with
`no_data: pass` it is inconclusive. A query that returns several series is judged on every
one of them: the worst decides the measurement, and its reason names that series.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pipeline_bot.models import MetricSample
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
    series: str | None = None  # the deciding series' labels, when the query returned several

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
            "series": self.series,
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
    samples: Sequence[MetricSample],
    *,
    error: str | None = None,
    stable: Sequence[MetricSample] | None = None,
) -> Measurement:
    """One measurement: every series judged against the gate's threshold (and against stable's
    series with the same labels, or stable's only series, when compared); the worst decides."""
    threshold = describe(gate.success_condition, gate.compare_to_stable)
    if error is not None:  # no data either: its policy decides, but an outage is never a pass
        failed = False if gate.no_data == "fail" else None
        reason = f"query failed: {error} (policy for no data: {gate.no_data})"
        return Measurement(gate.name, query, None, threshold, failed, reason, error)
    if not samples:
        passed = _NO_DATA[gate.no_data]
        return Measurement(
            gate.name, query, None, threshold, passed, f"no data (policy: {gate.no_data})"
        )
    judged = [_judge_series(gate, s, _baseline(s, stable), threshold) for s in samples]
    worst = min(judged, key=lambda j: (_RANK[j.passed], -j.badness))
    name = _series_name(worst.labels) if len(judged) > 1 else None
    reason = (
        f"series {name}: {worst.reason} (worst of {len(judged)} series)" if name else worst.reason
    )
    return Measurement(
        gate.name,
        query,
        worst.value,
        threshold,
        worst.passed,
        reason,
        baseline=worst.baseline,
        series=name,
    )


_NO_DATA: dict[str, bool | None] = {"pass": True, "fail": False, "inconclusive": None}
_RANK: dict[bool | None, int] = {False: 0, None: 1, True: 2}  # failed, then unknown, then passed


@dataclass(frozen=True)
class _Judged:
    labels: dict[str, str]
    value: float
    baseline: float | None
    passed: bool | None
    reason: str
    badness: float  # how far past (> 0) or short of (<= 0) its nearest bound


def _judge_series(
    gate: MetricGate, sample: MetricSample, baseline: float | None, threshold: str
) -> _Judged:
    value, comparison = sample.value, gate.compare_to_stable
    problems = _threshold_problems(value, gate.success_condition)
    missing_stable = comparison is not None and baseline is None
    if comparison is not None and baseline is not None:
        problems += _comparison_problems(value, baseline, comparison)
    if problems:
        passed: bool | None = False
        reason = "; ".join(problems)
    elif missing_stable:  # nothing to compare with is missing data: no_data decides
        passed = _NO_DATA[gate.no_data]
        reason = f"stable has no data to compare with (policy: {gate.no_data})"
        if passed:
            reason = f"{value:g} is within {describe(gate.success_condition)}; {reason}"
    else:
        passed, reason = True, f"{value:g} is within {threshold}"
    badness = _badness(value, gate.success_condition, baseline, comparison)
    return _Judged(dict(sample.labels), value, baseline, passed, reason, badness)


def _baseline(sample: MetricSample, stable: Sequence[MetricSample] | None) -> float | None:
    """Stable's series with the same labels; else stable's only series; else none."""
    if not stable:
        return None
    same = [s.value for s in stable if s.labels == sample.labels]
    if same:
        return same[0]
    return stable[0].value if len(stable) == 1 else None


def _badness(
    value: float, t: Threshold, baseline: float | None, c: StableComparison | None
) -> float:
    terms = []
    if t.min is not None:
        terms.append(t.min - value)
    if t.max is not None:
        terms.append(value - t.max)
    if c is not None and baseline is not None:
        if c.max_increase is not None:
            terms.append(value - baseline * (1 + c.max_increase))
        if c.max_decrease is not None:
            terms.append(baseline * (1 - c.max_decrease) - value)
    return max(terms)


def _series_name(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _threshold_problems(value: float, t: Threshold) -> list[str]:
    out = []
    if t.min is not None and value < t.min:
        out.append(f"{value:g} is below the minimum {t.min:g}")
    if t.max is not None and value > t.max:
        out.append(f"{value:g} is above the maximum {t.max:g}")
    return out


def _comparison_problems(value: float, baseline: float, c: StableComparison) -> list[str]:
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
