"""Deploys while things break (issue 15, deliverable 6): the Kubernetes API test server answering
500, 429 with Retry-After, hanging, losing answers and dropping watches mid-deploy, and Prometheus
going away mid-canary.

Every deploy goes through the deploy_application tool, with the collaborators every front end
builds (wiring.tool_context: the cluster from KUBECONFIG, deploy records and the lock in the
cluster itself), so the faults reach the records and the lock as well as the rollout. What is
asserted: the outcome, the deploy record (status, the step it stopped at, its reason), what runs
in the cluster afterwards, and how long it took against the deploy's deadline.

The faults are tests/kubeapi/faults.py's injected rules (the `kube_faults` fixture's `inject`);
Prometheus is a server of each test's own, stopped by its process id.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.client import RemoteDisconnected
from pathlib import Path
from typing import Any

import pytest

from pipeline_bot.core.canary import judge_gate, measure
from pipeline_bot.deploy.cluster_store import ClusterStore
from pipeline_bot.errors import PipelineBotError
from pipeline_bot.integrations.kubernetes import KubernetesCluster
from pipeline_bot.integrations.prometheus import PrometheusMetrics
from pipeline_bot.models import DeployRecord, DeployResult, MetricSample
from pipeline_bot.repo_config import MetricGate, Threshold, load_repo_config
from pipeline_bot.settings import get_settings
from pipeline_bot.tools import build_registry
from pipeline_bot.wiring import tool_context
from tests.conftest import _series, stop_process, wait_until_up

REGISTRY = build_registry()
IMAGE = "registry.local/shop"


# ---------------------------------------------------------------- the deploys under test


class Shop:
    """The app `shop` in a namespace of its own on the Kubernetes API test server, deployed with
    the deploy_application tool; `on(prefix, action)` runs `action` once, in the deploy's own
    thread, when a progress line starts with `prefix` (a fault "mid-deploy", at a known step)."""

    def __init__(self, kube_api: Any, namespace: str, root: Path, faults: Any) -> None:
        self.kube_api, self.namespace, self.root, self.faults = kube_api, namespace, root, faults
        self.lines: list[str] = []
        self._hooks: list[tuple[str, Callable[[], None]]] = []
        self.metrics: Any = None

    def on(self, prefix: str, action: Callable[[], None]) -> None:
        self._hooks.append((prefix, action))

    def _progress(self, line: str) -> None:
        self.lines.append(line)
        for hook in [h for h in self._hooks if line.startswith(h[0])]:
            self._hooks.remove(hook)
            hook[1]()

    def deploy(self, tag: str, strategy: str = "rolling", **config: Any) -> DeployResult:
        """The tool's result; a PipelineBotError is raised as it would reach a front end."""
        get_settings.cache_clear()
        ctx = tool_context(get_settings(), progress=self._progress, front_end="cli")
        if self.metrics is not None:
            ctx.metrics = self.metrics
        args = {
            "app_name": "shop",
            "environment": "production",
            "image_tag": tag,
            "strategy": strategy,
            "repository": str(self.root),
            "config": {"timeout_seconds": 6, "canary_steps": [50], "pause_seconds": 0, **config},
        }
        if strategy != "canary":
            del args["config"]["canary_steps"], args["config"]["pause_seconds"]
        result = REGISTRY.call("deploy_application", args, ctx)
        assert isinstance(result, DeployResult)
        return result

    def timed(self, tag: str, strategy: str = "rolling", **config: Any) -> tuple[Any, float]:
        """(the result or the error, seconds it took)."""
        started = time.monotonic()
        try:
            out: Any = self.deploy(tag, strategy, **config)
        except PipelineBotError as exc:
            out = exc
        return out, time.monotonic() - started

    # what is left afterwards, read with the faults off

    def record(self) -> DeployRecord:
        """The newest deploy record, from the cluster store every front end reads."""
        self.faults.set()
        get_settings.cache_clear()
        config = load_repo_config(None, repo_root=self.root)
        store = ClusterStore.for_config(config, lambda _env: KubernetesCluster.connect())
        return store.history("production", "shop", limit=1)[0]

    def deployment(self, name: str = "shop") -> dict[str, Any] | None:
        self.faults.set()
        url = f"{self.kube_api.url}/apis/apps/v1/namespaces/{self.namespace}/deployments/{name}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return json.loads(resp.read())  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def image(self, name: str = "shop") -> str:
        dep = self.deployment(name)
        assert dep is not None, f"no Deployment {name}"
        return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])

    def lease_held(self) -> bool:
        url = f"{self.kube_api.url}/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return bool(json.loads(resp.read())["items"])


