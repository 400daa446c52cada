"""pipeline-bot's own metrics (prometheus-client): deploys, rollbacks, gate evaluations, durations.

One registry of our own (not the process-wide default), so the App can serve it on /metrics and
the CLI or the Action can write it as a node-exporter textfile.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    push_to_gateway,
    write_to_textfile,
)

REGISTRY = CollectorRegistry(auto_describe=True)
DEPLOYS = Counter(
    "pipeline_bot_deploys",
    "Deploys by strategy and result.",
    ["strategy", "result"],
    registry=REGISTRY,
)
ROLLBACKS = Counter(
    "pipeline_bot_rollbacks", "Automatic and requested rollbacks.", ["strategy"], registry=REGISTRY
)
DEPLOY_SECONDS = Histogram(
    "pipeline_bot_deploy_duration_seconds",
    "How long deploys took.",
    ["strategy"],
    registry=REGISTRY,
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
)
GATE_EVALUATIONS = Counter(
    "pipeline_bot_gate_evaluations",
    "Gate checks by gate and outcome.",
    ["gate", "outcome"],
    registry=REGISTRY,
)


def write_textfile(path: Path) -> None:
    """Write every metric in the text format (atomically: a temporary file, then a rename)."""
    write_to_textfile(str(path), REGISTRY)


def push(gateway: str, *, job: str = "pipeline-bot") -> None:
    """Push every metric to a Pushgateway, replacing this job's previous push. A gateway that
    cannot be reached gets a warning on stderr: the deploy's own outcome stands."""
    try:
        push_to_gateway(gateway, job=job, registry=REGISTRY, timeout=10)
    except OSError as exc:
        import sys

        sys.stderr.write(f"warning: could not push metrics to {gateway}: {type(exc).__name__}\n")
