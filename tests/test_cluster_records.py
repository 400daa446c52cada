"""Deploy records kept in the cluster (issue 14, point 5): one Secret per record in the
environment's namespace, typed, newest first, limited per app, safe when two writers race, and
seen by every other store object (another job, another front end) as the first one wrote them."""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client

from pipeline_bot.deploy.cluster_store import ClusterStore
from pipeline_bot.deploy.engine import DeployEngine
from pipeline_bot.deploy.records import record_name
from pipeline_bot.errors import DeployError
from pipeline_bot.integrations.kubernetes import KubernetesCluster
from pipeline_bot.models import (
    CanaryStep,
    DeployRecord,
    DeployRequest,
    Strategy,
    StrategyParameters,
)
from pipeline_bot.repo_config import Environment

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _cluster(kube_api) -> KubernetesCluster:
    cfg = client.Configuration()
    cfg.host = kube_api.url
    return KubernetesCluster(client.ApiClient(cfg))


@pytest.fixture
def job(kube_api, namespace):
    """A new, independent store on its own client: what another job would build."""
    return lambda **kw: ClusterStore(
        _cluster(kube_api), namespaces={"production": namespace, "staging": namespace}, **kw
    )


def _record(i: int, status: str = "succeeded", app: str = "shop", **kw) -> DeployRecord:
    return DeployRecord(
        id=f"d{i:03d}",
        environment=kw.pop("environment", "production"),
        app=app,
        namespace="shop-ns",
        image=f"{app}:{i}",
        strategy="rolling",
        status=status,
        started_at=T0 + timedelta(minutes=i),
        **kw,
    )


def test_a_record_is_a_labelled_secret_holding_the_typed_record(job, kube_api, namespace):
    job().save(_record(1, actor="octocat"))
    secret = _cluster(kube_api).get("v1", "Secret", namespace, record_name("d001"))
    labels = secret["metadata"]["labels"]
    assert labels["pipeline-bot.dev/app"] == "shop"
    assert labels["pipeline-bot.dev/environment"] == "production"
    assert labels["pipeline-bot.dev/status"] == "succeeded"
    assert secret["type"] == "pipeline-bot.dev/deploy-record.v1"
    stored = json.loads(base64.b64decode(secret["data"]["record"]))
    assert (stored["id"], stored["image"], stored["actor"]) == ("d001", "shop:1", "octocat")


def test_records_written_by_one_job_are_read_by_another(job):
    first = job()
    for i in (1, 2, 3):
        first.save(_record(i))
    first.save(_record(4, status="failed", reason="ImagePullBackOff"))
    other = job()  # nothing in common with `first` but the cluster
    history = other.history("production", "shop")
    assert [r.id for r in history] == ["d004", "d003", "d002", "d001"]  # newest first
    assert isinstance(history[0], DeployRecord)
    assert history[0].reason == "ImagePullBackOff"
    assert [r.id for r in other.history("production", "shop", status="succeeded", limit=2)] == [
        "d003",
        "d002",
    ]
    assert other.last_successful("production", "shop").id == "d003"
    assert other.last_successful("production", "shop", before="d003").id == "d002"
    assert job().get("d002").image == "shop:2"
    assert job().get("nope") is None


def test_environments_and_apps_sharing_a_namespace_keep_their_own_history(job):
    store = job()
    store.save(_record(1, environment="staging"))
    store.save(_record(2, app="cart"))
    store.save(_record(3))
    assert [r.id for r in store.history("staging")] == ["d001"]
    assert [r.id for r in store.history("production")] == ["d003", "d002"]
    assert [r.id for r in job().history("production", "cart")] == ["d002"]


def test_names_that_are_not_label_values_are_kept_exactly(job, kube_api, namespace):
    app = "Shop_Front.end-" + "x" * 60  # too long and mixed case: a digest in the label
    job().save(_record(1, app=app))
    assert [r.app for r in job().history("production", app)] == [app]
    assert job().history("production", "shop") == []


def test_history_is_limited_per_app_but_keeps_what_later_commands_need(job):
    store = job(keep=3)
    store.save(_record(1))  # the one before the latest success: a rollback's target
    store.save(_record(2, status="paused"))  # a paused canary someone may still promote
    for i in range(3, 9):
        store.save(_record(i, status="failed"))
    store.save(_record(9))  # the latest success
    store.save(_record(10, app="cart"))  # another app's history is not this app's
    ids = [r.id for r in job().history("production", "shop", limit=50)]
    assert ids == ["d009", "d008", "d007", "d002", "d001"]
    assert [r.id for r in job().history("production", "cart")] == ["d010"]