def _config(namespace: str, on_inconclusive: str = "pause") -> str:
    return (
        "version: 1\nenvironments:\n"
        f"  - {{name: production, namespace: {namespace}, replicas: 2, "
        f"on_inconclusive: {on_inconclusive}}}\n"
        f"services:\n  - {{name: shop, paths: ['src/**'], image: {IMAGE}}}\n"
    )


@pytest.fixture
def shop(kube_api, namespace, kube_faults, tmp_path, monkeypatch) -> Shop:  # type: ignore[no-untyped-def]
    """shop:1 running (a rolling deploy before any fault), in a namespace of the test's own."""
    monkeypatch.setenv("KUBECONFIG", str(kube_api.kubeconfig(tmp_path / "kubeconfig", namespace)))
    monkeypatch.delenv("PIPELINE_BOT_STORE", raising=False)  # the default: state in the cluster
    root = tmp_path / "repo"
    (root / ".github").mkdir(parents=True)
    (root / ".github" / "pipeline-bot.yml").write_text(_config(namespace))
    app = Shop(kube_api, namespace, root, kube_faults)
    first = app.deploy("1")
    assert first.status == "succeeded", first.message
    return app


def _deployments(shop: Shop, name: str = "shop") -> str:
    """The regex of one Deployment's path in the test's namespace."""
    return rf"/apis/apps/v1/namespaces/{shop.namespace}/deployments/{name}$"


def _hits(faults: Any, index: int) -> int:
    return int(faults.rules()[index]["hits"])


# ---------------------------------------------------------------- the test server's faults


