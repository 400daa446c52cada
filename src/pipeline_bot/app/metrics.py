"""The App's own metrics at /metrics: deliveries by event and outcome, queue depth, latency."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()
DELIVERIES = Counter(
    "pipeline_bot_app_deliveries",
    "Webhook deliveries by event and outcome (accepted, duplicate, ignored, rejected, done, "
    "retried, failed).",
    ["event", "outcome"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "pipeline_bot_app_queue_depth", "Deliveries waiting or being worked.", registry=REGISTRY
)
HANDLER_SECONDS = Histogram(
    "pipeline_bot_app_handler_seconds",
    "Time a handler took for one delivery.",
    ["event"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
    registry=REGISTRY,
)
INTAKE_SECONDS = Histogram(
    "pipeline_bot_app_intake_seconds",
    "Time from request to acknowledgement at /webhooks.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
    registry=REGISTRY,
)
