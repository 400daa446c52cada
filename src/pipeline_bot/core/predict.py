"""Warnings before trouble, from trends: PromQL that finds what will break within a horizon.

Each query returns one series per thing in trouble (a container, a filesystem, a namespace);
each series becomes a finding that names it and the value behind the warning.
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


PREDICTIONS = (
    Prediction(
        "predicted-memory-exhaustion",
        "high",
        'predict_linear(container_memory_working_set_bytes{{namespace="{namespace}",container!=""}}'
        "[1h], {horizon}) / on(namespace, pod, container) "
        'container_spec_memory_limit_bytes{{namespace="{namespace}",container!=""}} > 1',
        "{pod}/{container} will reach its memory limit within {hours} h at its current trend "
        "({value:.0%} of the limit by then)",
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
