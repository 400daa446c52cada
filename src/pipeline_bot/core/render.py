"""DeployRequest -> the Deployment and Service to apply when a repository has no manifests."""

from __future__ import annotations

from typing import Any

from pipeline_bot.models import DeployRequest

Obj = dict[str, Any]
APP_LABEL = "app.kubernetes.io/name"


def render_app(req: DeployRequest, *, namespace: str, replicas: int) -> list[Obj]:
    """A Deployment running `req.image` and a ClusterIP Service in front of it."""
    labels = {APP_LABEL: req.app}
    container: Obj = {
        "name": req.app,
        "image": req.image,
        "ports": [{"name": "http", "containerPort": req.port}],
    }
    resources = _resources(req)
    if resources:
        container["resources"] = resources
    if req.readiness is not None:
        probe = req.readiness
        container["readinessProbe"] = {
            "httpGet": {"path": probe.path, "port": probe.port or req.port},
            "initialDelaySeconds": probe.initial_delay_seconds,
            "periodSeconds": probe.period_seconds,
            "failureThreshold": probe.failure_threshold,
        }
    deployment: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": req.app, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": [container]}},
        },
    }
    service: Obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": req.app, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "selector": dict(labels),
            "ports": [{"name": "http", "port": 80, "targetPort": req.port}],
        },
    }
    return [deployment, service]


def _resources(req: DeployRequest) -> Obj:
    r = req.resources
    requests = {k: v for k, v in (("cpu", r.cpu_request), ("memory", r.memory_request)) if v}
    limits = {k: v for k, v in (("cpu", r.cpu_limit), ("memory", r.memory_limit)) if v}
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