def test_a_writer_with_a_stale_copy_is_refused_and_retries_from_the_fresh_one(job):
    job().save(_record(1, status="paused"))
    first, second = job(), job()
    mine, theirs = first.get("d001"), second.get("d001")
    mine.status = "succeeded"  # promoted by one job ...
    first.save(mine)
    theirs.status = "aborted"  # ... while another, from what it read before, aborts it
    with pytest.raises(DeployError, match="changed by someone else since it was read"):
        second.save(theirs)
    assert job().get("d001").status == "succeeded"
    fresh = second.get("d001")
    fresh.reason = "noted"
    second.save(fresh)
    assert job().get("d001").reason == "noted"


def test_a_new_record_with_an_id_in_use_is_refused(job):
    job().save(_record(1))
    with pytest.raises(DeployError, match="a record with this id exists already"):
        job().save(_record(1, status="failed"))


def test_many_writers_at_once_leave_a_consistent_limited_history(job):
    stores = [job(keep=4) for _ in range(6)]
    start = threading.Barrier(len(stores))
    errors = []

    def write(i: int) -> None:
        start.wait()
        try:
            for k in range(3):
                stores[i].save(_record(i * 10 + k, status="failed"))
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = [r.id for r in job().history("production", "shop", limit=50)]
    assert ids == ["d052", "d051", "d050", "d042"]


# ---------------------------------------------------------------- through the deploy engine


def _canary(manual: bool) -> Strategy:
    return Strategy(
        name="canary",
        environment="production",
        reasons=["test"],
        parameters=StrategyParameters(
            replicas=4, steps=[CanaryStep(weight=25, pause_seconds=0)], manual_promotion=manual
        ),
    )


def _req(image: str) -> DeployRequest:
    return DeployRequest(
        app="shop", environment="production", image=image, commit_sha="abc", timeout_seconds=20
    )


class Continue:
    def prepare(self, namespace, app):
        return None

    def evaluate(self, step):
        from pipeline_bot.deploy.gates import Verdict

        return Verdict("continue", "fine")


def _image(cluster, namespace, name="shop"):
    dep = cluster.get("apps/v1", "Deployment", namespace, name)
    return dep["spec"]["template"]["spec"]["containers"][0]["image"] if dep else None


def test_a_canary_paused_in_one_job_is_promoted_from_another(kube_api, namespace, job):
    env = Environment(name="production", namespace=namespace)
    first = DeployEngine(_cluster(kube_api), job(), gate=Continue())
    assert first.deploy(_req("shop:1"), _canary(False), env).status == "succeeded"
    paused = first.deploy(_req("shop:2"), _canary(True), env)
    assert paused.status == "paused", paused.message
    del first  # the job ends; its container and everything in it are gone

    cluster = _cluster(kube_api)
    second = DeployEngine(cluster, job(), gate=Continue())  # a later job, or the App, or MCP
    status = second.status("production", "shop", namespace)
    assert (status.latest.id, status.latest.status) == (paused.deploy_id, "paused")
    promoted = second.promote("production", "shop", timeout=20)
    assert promoted.status == "succeeded", promoted.message
    assert promoted.deploy_id == paused.deploy_id
    assert _image(cluster, namespace) == "shop:2"
    assert _image(cluster, namespace, "shop-canary") is None

    third = DeployEngine(_cluster(kube_api), job(), gate=Continue())
    assert third.store.last_successful("production", "shop").image == "shop:2"
    back = third.rollback("production", "shop", timeout=20)
    assert back.status == "succeeded", back.message
    assert _image(cluster, namespace) == "shop:1"  # the last good version before it


def test_a_store_for_a_repository_config_puts_each_environment_where_it_deploys(
    kube_api, namespace
):
    from pipeline_bot.errors import UnknownEnvironmentError
    from pipeline_bot.repo_config import parse_repo_config

    config = parse_repo_config(
        "version: 1\nenvironments:\n"
        f"  - {{name: staging, order: 1, namespace: {namespace}}}\n"
        f"  - {{name: production, order: 2, namespace: {namespace}, kube_context: prod}}\n"
    )
    contexts = []

    def connect(env):
        contexts.append(env.kube_context)
        return _cluster(kube_api)

    store = ClusterStore.for_config(config, connect)
    assert contexts == []  # nothing is built before it is used
    store.save(_record(1))
    store.save(_record(2, environment="staging"))
    assert contexts == ["prod", None]
    assert [r.id for r in job_history(kube_api, namespace)] == ["d002", "d001"]
    with pytest.raises(UnknownEnvironmentError):
        store.history("qa")


def job_history(kube_api, namespace):
    cluster = _cluster(kube_api)
    found = cluster.list_objects("v1", "Secret", namespace, labels={"pipeline-bot.dev/app": "shop"})
    records = [
        DeployRecord.model_validate_json(base64.b64decode(s["data"]["record"])) for s in found
    ]
    return sorted(records, key=lambda r: r.started_at, reverse=True)
