"""monitor_infrastructure and query_metrics through the tool registry, on the Kubernetes API test
server and a real Prometheus: real figures, or the reason there are none."""

from __future__ import annotations

import pytest
from kubernetes import client

from pipeline_bot.errors import ToolError
from pipeline_bot.integrations.kubernetes import KubernetesCluster
from pipeline_bot.integrations.prometheus import PrometheusMetrics
from pipeline_bot.tools import ToolContext, build_registry


def _cluster_factory(url):
    def make(_env):
        cfg = client.Configuration()
        cfg.host = url
        return KubernetesCluster(client.ApiClient(cfg))

    return make


def _figures(result):
    return {f.name: f for f in result.figures}


def test_figures_come_from_the_cluster_and_prometheus(kube_api, prometheus):
    ctx = ToolContext(cluster=_cluster_factory(kube_api.url), metrics=PrometheusMetrics(prometheus))
    result = build_registry().call("monitor_infrastructure", {"namespace": "gates-good"}, ctx)
    f = _figures(result)
    assert (f["nodes"].value, f["nodes"].detail) == (2, {"total": 3, "not_ready": ["node-2"]})
    assert f["cpu"].value == pytest.approx(1.0)
    assert f["memory"].value == 256 * 2**20
    assert f["cpu"].source == "prometheus"
    assert 'namespace="gates-good"' in f["cpu"].detail["query"]


def test_pods_by_phase_and_restarts(kube_api, namespace):
    import json
    import urllib.request

    pod = {
        "metadata": {"name": "p1"},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Pending"},
    }
    req = urllib.request.Request(
        f"{kube_api.url}/api/v1/namespaces/{namespace}/pods",
        data=json.dumps(pod).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(req, timeout=5).close()
    ctx = ToolContext(cluster=_cluster_factory(kube_api.url))
    result = build_registry().call(
        "monitor_infrastructure", {"namespace": namespace, "metrics": ["pods", "restarts"]}, ctx
    )
    f = _figures(result)
    assert f["pods"].value == 1
    assert f["pods"].detail["by_phase"] in ({"Pending": 1}, {"Running": 1})
    assert f["restarts"].value == 0


def test_figures_that_cannot_be_had_say_why(kube_api):
    ctx = ToolContext(cluster=_cluster_factory("http://127.0.0.1:9"))
    result = build_registry().call("monitor_infrastructure", {}, ctx)
    f = _figures(result)
    assert f["nodes"].value is None
    assert "unreachable" in f["nodes"].unavailable
    assert f["cpu"].value is None
    assert "no Prometheus is configured" in f["cpu"].unavailable


def test_no_data_is_unavailable_not_zero(kube_api, prometheus):
    ctx = ToolContext(cluster=_cluster_factory(kube_api.url), metrics=PrometheusMetrics(prometheus))
    result = build_registry().call(
        "monitor_infrastructure", {"namespace": "nowhere", "metrics": ["cpu"]}, ctx
    )
    (cpu,) = result.figures
    assert cpu.value is None
    assert "no data" in cpu.unavailable


def test_query_metrics(prometheus):
    ctx = ToolContext(metrics=PrometheusMetrics(prometheus))
    result = build_registry().call(
        "query_metrics",
        {"query": 'sum(container_memory_working_set_bytes{namespace="gates-good"})'},
        ctx,
    )
    assert [s.value for s in result.samples] == [256 * 2**20]
    with pytest.raises(ToolError, match="needs a Prometheus"):
        build_registry().call("query_metrics", {"query": "up"}, ToolContext())
