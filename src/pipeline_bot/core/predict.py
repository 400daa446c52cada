"""Warnings before trouble, from trends: PromQL that finds what will break within a horizon.

Each query returns one series per thing in trouble (a container, a filesystem, a namespace);
each series becomes a finding that names it and the value behind the warning. A prediction that
needs an input which may be missing (a memory limit) has a `requires` query too: when that returns
nothing, the finding says the check could not be made instead of staying silent.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline_bot.models import Finding, MetricSample, Severity


@dataclass(frozen=True)
class Prediction:
    rule: str
    severity: Severity
    query: str  # placeholders: {namespace}, {horizon} (seconds), {hours}
    message: str  # placeholders: the series' labels, {value}, {hours}
    requires: str = ""  # empty answer: the input is missing (placeholder: {namespace})
    missing: str = ""  # why it could not be checked, then (placeholder: {namespace})


# kube-state-metrics' limit where it is installed, else cAdvisor's (whose 0 means "no limit")
_MEMORY_LIMIT = (
    "max by (namespace, pod, container) (kube_pod_container_resource_limits{{"
    'namespace="{namespace}",resource="memory"}}) or max by (namespace, pod, container) '
    '(container_spec_memory_limit_bytes{{namespace="{namespace}",container!=""}} > 0)'
)


PREDICTIONS = (
    Prediction(
        "predicted-memory-exhaustion",
        "high",
        "max by (namespace, pod, container) (predict_linear(container_memory_working_set_bytes{{"
        'namespace="{namespace}",container!=""}}[1h], {horizon})) / on(namespace, pod, container) '
        f"({_MEMORY_LIMIT}) > 1",
        "{pod}/{container} will reach its memory limit within {hours} h at its current trend "
        "({value:.0%} of the limit by then)",
        requires=_MEMORY_LIMIT,
        missing="no memory limit found in {namespace} (neither kube-state-metrics' "
        'kube_pod_container_resource_limits{{resource="memory"}} nor cAdvisor\'s '
        "container_spec_memory_limit_bytes)",
    ),
    Prediction(
        "predicted-disk-exhaustion",
        "high",
        'predict_linear(node_filesystem_avail_bytes{{fstype!~"tmpfs|overlay|squashfs"}}[6h], '
        "{horizon}) < 0",
        "{instance} {mountpoint} will run out of space within {hours} h at its current trend",
    ),
    Prediction(
        "error-rate-rising",
        "medium",
        '(sum(rate(http_requests_total{{namespace="{namespace}",code=~"5.."}}[10m])) / '
        'sum(rate(http_requests_total{{namespace="{namespace}"}}[10m]))) > 0.01 and '
        '(sum(rate(http_requests_total{{namespace="{namespace}",code=~"5.."}}[10m])) / '
        'sum(rate(http_requests_total{{namespace="{namespace}"}}[10m]))) > 2 * '
        '(sum(rate(http_requests_total{{namespace="{namespace}",code=~"5.."}}[1h] offset 10m)) / '
        'sum(rate(http_requests_total{{namespace="{namespace}"}}[1h] offset 10m)))',
        "the error rate in {namespace} is {value:.1%}, more than twice the hour before",
    ),
)


def query_for(p: Prediction, *, namespace: str, hours: float) -> str:
    return p.query.format(namespace=namespace, horizon=int(hours * 3600), hours=f"{hours:g}")


def requirement_for(p: Prediction, *, namespace: str) -> tuple[str, str] | None:
    """The query whose empty answer means `p` cannot be checked, and the reason to give then."""
    if not p.requires:
        return None
    return f"count({p.requires.format(namespace=namespace)})", p.missing.format(namespace=namespace)


def could_not_check(p: Prediction, why: str) -> Finding:
    """A prediction that could not be made is said, never silently skipped."""
    return Finding(path=None, severity="info", rule=p.rule, message=f"could not check: {why}")


def findings_for(
    p: Prediction, samples: list[MetricSample], *, namespace: str, hours: float
) -> list[Finding]:
    out = []
    for s in samples:
        labels = {
            "pod": "?",
            "container": "?",
            "instance": "?",
            "mountpoint": "?",
            **s.labels,
            "namespace": namespace,
        }
        message = p.message.format(**labels, value=s.value, hours=f"{hours:g}")
        out.append(Finding(path=None, severity=p.severity, rule=p.rule, message=message))
    return out