def _get(url: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_injected_answers_take_the_next_n_matching_requests(kube_api, namespace, kube_faults):
    url = f"{kube_api.url}/api/v1/namespaces/{namespace}/configmaps"
    kube_faults.inject("/configmaps$", method="GET", answer=500, times=1)
    kube_faults.inject("/configmaps$", method="GET", answer=429, retry_after=3, times=1)
    kube_faults.inject("/configmaps$", method="POST", answer=503, times=0)  # another method
    first, second, third = _get(url), _get(url), _get(url)
    assert [first[0], second[0], third[0]] == [500, 429, 200]
    assert second[1]["Retry-After"] == "3"
    assert [r["hits"] for r in kube_faults.rules()] == [1, 1, 0]


def test_a_hang_closes_unanswered_and_a_lost_answer_was_carried_out(
    kube_api, namespace, kube_faults
):
    url = f"{kube_api.url}/api/v1/namespaces/{namespace}/configmaps"
    kube_faults.inject("/configmaps$", method="GET", hang=0.5, skip=1)
    assert _get(url)[0] == 200  # the first one is let through
    with pytest.raises(RemoteDisconnected):
        _get(url)
    kube_faults.inject("/configmaps$", method="POST", lost=True)
    body = json.dumps({"metadata": {"name": "written"}}).encode()
    post = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with pytest.raises(RemoteDisconnected):
        urllib.request.urlopen(post, timeout=10)
    assert _get(f"{url}/written")[0] == 200  # the write happened all the same


def test_dropped_watches_end_without_a_terminator(kube_api, namespace, kube_faults):
    import urllib3

    url = f"{kube_api.url}/api/v1/namespaces/{namespace}/configmaps?watch=true&timeoutSeconds=30"
    resp = urllib3.PoolManager().request("GET", url, preload_content=False, timeout=40)
    kube_faults.drop_watches()
    with pytest.raises(urllib3.exceptions.ProtocolError):  # ended without its terminator
        for _ in resp.stream():
            pass
    assert kube_faults.stats()["dropped_watches"] == 1


# ---------------------------------------------------------------- rolling deploys


def test_an_api_outage_mid_rollout_is_retried_until_it_ends(shop, kube_faults):
    """Every request to the namespace answers 500 for 5 s, starting right after the apply: the
    rollout's watch, the deploy record's writes and the lease all ride it out."""
    outage = []
    shop.on(
        "apply shop",
        lambda: outage.append(
            kube_faults.inject(f"/namespaces/{shop.namespace}/", answer=500, times=0, seconds=5)
        ),
    )
    result = shop.deploy("2", timeout_seconds=20)
    assert result.status == "succeeded", result.message
    assert _hits(kube_faults, outage[0]) >= 3
    record = shop.record()
    assert (record.status, record.image) == ("succeeded", f"{IMAGE}:2")
    assert shop.image() == f"{IMAGE}:2"


def test_a_burst_of_500s_longer_than_a_few_retries_is_ridden_out_within_the_deadline(
    shop, kube_faults
):
    """The apply answers 500 for 5 s: more than a fixed handful of quick retries (about 4 s)
    would cover, well within the deploy's 20 s."""
    rule = kube_faults.inject(_deployments(shop), method="PATCH", answer=500, times=0, seconds=5)
    result, _ = shop.timed("2", timeout_seconds=20)
    assert isinstance(result, DeployResult), result
    assert result.status == "succeeded", result.message
    assert _hits(kube_faults, rule) >= 5  # five answers of 500, and still going
    assert shop.record().status == "succeeded"


def test_429_retry_after_is_waited_for(shop, kube_faults):
    rule = kube_faults.inject(
        _deployments(shop), method="PATCH", answer=429, retry_after=2, times=2
    )
    result = shop.deploy("2", timeout_seconds=20)
    assert result.status == "succeeded", result.message
    assert _hits(kube_faults, rule) == 2
    apply = next(s for s in result.steps if s.name == "apply shop")
    assert apply.seconds >= 4  # twice the 2 s asked for, not the first backoff steps (0.2, 0.5)


def test_a_retry_after_past_the_deadline_is_not_waited_for(shop, kube_faults):
    """429 asking for 60 s with 6 s left: giving up at once beats sleeping past the deadline;
    the deploy rolls back (nothing to undo: a 429 was not carried out) and says why."""
    rule = kube_faults.inject(
        _deployments(shop), method="PATCH", answer=429, retry_after=600, times=1
    )
    result, _ = shop.timed("2", timeout_seconds=6)
    assert isinstance(result, DeployResult), result
    assert result.status == "rolled_back", result.message
    assert _hits(kube_faults, rule) == 1
    record = shop.record()
    assert record.status == "rolled_back"
    assert "HTTP 429" in record.reason
    assert "asked to wait 600s, past the deadline" in record.reason
    assert shop.image() == f"{IMAGE}:1"


def test_a_hung_request_is_cut_and_tried_again_within_the_deadline(shop, kube_faults):
    """The apply gets no answer (120 s of silence, then the connection closes): one attempt may
    take half the time left, so another one fits before the deadline."""
    hang = 120
    rule = kube_faults.inject(_deployments(shop), method="PATCH", hang=hang, times=1)
    result = shop.deploy("2", timeout_seconds=10)
    assert result.status == "succeeded", result.message
    assert _hits(kube_faults, rule) == 1
    apply = next(s for s in result.steps if s.name == "apply shop")
    assert apply.seconds < hang  # the silence was not waited out
    assert shop.image() == f"{IMAGE}:2"


def test_an_api_failing_past_the_rollout_deadline_rolls_back_and_the_record_says_so(
    shop, kube_faults
):
    """The apply lands, then every Deployment and pod request fails for 8 s: the rollout's 5 s
    deadline passes with the API still failing, so the deploy rolls back (once the API answers
    again) and its record names the API's failure, not a slow rollout."""
    outage = []
    shop.on(
        "apply shop",
        lambda: outage.append(
            kube_faults.inject(
                f"/namespaces/{shop.namespace}/(deployments|pods)", answer=500, times=0, seconds=8
            )
        ),
    )
    result = shop.deploy("2", timeout_seconds=5)
    assert result.status == "rolled_back", result.message
    assert result.rolled_back
    assert _hits(kube_faults, outage[0]) >= 5
    rollout = next(s for s in result.steps if s.name == "rollout")
    assert rollout.status == "failed"
    assert "still failing at the deadline" in rollout.message
    record = shop.record()
    assert record.status == "rolled_back"
    assert "HTTP 500" in record.reason
    assert "still failing at the deadline" in record.reason
    assert shop.image() == f"{IMAGE}:1"


def test_an_api_that_never_comes_back_fails_the_deploy_and_its_rollback_and_says_both(
    shop, kube_faults
):
    """Every PATCH of the Deployment fails, for longer than the deploy and its rollback take:
    each gives up at its own deadline, and the record says both."""
    kube_faults.inject(_deployments(shop), method="PATCH", answer=500, times=0, seconds=60)
    result = shop.deploy("2", timeout_seconds=4)
    assert result.status == "failed", result.message
    assert [(s.name, s.status) for s in result.steps] == [("rollback", "failed")]
    record = shop.record()
    assert (record.status, record.step) == ("failed", "rollback")
    assert record.reason.startswith("apply Deployment/shop: Internal error occurred")
    assert "the automatic rollback failed too: patch Deployment/shop" in record.reason
    assert record.reason.count("(HTTP 500); gave up at the deadline after") == 2
    assert not shop.lease_held()  # the lock was released all the same


def test_a_failed_rollout_rolls_back_even_when_events_cannot_be_read(shop, kube_faults, kube_api):
    kube_api.fail_image(f"{IMAGE}:2")
    kube_faults.inject(f"/namespaces/{shop.namespace}/events", method="GET", answer=500, times=0)
    result = shop.deploy("2", timeout_seconds=5)
    assert result.status == "rolled_back", result.message
    assert "ImagePullBackOff" in result.message
    assert "events unavailable" in result.message
    assert shop.image() == f"{IMAGE}:1"
    assert shop.record().status == "rolled_back"


def test_a_lost_answer_to_a_record_write_does_not_fail_the_deploy(shop, kube_faults):
    """The new record's Secret is created, but the answer is lost: trying again gets 409
    AlreadyExists for our own record."""
    rule = kube_faults.inject(
        f"/namespaces/{shop.namespace}/secrets$", method="POST", lost=True, times=1
    )
    result = shop.deploy("2", timeout_seconds=10)
    assert result.status == "succeeded", result.message
    assert _hits(kube_faults, rule) == 1
    assert shop.record().status == "succeeded"


def test_watches_dropped_mid_rollout_resume_and_the_deploy_succeeds(shop, kube_faults, kube_api):
    kube_api.control("POST", "settings", {"pod_ready_seconds": 0.6})
    kube_faults.inject(f"/namespaces/{shop.namespace}/pods$", drop=True, events=1, times=3)
    stop = threading.Event()

    def restarts() -> None:  # the API server "restarts" twice a second while the rollout runs
        while not stop.wait(0.5):
            kube_faults.drop_watches()

    dropper = threading.Thread(target=restarts, daemon=True)
    shop.on("apply shop", dropper.start)
    try:
        result = shop.deploy("2", timeout_seconds=20)
    finally:
        stop.set()
    assert result.status == "succeeded", result.message
    assert kube_faults.stats()["dropped_watches"] >= 3
    assert shop.image() == f"{IMAGE}:2"


# ---------------------------------------------------------------- canary deploys


def test_a_canary_whose_stable_cannot_be_scaled_down_is_aborted(shop, kube_faults):
    """The canary is up; scaling stable down fails past the step's deadline (5 s): the canary
    is removed and stable keeps its replicas and version, instead of both left half-way."""
    shop.on(
        "canary 50%",  # the canary rolls out; every PATCH of stable fails for the next 7 s
        lambda: kube_faults.inject(
            _deployments(shop), method="PATCH", answer=500, times=0, seconds=7
        ),
    )
    result = shop.deploy("2", "canary", timeout_seconds=5)
    assert result.status == "rolled_back", result.message
    assert [s.name for s in result.steps][-1] == "abort"
    assert shop.deployment("shop-canary") is None
    stable = shop.deployment()
    assert stable is not None
    assert (stable["spec"]["replicas"], shop.image()) == (2, f"{IMAGE}:1")
    record = shop.record()
    assert record.status == "rolled_back"
    assert "patch Deployment/shop" in record.reason
    assert "HTTP 500" in record.reason


def test_a_canary_promotion_cut_short_by_the_api_restores_stable(shop, kube_faults):
    """The canary passes; the promotion's patch of stable fails past its deadline (5 s): stable
    gets its version and replicas back and the canary goes."""
    shop.on(
        "gate 50%",  # passed: every PATCH of stable fails for the next 7 s
        lambda: kube_faults.inject(
            _deployments(shop), method="PATCH", answer=500, times=0, seconds=7
        ),
    )
    result = shop.deploy("2", "canary", timeout_seconds=5)
    assert result.status == "rolled_back", result.message
    assert "promotion failed" in result.message
    assert shop.deployment("shop-canary") is None
    stable = shop.deployment()
    assert stable is not None
    assert (stable["spec"]["replicas"], shop.image()) == (2, f"{IMAGE}:1")
    record = shop.record()
    assert record.status == "rolled_back"
    assert "HTTP 500" in record.reason


def test_a_canary_through_a_burst_of_429s_succeeds(shop, kube_faults):
    rule = kube_faults.inject(
        f"/namespaces/{shop.namespace}/deployments", answer=429, retry_after=1, times=3, skip=2
    )
    result = shop.deploy("2", "canary", timeout_seconds=20)
    assert result.status == "succeeded", result.message
    assert _hits(kube_faults, rule) == 3
    assert shop.deployment("shop-canary") is None
    assert shop.image() == f"{IMAGE}:2"


# ---------------------------------------------------------------- blue-green deploys


def test_a_blue_green_deploy_whose_api_fails_before_the_switch_removes_the_new_colour(
    shop, kube_faults
):
    shop.on(
        "apply shop-blue",  # applied: then Deployments and pods fail past the rollout's deadline
        lambda: kube_faults.inject(
            f"/namespaces/{shop.namespace}/(deployments|pods)", answer=500, times=0, seconds=8
        ),
    )
    result = shop.deploy("2", "blue-green", timeout_seconds=5)
    assert result.status == "rolled_back", result.message
    assert "blue never took traffic" in result.message
    assert shop.deployment("shop-blue") is None
    assert shop.image() == f"{IMAGE}:1"
    url = f"{shop.kube_api.url}/api/v1/namespaces/{shop.namespace}/services/shop"
    with urllib.request.urlopen(url, timeout=5) as resp:
        selector = json.loads(resp.read())["spec"]["selector"]
    assert "pipeline-bot.dev/color" not in selector  # the Service never moved
    record = shop.record()
    assert record.status == "rolled_back"
    assert "still failing at the deadline" in record.reason


# ---------------------------------------------------------------- Prometheus goes away


class OwnPrometheus:
    """A Prometheus of one test's own, with a healthy shop-canary backfilled in its namespace;
    `stop` ends it by its process id mid-test."""

    def __init__(self, proc: subprocess.Popen[Any], url: str) -> None:
        self.proc, self.url = proc, url
        self.stopped_at: float | None = None

    def stop(self) -> None:
        if self.stopped_at is None:
            stop_process(self.proc)
            self.stopped_at = time.monotonic()


@pytest.fixture
def own_prometheus(namespace, tmp_path) -> Iterator[OwnPrometheus]:  # type: ignore[no-untyped-def]
    binary, promtool = shutil.which("prometheus"), shutil.which("promtool")
    missing = "Prometheus is missing: `apt-get install -y prometheus` (scripts/test does)"
    if not (binary and promtool):
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    now = int(time.time())
    lines = ["# TYPE http_requests counter"]
    pod = f'namespace="{namespace}",pod="shop-canary-5d8f9-x1"'
    _series(lines, "http_requests_total", f'{pod},code="200"', now - 600, now + 1800, 1000)
    (tmp_path / "series.om").write_text("\n".join([*lines, "# EOF"]) + "\n")
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(tmp_path / "series.om"),
         str(tmp_path / "data")],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (tmp_path / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = OwnPrometheus(proc, f"http://127.0.0.1:{port}")
    try:
        wait_until_up(
            proc, lambda: urllib.request.urlopen(f"{server.url}/-/ready", timeout=2).close()
        )
        yield server
    finally:
        server.stop()


def _gate(no_data: str) -> dict[str, Any]:
    """The canary's success rate over the last minute, measured twice a second apart."""
    rate = 'sum(rate(http_requests_total{namespace="{{namespace}}",pod=~"{{canary_pods}}"%s}[1m]))'
    ok = rate % ',code!~"5.."'
    return {
        "name": "success-rate",
        "query": f"{ok} / {rate % ''}",
        "success_condition": {"min": 0.99},
        "interval": "1s",
        "count": 2,
        "no_data": no_data,
    }


class CountingMetrics:
    """The real Prometheus port, with `after(n, action)`: run `action` once n queries are done."""

    def __init__(self, real: PrometheusMetrics) -> None:
        self.real, self.queries = real, 0
        self._after: tuple[int, Callable[[], None]] | None = None

    def after(self, n: int, action: Callable[[], None]) -> None:
        self._after = (n, action)

    def query(self, promql: str, *, at: Any = None) -> Any:
        try:
            return self.real.query(promql, at=at)
        finally:
            self.queries += 1
            if self._after is not None and self.queries == self._after[0]:
                self._after[1]()

    def query_range(self, promql: str, **kw: Any) -> Any:
        return self.real.query_range(promql, **kw)


def test_a_healthy_canary_passes_its_gates_while_prometheus_is_up(shop, own_prometheus):
    """The control: the same canary, gates and Prometheus, nothing stopped."""
    shop.metrics = PrometheusMetrics(own_prometheus.url)
    result = shop.deploy("2", "canary", canary_steps=[25, 50], gates=[_gate("inconclusive")])
    assert result.status == "succeeded", result.message
    gates = [s for s in result.steps if s.name.startswith("gate")]
    assert [(s.name, s.status) for s in gates] == [
        ("gate 25%", "succeeded"),
        ("gate 50%", "succeeded"),
    ]
    assert gates[0].details[0]["value"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("no_data", "on_inconclusive", "status"),
    [
        ("pass", "pause", "paused"),  # no data may pass a gate; an outage never does
        ("inconclusive", "pause", "paused"),
        ("inconclusive", "fail", "rolled_back"),  # the environment's policy for inconclusive
        ("fail", "pause", "rolled_back"),  # the gate's policy: no data is a failure
    ],
)
def test_prometheus_stopped_between_canary_steps_is_never_a_success(
    shop, own_prometheus, no_data, on_inconclusive, status
):
    (shop.root / ".github" / "pipeline-bot.yml").write_text(
        _config(shop.namespace, on_inconclusive)
    )
    shop.metrics = PrometheusMetrics(own_prometheus.url)
    shop.on("gate 25%", own_prometheus.stop)  # step one passed its gate; then Prometheus is gone
    result = shop.deploy("2", "canary", canary_steps=[25, 50], gates=[_gate(no_data)])
    assert own_prometheus.stopped_at is not None
    assert result.status == status, result.message
    gate = next(s for s in result.steps if s.name == "gate 50%")
    assert gate.status == "failed"
    assert "unreachable" in gate.message
    assert shop.image() == f"{IMAGE}:1"  # stable was never promoted
    record = shop.record()
    assert record.status == status
    assert "unreachable" in record.reason
    if status == "paused":  # the canary waits for a person: promote or abort
        assert shop.deployment("shop-canary") is not None
    else:
        assert shop.deployment("shop-canary") is None


@pytest.mark.parametrize(("no_data", "status"), [("pass", "paused"), ("fail", "rolled_back")])
def test_prometheus_stopped_between_two_measurements_of_a_gate_is_never_a_success(
    shop, own_prometheus, no_data, status
):
    metrics = CountingMetrics(PrometheusMetrics(own_prometheus.url))
    shop.metrics = metrics
    # one query before the deploy (every gate is tried once), two for the first step's gate,
    # then the second step's first measurement: Prometheus goes right after it
    metrics.after(4, own_prometheus.stop)
    result = shop.deploy("2", "canary", canary_steps=[25, 50], gates=[_gate(no_data)])
    assert metrics.queries == 5
    assert result.status == status, result.message
    gate = next(s for s in result.steps if s.name == "gate 50%")
    assert gate.details[0]["passed"] is True  # measured before it went
    assert "unreachable" in gate.details[1]["reason"]
    assert shop.image() == f"{IMAGE}:1"
    assert shop.record().status == status


# ---------------------------------------------------------------- the gate's rule, on its own


@pytest.mark.parametrize(
    ("no_data", "passed", "outcome"),
    [
        ("pass", None, "inconclusive"),
        ("inconclusive", None, "inconclusive"),
        ("fail", False, "failed"),
    ],
)
def test_a_query_that_failed_counts_as_no_data_but_never_passes(no_data, passed, outcome):
    gate = MetricGate(
        name="success-rate", query="up", success_condition=Threshold(min=0.99), no_data=no_data
    )
    gone = measure(gate, "up", [], error="Prometheus at http://127.0.0.1:9 is unreachable")
    assert gone.passed is passed
    assert f"(policy for no data: {no_data})" in gone.reason
    before = measure(gate, "up", [MetricSample(labels={}, value=1.0)])
    assert judge_gate(gate, [before, gone]).outcome == outcome
    assert judge_gate(gate, [gone, gone]).outcome == outcome
