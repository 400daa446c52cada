"""What each strategy keeps between a pause and its promote or abort, or for a rollback, is a typed
model on the record (RollingState, BlueGreenState, CanaryState), not dictionary keys; it reads
back typed from either store, from a fresh store object, and from records written before it was
typed."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from sqlalchemy import create_engine, text

from pipeline_bot.deploy.cluster_store import ClusterStore
from pipeline_bot.deploy.engine import DeployEngine
from pipeline_bot.deploy.gates import Verdict
from pipeline_bot.integrations.kubernetes import KubernetesCluster
from pipeline_bot.integrations.store import SqlStore
from pipeline_bot.models import (
    BlueGreenState,
    CanaryState,
    CanaryStep,
    DeployRequest,
    RollingState,
    Strategy,
    StrategyParameters,
)
from pipeline_bot.repo_config import Environment


class Continue:
    def prepare(self, namespace, app):
        return None

    def evaluate(self, step):
        return Verdict("continue", "fine")


def _cluster(kube_api) -> KubernetesCluster:
    cfg = client.Configuration()
    cfg.host = kube_api.url
    return KubernetesCluster(client.ApiClient(cfg))


@pytest.fixture(params=["sql", "cluster"])
def stores(request, kube_api, namespace, tmp_path):
    """Fresh store objects on one state: each call is another process's view."""
    if request.param == "cluster":
        return lambda: ClusterStore(_cluster(kube_api), namespaces={"production": namespace})
    url = f"sqlite:///{tmp_path / 'pb.db'}"
    return lambda: SqlStore(url)


@pytest.fixture
def env(namespace):
    return Environment(name="production", namespace=namespace)


def _strategy(name, *, steps=(), manual=False, keep=0) -> Strategy:
    return Strategy(
        name=name,
        environment="production",
        reasons=["test"],
        parameters=StrategyParameters(
            replicas=4,
            steps=[CanaryStep(weight=w, pause_seconds=0) for w in steps],
            manual_promotion=manual,
            keep_previous_seconds=keep,
        ),
    )


def _req(image: str) -> DeployRequest:
    return DeployRequest(
        app="shop", environment="production", image=image, commit_sha="abc", timeout_seconds=20
    )


def _image(template) -> str:
    return template["spec"]["containers"][0]["image"]


def test_a_paused_canary_keeps_typed_state_that_another_store_reads(kube_api, stores, env):
    engine = DeployEngine(_cluster(kube_api), stores(), gate=Continue())
    engine.deploy(_req("shop:1"), _strategy("rolling"), env)
    paused = engine.deploy(_req("shop:2"), _strategy("canary", steps=[25, 50], manual=True), env)
    assert paused.status == "paused", paused.message
    st = stores().get(paused.deploy_id).strategy_state
    assert isinstance(st, CanaryState)
    assert (st.deployment, st.canary, st.total, st.weights, st.step) == (
        "shop",
        "shop-canary",
        4,
        [25, 50],
        2,
    )
    assert (_image(st.template), _image(st.stable_template)) == ("shop:2", "shop:1")


def test_rolling_and_blue_green_records_carry_their_own_state(kube_api, stores, env):
    engine = DeployEngine(_cluster(kube_api), stores(), gate=Continue())
    first = engine.deploy(_req("shop:1"), _strategy("rolling"), env)
    second = engine.deploy(_req("shop:2"), _strategy("rolling"), env)
    rolled = stores().get(second.deploy_id).strategy_state
    assert isinstance(rolled, RollingState)
    assert (_image(rolled.template), _image(rolled.previous_template)) == ("shop:2", "shop:1")
    assert stores().get(first.deploy_id).strategy_state.previous_template is None

    paused = engine.deploy(_req("shop:3"), _strategy("blue-green", manual=True, keep=60), env)
    assert paused.status == "paused", paused.message
    st = stores().get(paused.deploy_id).strategy_state
    assert isinstance(st, BlueGreenState)
    assert (st.color, st.deployment, st.previous_deployment) == ("blue", "shop-blue", "shop")
    assert st.selector["pipeline-bot.dev/color"] == "blue"
    assert st.scale_down_at is None  # not switched yet
    promoted = DeployEngine(_cluster(kube_api), stores(), gate=Continue()).promote(
        "production", "shop", timeout=20
    )
    assert promoted.status == "succeeded", promoted.message
    after = stores().get(paused.deploy_id).strategy_state
    assert after.scale_down_at is not None
    assert after.keep_seconds == 60


def test_notes_other_tools_attach_stay_beside_the_typed_state(kube_api, stores, env):
    engine = DeployEngine(_cluster(kube_api), stores(), gate=Continue())
    result = engine.deploy(_req("shop:1"), _strategy("rolling"), env)
    store = stores()
    record = store.get(result.deploy_id)
    record.state["investigation"] = {"investigation": {"likely_cause": "a typo"}}
    store.save(record)
    again = stores().get(result.deploy_id)
    assert again.state == {"investigation": {"investigation": {"likely_cause": "a typo"}}}
    assert isinstance(again.strategy_state, RollingState)


def test_a_canary_paused_before_the_state_was_typed_is_still_promoted(kube_api, env, tmp_path):
    url = f"sqlite:///{tmp_path / 'pb.db'}"
    engine = DeployEngine(_cluster(kube_api), SqlStore(url), gate=Continue())
    engine.deploy(_req("shop:1"), _strategy("rolling"), env)
    paused = engine.deploy(_req("shop:2"), _strategy("canary", steps=[25], manual=True), env)
    st = SqlStore(url).get(paused.deploy_id).strategy_state
    legacy = {  # the row as the engine wrote it when the state was dictionary keys
        "kind": "canary",
        "deployment": st.deployment,
        "canary": st.canary,
        "total": st.total,
        "weights": st.weights,
        "step": st.step,
        "template": st.template,
        "stable_template": st.stable_template,
    }
    db = create_engine(url)
    with db.begin() as conn:
        conn.execute(
            text("UPDATE deployments SET state = :s WHERE id = :i"),
            {"s": json.dumps(legacy), "i": paused.deploy_id},
        )
    db.dispose()
    assert SqlStore(url).get(paused.deploy_id).strategy_state == st
    promoted = DeployEngine(_cluster(kube_api), SqlStore(url), gate=Continue()).promote(
        "production", "shop", timeout=20
    )
    assert promoted.status == "succeeded", promoted.message
    dep = _cluster(kube_api).get("apps/v1", "Deployment", env.namespace, "shop")
    assert _image(dep["spec"]["template"]) == "shop:2"
