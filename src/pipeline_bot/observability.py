"""pipeline-bot's own metrics (prometheus-client): deploys, rollbacks, gate evaluations, durations.

One registry of our own (not the process-wide default), so the App can serve it on /metrics and
the CLI or the Action can write it as a node-exporter textfile.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, write_to_textfile

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
