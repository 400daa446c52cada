"""Environment locks as Leases on the Kubernetes API test server: taken atomically, renewed while
held, released at the end, lost by a holder that stops renewing. Each "job" is a store of its
own on a client of its own, as two Action jobs or the App and a CLI would be."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest
from kubernetes import client

from pipeline_bot.deploy.cluster_store import ClusterStore
from pipeline_bot.deploy.leases import lease_name
from pipeline_bot.deploy.lock import HeldLock
from pipeline_bot.errors import DeployError, LockedError
from pipeline_bot.integrations.kubernetes import KubernetesCluster
from pipeline_bot.integrations.store import SqlStore


def _cluster(kube_api) -> KubernetesCluster:
    cfg = client.Configuration()
    cfg.host = kube_api.url
    return KubernetesCluster(client.ApiClient(cfg))


@pytest.fixture
def job(kube_api, namespace):
    """A new, independent store on its own client: what another job would build."""
    return lambda: ClusterStore(_cluster(kube_api), namespaces={"production": namespace})


def _lease(kube_api, namespace, environment="production"):
    return _cluster(kube_api).get(
        "coordination.k8s.io/v1", "Lease", namespace, lease_name(environment)
    )


def _until(condition, seconds: float = 10.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds}s"
        time.sleep(0.02)


def test_the_lock_is_a_lease_in_the_environments_namespace_naming_its_holder(
    job, kube_api, namespace
):
    first, second = job(), job()
    taken = first.acquire("production", "deploy-1", "deploy shop:1", ttl=30)
    lease = _lease(kube_api, namespace)
    spec = lease["spec"]
    assert (spec["holderIdentity"], spec["leaseDurationSeconds"]) == ("deploy-1", 30)
    assert spec["acquireTime"] == spec["renewTime"]
    assert lease["metadata"]["annotations"]["pipeline-bot.dev/reason"] == "deploy shop:1"
    with pytest.raises(LockedError) as refused:
        second.acquire("production", "deploy-2", "deploy shop:2", ttl=30)
    assert (refused.value.holder, refused.value.reason) == ("deploy-1", "deploy shop:1")
    assert refused.value.expires_at == taken.expires_at.strftime("%Y-%m-%d %H:%M:%SZ")
    assert "locked by deploy-1 (deploy shop:1) until" in refused.value.message
    assert second.lock("production").owner == "deploy-1"


def test_of_many_jobs_racing_for_the_lease_exactly_one_wins(job):
    stores = [job() for _ in range(8)]
    start = threading.Barrier(len(stores))
    winners, losers = [], []

    def race(i: int) -> None:
        start.wait()
        try:
            winners.append(stores[i].acquire("production", f"job-{i}", "race", ttl=30).owner)
        except LockedError as exc:
            losers.append(exc.holder)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert set(losers) == set(winners)


def test_a_held_lock_is_renewed_past_its_lease_and_released_at_the_end(job, kube_api, namespace):
    holder, other = job(), job()
    with HeldLock(holder, "production", "deploy-1", "canary shop:2", lease=1) as held:
        first = _lease(kube_api, namespace)["spec"]
        _until(lambda: held.renewals >= 8, what="eight renewals")  # about three leases
        with pytest.raises(LockedError, match="locked by deploy-1"):
            other.acquire("production", "deploy-2", "deploy shop:3", ttl=1)
        now = _lease(kube_api, namespace)["spec"]
        assert now["acquireTime"] == first["acquireTime"]
        assert datetime.fromisoformat(now["renewTime"]) > datetime.fromisoformat(first["renewTime"])
        assert now["leaseTransitions"] == 0
        assert held.lost is None
    assert _lease(kube_api, namespace) is None
    assert other.lock("production") is None
    assert other.acquire("production", "deploy-2", "deploy shop:3", ttl=1).owner == "deploy-2"


def test_a_holder_that_stops_renewing_loses_the_lock_after_its_lease(job, kube_api, namespace):
    holder, other = job(), job()
    held = HeldLock(holder, "production", "deploy-1", "canary shop:2", lease=1)
    with held:
        _until(lambda: held.renewals >= 1, what="a renewal")
        held.halt()  # the job died: nothing renews its lease any more
        last = datetime.fromisoformat(_lease(kube_api, namespace)["spec"]["renewTime"])
        taken = other.acquire("production", "deploy-2", "deploy shop:3", ttl=1, wait=10)
        assert taken.owner == "deploy-2"
        assert (taken.acquired_at - last).total_seconds() >= 1.0  # not before the lease ran out
        lease = _lease(kube_api, namespace)["spec"]
        assert (lease["holderIdentity"], lease["leaseTransitions"]) == ("deploy-2", 1)
    # the dead holder's exit does not free what is now someone else's
    assert other.lock("production").owner == "deploy-2"


class Frozen:
    """A store whose holder can be frozen (a long GC pause, a suspended VM): its calls block
    until it thaws, then go through."""

    def __init__(self, store):
        self.store, self.thawed = store, threading.Event()
        self.thawed.set()

    def acquire(self, *args, **kw):
        self.thawed.wait()
        return self.store.acquire(*args, **kw)

    def release(self, *args):
        return self.store.release(*args)


def test_a_holder_whose_lease_was_taken_over_finds_out_at_its_next_renewal(job):
    frozen, other = Frozen(job()), job()
    held = HeldLock(frozen, "production", "deploy-1", "canary shop:2", lease=1)
    with held:
        frozen.thawed.clear()
        other.acquire("production", "deploy-2", "deploy shop:3", ttl=30, wait=10)
        frozen.thawed.set()
        _until(lambda: held.lost is not None, what="the loss being noticed")
        assert held.lost == "taken by deploy-2 (deploy shop:3)"
        with pytest.raises(DeployError, match="the lock on 'production' was lost"):
            held.check()
    assert other.lock("production").owner == "deploy-2"


def test_release_frees_only_the_holders_own_lock(job):
    first, second = job(), job()
    first.acquire("production", "deploy-1", "deploy", ttl=30)
    assert second.release("production", "deploy-2") is False
    assert second.lock("production").owner == "deploy-1"
    assert first.release("production", "deploy-1") is True
    assert second.lock("production") is None


def test_environments_sharing_a_namespace_have_locks_of_their_own(kube_api, namespace):
    store = ClusterStore(
        _cluster(kube_api), namespaces={"staging": namespace, "production": namespace}
    )
    store.acquire("staging", "deploy-1", "deploy", ttl=30)
    assert store.acquire("production", "deploy-2", "deploy", ttl=30).owner == "deploy-2"
    assert store.lock("staging").owner == "deploy-1"


def test_an_environment_without_a_namespace_of_its_own_locks_in_one_named_after_it(kube_api):
    cluster = _cluster(kube_api)
    name = f"lease-env-{time.monotonic_ns() % 10**9}"
    store = ClusterStore(cluster)
    try:
        store.acquire(name, "deploy-1", "deploy", ttl=30)
        assert cluster.get("coordination.k8s.io/v1", "Lease", name, lease_name(name))
    finally:
        cluster.delete("v1", "Namespace", "", name)


def test_the_sql_store_renews_a_lock_without_moving_when_it_was_taken(tmp_path):
    store = SqlStore(f"sqlite:///{tmp_path / 'pb.db'}")
    first = store.acquire("prod", "deploy-1", "deploy", ttl=0.5)
    time.sleep(0.01)
    renewed = store.acquire("prod", "deploy-1", "deploy", ttl=0.5)
    assert renewed.acquired_at == first.acquired_at
    assert renewed.expires_at > first.expires_at
