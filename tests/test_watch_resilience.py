"""Watches that a real cluster ends: compacted history (410 Gone), watches the server closes, and
429 Too Many Requests, modelled by the Kubernetes API test server and survived by the rollout watch.

The first half checks the test server itself against the wire protocol (what a real API server
sends); the second half deploys through the engine while those failures happen.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import urllib3
from kubernetes import client

from pipeline_bot.deploy.engine import DeployEngine
from pipeline_bot.integrations.kubernetes import KubernetesCluster
from pipeline_bot.integrations.store import SqlStore
from pipeline_bot.models import DeployRequest, Strategy, StrategyParameters
from pipeline_bot.repo_config import Environment

pytestmark = pytest.mark.integration


# ---------------------------------------------------------------- helpers


def _request(url: str, method: str = "GET", body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    return urllib.request.urlopen(req, timeout=10)


def _configmaps(kube_api: Any, namespace: str) -> str:
    return f"{kube_api.url}/api/v1/namespaces/{namespace}/configmaps"


def _make_configmap(kube_api: Any, namespace: str, name: str) -> str:
    """Creates a ConfigMap; returns its resourceVersion."""
    with _request(_configmaps(kube_api, namespace), "POST", {"metadata": {"name": name}}) as r:
        return str(json.loads(r.read())["metadata"]["resourceVersion"])


def _list_rv(kube_api: Any, namespace: str) -> str:
    with _request(_configmaps(kube_api, namespace)) as r:
        return str(json.loads(r.read())["metadata"]["resourceVersion"])


def _events(resp: Any) -> Any:
    """The watch events of a streaming response, one JSON object a line, until the stream ends."""
    for line in resp:
        if line.strip():
            yield json.loads(line)


def _read_into(resp: Any, data: bytearray) -> None:
    for chunk in resp.stream():
        data.extend(chunk)


@pytest.fixture
def cluster(kube_api):
    cfg = client.Configuration()
    cfg.host = kube_api.url
    return KubernetesCluster(client.ApiClient(cfg))


@pytest.fixture
def engine(cluster, tmp_path):
    return DeployEngine(cluster, SqlStore(f"sqlite:///{tmp_path / 'pb.db'}"))


@pytest.fixture
def env(namespace):
    return Environment(name="production", namespace=namespace)


def _rolling(replicas: int = 4) -> Strategy:
    return Strategy(
        name="rolling",
        environment="production",
        reasons=["test"],
        parameters=StrategyParameters(replicas=replicas, max_surge="25%", max_unavailable="0"),
    )


def _req(image: str, timeout: float = 30, **kw: Any) -> DeployRequest:
    return DeployRequest(
        app="shop",
        environment="production",
        image=image,
        commit_sha="abc123",
        timeout_seconds=timeout,
        **kw,
    )


def _first_deploy(
    engine: DeployEngine,
    env: Environment,
    kube_api: Any,
    *,
    replicas: int = 4,
    pod_ready_seconds: float = 0.2,
) -> None:
    """shop:1 running, before any fault: the deploy under test is an update, which rolls the pods
    one by one (max surge 1, none unavailable) and so keeps the watches busy for a while."""
    kube_api.control("POST", "settings", {"pod_ready_seconds": pod_ready_seconds})
    first = engine.deploy(_req("shop:1"), _rolling(replicas), env)
    assert first.status == "succeeded", first.message


# ---------------------------------------------------------------- the test server


def test_a_watch_from_compacted_history_gets_410_expired(kube_api, namespace, kube_faults):
    old = _make_configmap(kube_api, namespace, "a")
    kube_faults.compact()
    with pytest.raises(urllib.error.HTTPError) as gone:
        _request(f"{_configmaps(kube_api, namespace)}?watch=true&resourceVersion={old}")
    status = json.loads(gone.value.read())
    assert gone.value.code == 410
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "Expired", 410)
    assert f"too old resource version: {old}" in status["message"]
    # a fresh list gives a version the server can watch from
    fresh = _list_rv(kube_api, namespace)
    url = f"{_configmaps(kube_api, namespace)}?watch=true&resourceVersion={fresh}"
    with _request(url + "&timeoutSeconds=5") as resp:
        _make_configmap(kube_api, namespace, "b")
        first = next(_events(resp))
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "b")


def test_a_watch_from_compacted_history_can_get_410_as_an_error_event(
    kube_api, namespace, kube_faults
):
    kube_faults.set(gone_at_start="event")
    old = _make_configmap(kube_api, namespace, "a")
    kube_faults.compact()
    url = f"{_configmaps(kube_api, namespace)}?watch=true&resourceVersion={old}"
    with _request(url) as resp:  # 200: the error comes inside the stream, as kube-apiserver does
        assert resp.status == 200
        events = list(_events(resp))
    assert [e["type"] for e in events] == ["ERROR"]
    assert (events[0]["object"]["code"], events[0]["object"]["reason"]) == (410, "Expired")


def test_compaction_ends_an_open_watch_with_an_error_event(kube_api, namespace, kube_faults):
    rv = _list_rv(kube_api, namespace)
    url = f"{_configmaps(kube_api, namespace)}?watch=true&resourceVersion={rv}&timeoutSeconds=30"
    with _request(url) as resp:  # headers received: the server is in its watch loop
        stream = _events(resp)
        _make_configmap(kube_api, namespace, "a")
        first = next(stream)
        kube_faults.compact()
        rest = list(stream)
    assert (first["type"], [e["type"] for e in rest]) == ("ADDED", ["ERROR"])
    assert (rest[0]["object"]["code"], rest[0]["object"]["reason"]) == (410, "Expired")
    assert kube_faults.stats()["gone_events"] == 1


def test_compaction_every_n_events_ends_watches_mid_stream(kube_api, namespace, kube_faults):
    kube_faults.set(compact_every_events=2)
    rv = _list_rv(kube_api, namespace)
    url = f"{_configmaps(kube_api, namespace)}?watch=true&resourceVersion={rv}&timeoutSeconds=30"
    for name in ("a", "b", "c"):
        _make_configmap(kube_api, namespace, name)
    with _request(url) as resp:
        events = list(_events(resp))
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "ERROR"]


def test_the_server_closes_a_watch_after_n_events(kube_api, namespace, kube_faults):
    kube_faults.set(watch_close_events=2)
    rv = _list_rv(kube_api, namespace)
    for name in ("a", "b", "c"):
        _make_configmap(kube_api, namespace, name)
    url = f"{_configmaps(kube_api, namespace)}?watch=true&resourceVersion={rv}&timeoutSeconds=30"
    resp = urllib3.PoolManager().request("GET", url, preload_content=False, timeout=10)
    data = bytearray()
    # no chunked terminator: the kubernetes client's transport sees a broken connection
    with pytest.raises(urllib3.exceptions.ProtocolError, match="ended prematurely"):
        _read_into(resp, data)
    names = [json.loads(line)["object"]["metadata"]["name"] for line in data.splitlines()]
    assert names == ["a", "b"]
    assert kube_faults.stats()["closed"] == 1


def test_the_server_ends_a_watch_at_its_own_timeout_with_a_bookmark(
    kube_api, namespace, kube_faults
):
    kube_faults.set(watch_close_seconds=1)
    rv = _list_rv(kube_api, namespace)
    url = (
        f"{_configmaps(kube_api, namespace)}?watch=true&resourceVersion={rv}"
        "&timeoutSeconds=60&allowWatchBookmarks=true"
    )
    started = time.monotonic()
    with _request(url) as resp:
        events = list(_events(resp))
    assert time.monotonic() - started < 10  # the server's 1 s, not the 60 s asked for
    assert events[-1]["type"] == "BOOKMARK"
    assert int(events[-1]["object"]["metadata"]["resourceVersion"]) >= int(rv)


def test_the_server_answers_429_with_retry_after(kube_api, namespace, kube_faults):
    kube_faults.set(throttle_every=2, retry_after=1)
    codes, retry_after, reasons = [], set(), set()
    for _ in range(4):
        try:
            with _request(_configmaps(kube_api, namespace)) as r:
                codes.append(r.status)
        except urllib.error.HTTPError as exc:
            codes.append(exc.code)
            retry_after.add(exc.headers.get("Retry-After"))
            reasons.add(json.loads(exc.read())["reason"])
    assert codes == [200, 429, 200, 429]
    assert retry_after == {"1"}
    assert reasons == {"TooManyRequests"}


# ---------------------------------------------------------------- rollouts that survive


def test_a_rollout_whose_watch_gets_410_mid_way_still_succeeds(
    engine, cluster, env, namespace, kube_api, kube_faults
):
    _first_deploy(engine, env, kube_api, pod_ready_seconds=0.3)
    kube_faults.set(compact_every_events=3)
    result = engine.deploy(_req("shop:2"), _rolling(), env)
    assert result.status == "succeeded", result.message
    assert kube_faults.stats()["gone_events"] >= 1
    assert cluster.watch_relists >= 1


@pytest.mark.parametrize("gone_at_start", ["http", "event"])
def test_a_rollout_resuming_into_compacted_history_relists_and_succeeds(
    engine, cluster, env, namespace, kube_api, kube_faults, gone_at_start
):
    _first_deploy(engine, env, kube_api, pod_ready_seconds=0.3)
    # every watch ends after 3 events and the history it stopped at is compacted at once, so
    # each resume from the last version seen is refused
    kube_faults.set(watch_close_events=3, compact_on_close=True, gone_at_start=gone_at_start)
    result = engine.deploy(_req("shop:2"), _rolling(), env)
    assert result.status == "succeeded", result.message
    stats = kube_faults.stats()
    assert stats["gone_http" if gone_at_start == "http" else "gone_events"] >= 1
    assert cluster.watch_relists >= 1


def test_a_rollout_whose_watches_are_closed_every_second_still_succeeds(
    engine, cluster, env, namespace, kube_api, kube_faults
):
    _first_deploy(engine, env, kube_api, pod_ready_seconds=0.7)  # four waves of 0.7 s each
    kube_faults.set(watch_close_seconds=1)
    result = engine.deploy(_req("shop:2"), _rolling(), env)
    assert result.status == "succeeded", result.message
    assert kube_faults.stats()["closed"] >= 2
    # resumed from the last version seen: nothing was lost, so nothing had to be listed again
    assert cluster.watch_resumes >= 2
    assert cluster.watch_relists == 0


def test_a_rollout_that_never_gets_ready_fails_at_its_deadline_not_before(
    engine, cluster, env, namespace, kube_api, kube_faults
):
    _first_deploy(engine, env, kube_api, replicas=2)
    kube_api.fail_image("shop:unready", "Unready")
    # every second the server ends the watches and compacts its history: 410s all the way through
    kube_faults.set(watch_close_seconds=1, compact_on_close=True)
    result = engine.deploy(_req("shop:unready", timeout=6), _rolling(2), env)
    assert result.status == "rolled_back", result.message
    rollout = next(s for s in result.steps if s.name == "rollout")
    assert rollout.status == "failed"
    assert "did not finish within 6s" in rollout.message
    assert rollout.seconds >= 6
    assert kube_faults.stats()["gone_http"] >= 3
    assert "rolled back to shop:1" in result.message


def test_a_rollout_through_429s_honours_retry_after_and_succeeds(
    engine, cluster, env, namespace, kube_api, kube_faults
):
    _first_deploy(engine, env, kube_api, replicas=2)
    kube_faults.set(throttle_every=4, retry_after=1)
    result = engine.deploy(_req("shop:2"), _rolling(2), env)
    assert result.status == "succeeded", result.message
    assert kube_faults.stats()["throttled"] >= 1
