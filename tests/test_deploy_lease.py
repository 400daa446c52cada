"""The deploy engine holds its environment's lock as a Lease for as long as a deploy runs, however
long its canary pauses (issue 14, point 2): renewed while it runs, released at the end, refused to
a second deploy meanwhile, and lost by a holder that stops renewing. Short leases (1 s) stand in
for real ones; every wait is on a condition with a deadline."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client

from pipeline_bot.deploy.cluster_store import ClusterStore
from pipeline_bot.deploy.engine import DeployEngine
from pipeline_bot.deploy.gates import Verdict
from pipeline_bot.errors import LockedError
from pipeline_bot.integrations.kubernetes import KubernetesCluster
from pipeline_bot.integrations.store import SqlStore
from pipeline_bot.models import CanaryStep, DeployRequest, Strategy, StrategyParameters
from pipeline_bot.repo_config import Environment

LEASE = 1.0


def _cluster(kube_api) -> KubernetesCluster:
    cfg = client.Configuration()
    cfg.host = kube_api.url
    return KubernetesCluster(client.ApiClient(cfg))


def _until(condition, seconds: float = 15.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds}s"
        time.sleep(0.02)


def _canary(steps, manual=False) -> Strategy:
    return Strategy(
        name="canary",
        environment="production",
        reasons=["test"],
        parameters=StrategyParameters(
            replicas=4,
            steps=[CanaryStep(weight=w, pause_seconds=600) for w in steps],
            manual_promotion=manual,
        ),
    )


def _rolling() -> Strategy:
    return Strategy(
        name="rolling",
        environment="production",
        reasons=["test"],
        parameters=StrategyParameters(replicas=4),
    )


def _req(image: str) -> DeployRequest:
    return DeployRequest(
        app="shop", environment="production", image=image, commit_sha="abc", timeout_seconds=20
    )


class PausingGate:
    """A canary step's pause, made of lease lengths instead of minutes: each step waits until the
    engine has renewed its lease `renewals` more times, and meanwhile `during` is called."""

    def __init__(self, renewals: int = 3, during=None) -> None:
        self.renewals, self.during = renewals, during or (lambda: None)
        self.engine: DeployEngine | None = None
        self.steps: list[int] = []

    def prepare(self, namespace, app):
        return None

    def evaluate(self, step):
        held = self.engine.held
        target = held.renewals + self.renewals
        _until(lambda: held.renewals >= target, what=f"{self.renewals} renewals")
        self.during()
        self.steps.append(step.weight)
        return Verdict("continue", f"paused through {self.renewals} renewals")


class HoldingGate:
    """Holds the canary at its first step until the test lets it go."""

    def __init__(self) -> None:
        self.reached, self.go = threading.Event(), threading.Event()

    def prepare(self, namespace, app):
        return None

    def evaluate(self, step):
        self.reached.set()
        assert self.go.wait(30), "the test never let the canary go on"
        return Verdict("continue", "let go")


@pytest.fixture(params=["cluster", "sql"])
def stores(request, kube_api, namespace, tmp_path):
    """Two independent stores on the same state, as two jobs would have."""
    if request.param == "cluster":
        return lambda: ClusterStore(_cluster(kube_api), namespaces={"production": namespace})
    url = f"sqlite:///{tmp_path / 'pb.db'}"
    return lambda: SqlStore(url)


@pytest.fixture
def env(namespace):
    return Environment(name="production", namespace=namespace)


def test_a_canary_keeps_its_lock_through_pauses_many_leases_long(kube_api, stores, env):
    store, other = stores(), stores()
    refusals: list[str] = []

    def second_job_tries() -> None:
        with pytest.raises(LockedError) as refused:
            other.acquire("production", "someone-else", "deploy shop:9", ttl=LEASE)
        refusals.append(refused.value.holder)

    gate = PausingGate(renewals=3, during=second_job_tries)
    engine = DeployEngine(_cluster(kube_api), store, gate=gate, lease_seconds=LEASE)
    gate.engine = engine
    assert engine.deploy(_req("shop:1"), _rolling(), env).status == "succeeded"
    started = time.monotonic()
    result = engine.deploy(_req("shop:2"), _canary([25, 50, 75]), env)
    assert result.status == "succeeded", result.message
    assert gate.steps == [25, 50, 75]
    assert time.monotonic() - started > 3 * LEASE  # it outlived its lease three times over
    assert refusals == [result.deploy_id] * 3  # the lock was its own at every pause
    assert other.lock("production") is None  # and released at the end
    assert other.acquire("production", "next", "deploy shop:3", ttl=LEASE).owner == "next"


def test_a_second_deploy_is_refused_while_the_first_holds_the_lease(kube_api, stores, env):
    first_store, second_store = stores(), stores()
    gate = HoldingGate()
    first = DeployEngine(_cluster(kube_api), first_store, gate=gate, lease_seconds=LEASE)
    second = DeployEngine(_cluster(kube_api), second_store, gate=HoldingGate())
    assert first.deploy(_req("shop:1"), _rolling(), env).status == "succeeded"
    results = []
    runner = threading.Thread(
        target=lambda: results.append(first.deploy(_req("shop:2"), _canary([50]), env))
    )
    runner.start()
    try:
        assert gate.reached.wait(30)
        _until(lambda: first.held is not None and first.held.renewals >= 4, what="renewals")
        with pytest.raises(LockedError) as refused:
            second.deploy(_req("shop:3"), _rolling(), env)
        assert refused.value.holder == first.held.owner
        assert refused.value.reason == "deploy shop shop:2"
        assert refused.value.expires_at
        assert "environment 'production' is locked by" in refused.value.message
    finally:
        gate.go.set()
        runner.join(60)
    assert results[0].status == "succeeded", results[0].message
    assert second.deploy(_req("shop:3"), _rolling(), env).status == "succeeded"


def test_a_deploy_whose_holder_stopped_renewing_loses_the_lock_and_stops(kube_api, stores, env):
    store, other = stores(), stores()
    gate = HoldingGate()
    engine = DeployEngine(_cluster(kube_api), store, gate=gate, lease_seconds=LEASE)
    assert engine.deploy(_req("shop:1"), _rolling(), env).status == "succeeded"
    results, errors = [], []

    def run() -> None:
        try:
            results.append(engine.deploy(_req("shop:2"), _canary([25, 50]), env))
        except Exception as exc:  # noqa: BLE001 - the test inspects whatever ended the deploy
            errors.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    try:
        assert gate.reached.wait(30)
        engine.held.halt()  # as if the job's process froze: its lease is no longer renewed
        taken = other.acquire("production", "next-job", "deploy shop:3", ttl=30, wait=10)
        assert taken.owner == "next-job"
    finally:
        gate.go.set()
        runner.join(60)
    assert not results
    assert "stopped: the lock on 'production' was lost (not renewed within its 1s lease)" in (
        str(errors[0])
    )
    record = other.history("production", "shop")[0]
    assert record.status == "failed"
    assert other.lock("production").owner == "next-job"  # not released by the old holder
