"""Faults in front of the real API server (issue 17, point 3): toxiproxy, built from its Go module
by scripts/kube-control-plane, passes TLS through to kube-apiserver, and a test adds a toxic:
connections reset, responses cut short or never finished. What the official client does then."""

from __future__ import annotations

import pytest
import urllib3
from kubernetes import client, config


def _core(kube_control_plane, tmp_path, *, retries: int = 0) -> client.CoreV1Api:
    path = kube_control_plane.faulty_kubeconfig(tmp_path / "faulty.kubeconfig")
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=cfg)
    cfg.retries = retries
    return client.CoreV1Api(client.ApiClient(cfg))


@pytest.fixture
def faults(kube_control_plane):
    kube_control_plane.clear_toxics()
    yield kube_control_plane
    kube_control_plane.clear_toxics()


def test_the_faulty_server_is_the_real_api_server_when_no_toxic_is_on(faults, tmp_path):
    core = _core(faults, tmp_path)
    names = {n.metadata.name for n in core.list_namespace().items}
    assert {"default", "kube-system"} <= names


def test_reset_connections_fail_requests_until_the_toxic_is_removed(faults, tmp_path):
    core = _core(faults, tmp_path)
    faults.toxic("reset_peer", timeout=0)
    with pytest.raises(urllib3.exceptions.HTTPError):
        core.list_namespace(_request_timeout=10)
    faults.clear_toxics()
    assert core.list_namespace(_request_timeout=10).items


def test_a_response_that_never_ends_times_the_client_out(faults, tmp_path):
    core = _core(faults, tmp_path)
    faults.toxic("timeout", timeout=0)  # data is held until the toxic goes
    with pytest.raises(urllib3.exceptions.HTTPError):
        core.list_namespace(_request_timeout=2)
    faults.clear_toxics()
    assert core.list_namespace(_request_timeout=10).items


def test_latency_slows_but_does_not_break_requests(faults, tmp_path):
    core = _core(faults, tmp_path)
    faults.toxic("latency", latency=300, jitter=100)
    assert [t["type"] for t in faults.toxics()] == ["latency"]
    assert core.list_namespace(_request_timeout=30).items
