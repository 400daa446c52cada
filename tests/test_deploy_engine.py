"""The deploy engine end to end against the Kubernetes API test server (over HTTP, with the real
`kubernetes` client), checked with the real kubectl where it has an opinion."""

from __future__ import annotations

import subprocess
import threading

import pytest
from kubernetes import client

from pipeline_bot.core.variants import COLOR_LABEL
from pipeline_bot.deploy.cluster_store import ClusterStore
from pipeline_bot.deploy.engine import DeployEngine
from pipeline_bot.deploy.gates import Verdict
from pipeline_bot.errors import IntegrationError, LockedError, ManifestError, PausedDeployError
from pipeline_bot.integrations.kubernetes import KubernetesCluster
from pipeline_bot.integrations.store import SqlStore
from pipeline_bot.models import CanaryStep, DeployRequest, Strategy, StrategyParameters
from pipeline_bot.repo_config import Environment
from tests.conftest import kubectl_binary


class RecordingGate:
    """Test double for a metric gate: records each step and answers from a script."""

    def __init__(self, decisions=None):
        self.decisions = list(decisions or [])
        self.steps = []

    def prepare(self, namespace, app):
        self.prepared = (namespace, app)

    def evaluate(self, step):
        self.steps.append((step.weight, step.canary["spec"]["replicas"]))
        decision = self.decisions.pop(0) if self.decisions else "continue"
        return Verdict(decision, f"scripted {decision}")


@pytest.fixture
def cluster(kube_api):
    cfg = client.Configuration()
    cfg.host = kube_api.url
    return KubernetesCluster(client.ApiClient(cfg))


@pytest.fixture(params=["sql", "cluster"])
def store(request, tmp_path, cluster, namespace):
    """Every test on both stores: SQL, and the cluster's own Leases and Secrets."""
    if request.param == "cluster":
        return ClusterStore(cluster, namespaces={"production": namespace})
    return SqlStore(f"sqlite:///{tmp_path / 'pb.db'}")


@pytest.fixture
def gate():
    return RecordingGate()


@pytest.fixture
def engine(cluster, store, gate):
    lines: list[str] = []
    eng = DeployEngine(cluster, store, gate=gate, progress=lines.append)
    eng.lines = lines
    return eng


@pytest.fixture
def env(namespace):
    return Environment(name="production", namespace=namespace)


def _strategy(name, *, steps=(), manual=False, keep=0, replicas=4):
    return Strategy(
        name=name,
        environment="production",
        reasons=["test"],
        parameters=StrategyParameters(
            replicas=replicas,
            max_surge="25%" if name == "rolling" else None,
            max_unavailable="0" if name == "rolling" else None,
            steps=[CanaryStep(weight=w, pause_seconds=0) for w in steps],
            manual_promotion=manual,
            keep_previous_seconds=keep,
        ),
    )


def _req(image, **kw):
    return DeployRequest(
        app="shop",
        environment="production",
        image=image,
        commit_sha="abc123",
        timeout_seconds=20,
        **kw,
    )


def _deployment(cluster, namespace, name="shop"):
    return cluster.get("apps/v1", "Deployment", namespace, name)


def _image(dep):
    return dep["spec"]["template"]["spec"]["containers"][0]["image"]


def _rollout_status(kube_api, namespace, tmp_path, name="shop"):
    config = kube_api.kubeconfig(tmp_path / "kubeconfig", namespace)
    return subprocess.run(
        [
            kubectl_binary(),
            "--kubeconfig",
            str(config),
            "rollout",
            "status",
            f"deployment/{name}",
            "--timeout=20s",
        ],
        capture_output=True,
        text=True,
        check=False,
    )


# ---------------------------------------------------------------- rolling


def test_rolling_deploy_succeeds_labels_objects_and_kubectl_agrees(
    engine, cluster, env, namespace, kube_api, tmp_path
):
    result = engine.deploy(_req("shop:1"), _strategy("rolling"), env)
    assert result.status == "succeeded", result.message
    dep = _deployment(cluster, namespace)
    assert _image(dep) == "shop:1"
    assert dep["spec"]["replicas"] == 4
    assert dep["metadata"]["labels"]["pipeline-bot.dev/environment"] == "production"
    notes = dep["spec"]["template"]["metadata"]["annotations"]
    assert notes["pipeline-bot.dev/deploy-id"] == result.deploy_id
    assert notes["pipeline-bot.dev/commit"] == "abc123"
    assert cluster.get("v1", "Service", namespace, "shop") is not None
    status = _rollout_status(kube_api, namespace, tmp_path)
    assert status.returncode == 0, status.stderr
    assert [s.name for s in result.steps] == ["apply shop", "rollout"]


def test_failing_image_rolls_back_and_says_why(
    engine, cluster, env, namespace, kube_api, tmp_path, store
):
    assert engine.deploy(_req("shop:1"), _strategy("rolling"), env).status == "succeeded"
    kube_api.fail_image("shop:broken")
    result = engine.deploy(_req("shop:broken"), _strategy("rolling"), env)
    assert result.status == "rolled_back"
    assert result.rolled_back
    assert "ImagePullBackOff" in result.message
    assert 'Failed to pull image "shop:broken"' in result.message
    assert "rolled back to shop:1" in result.message
    assert _image(_deployment(cluster, namespace)) == "shop:1"
    assert _rollout_status(kube_api, namespace, tmp_path).returncode == 0
    record = store.get(result.deploy_id)
    assert record.status == "rolled_back"
    assert "ImagePullBackOff" in record.reason


def test_failing_first_deploy_is_removed(engine, cluster, env, namespace, kube_api):
    kube_api.fail_image("shop:broken")
    result = engine.deploy(_req("shop:broken"), _strategy("rolling"), env)
    assert result.status == "rolled_back"
    assert _deployment(cluster, namespace) is None


def test_without_auto_rollback_a_failure_is_left_as_it_is(
    engine, cluster, env, namespace, kube_api
):
    engine.deploy(_req("shop:1"), _strategy("rolling"), env)
    kube_api.fail_image("shop:broken")
    result = engine.deploy(_req("shop:broken", auto_rollback=False), _strategy("rolling"), env)
    assert result.status == "failed"
    assert "automatic rollback is off" in result.message
    assert _image(_deployment(cluster, namespace)) == "shop:broken"


def test_rollback_command_returns_to_the_previous_successful_deploy(
    engine, cluster, env, namespace
):
    engine.deploy(_req("shop:1"), _strategy("rolling"), env)
    engine.deploy(_req("shop:2"), _strategy("rolling"), env)
    result = engine.rollback("production", "shop", timeout=20)
    assert result.status == "succeeded", result.message
    assert result.message == "rolled back to shop:1"
    assert _image(_deployment(cluster, namespace)) == "shop:1"


# ---------------------------------------------------------------- blue-green


def test_blue_green_switches_the_service_only_when_the_new_colour_is_ready(
    engine, cluster, env, namespace, kube_api
):
    first = engine.deploy(_req("shop:1"), _strategy("blue-green", keep=600), env)
    assert first.status == "succeeded", first.message
    service = cluster.get("v1", "Service", namespace, "shop")
    assert service["spec"]["selector"][COLOR_LABEL] == "blue"

    second = engine.deploy(_req("shop:2"), _strategy("blue-green", keep=600), env)
    assert second.status == "succeeded", second.message
    assert "blue stays up 600s" in second.message
    notes = cluster.get("v1", "Service", namespace, "shop")["metadata"]["annotations"]
    assert notes["pipeline-bot.dev/strategy"] == "blue-green"
    assert (
        cluster.get("v1", "Service", namespace, "shop")["spec"]["selector"][COLOR_LABEL] == "green"
    )
    assert _image(_deployment(cluster, namespace, "shop-green")) == "shop:2"
    assert _image(_deployment(cluster, namespace, "shop-blue")) == "shop:1"

    kube_api.fail_image("shop:broken")
    third = engine.deploy(_req("shop:broken"), _strategy("blue-green"), env)
    assert third.status == "rolled_back"
    assert "blue never took traffic" in third.message
    assert (
        cluster.get("v1", "Service", namespace, "shop")["spec"]["selector"][COLOR_LABEL] == "green"
    )
    assert _deployment(cluster, namespace, "shop-blue") is None


def test_blue_green_with_manual_promotion_waits_then_promote_switches(
    engine, cluster, env, namespace
):
    engine.deploy(_req("shop:1"), _strategy("blue-green"), env)
    paused = engine.deploy(_req("shop:2"), _strategy("blue-green", manual=True), env)
    assert paused.status == "paused"
    assert (
        cluster.get("v1", "Service", namespace, "shop")["spec"]["selector"][COLOR_LABEL] == "blue"
    )
    promoted = engine.promote("production", "shop", timeout=20)
    assert promoted.status == "succeeded"
    assert (
        cluster.get("v1", "Service", namespace, "shop")["spec"]["selector"][COLOR_LABEL] == "green"
    )
    back = engine.rollback("production", "shop", timeout=20)
    assert back.status == "succeeded", back.message
    assert (
        cluster.get("v1", "Service", namespace, "shop")["spec"]["selector"][COLOR_LABEL] == "blue"
    )


def test_a_deploy_over_a_paused_blue_green_is_refused_naming_it(engine, cluster, env, namespace):
    """Issue 16, point 7: the next deploy used to replace a paused blue-green silently (its
    waiting colour left running, its record `paused`, promote unable to find it)."""
    engine.deploy(_req("shop:1"), _strategy("blue-green"), env)
    paused = engine.deploy(_req("shop:2"), _strategy("blue-green", manual=True), env)
    assert paused.status == "paused"
    with pytest.raises(PausedDeployError) as refused:
        engine.deploy(_req("shop:3"), _strategy("blue-green", manual=True), env)
    assert paused.deploy_id in refused.value.message
    assert "pipeline-bot promote -e production --app shop" in refused.value.message
    assert "--supersede" in refused.value.message
    latest = engine.store.history("production", "shop", limit=1)[0]
    assert (latest.id, latest.status) == (paused.deploy_id, "paused")  # nothing recorded over it
    promoted = engine.promote("production", "shop", timeout=20)  # and it can still be promoted
    assert (promoted.status, promoted.image) == ("succeeded", "shop:2")


def test_supersede_aborts_the_paused_deploy_properly_then_deploys(engine, cluster, env, namespace):
    engine.deploy(_req("shop:1"), _strategy("blue-green"), env)
    paused = engine.deploy(_req("shop:2"), _strategy("blue-green", manual=True), env)
    result = engine.deploy(_req("shop:3", supersede=True), _strategy("blue-green"), env)
    assert result.status == "succeeded", result.message
    old = next(
        r for r in engine.store.history("production", "shop", limit=5) if r.id == paused.deploy_id
    )
    assert old.status in ("aborted", "rolled_back")
    assert "superseded by deploy" in (old.reason or "")
    selector = cluster.get("v1", "Service", namespace, "shop")["spec"]["selector"]
    colours = {
        c: cluster.get("apps/v1", "Deployment", namespace, f"shop-{c}") for c in ("blue", "green")
    }
    serving = colours[selector[COLOR_LABEL]]
    assert serving["spec"]["template"]["spec"]["containers"][0]["image"] == "shop:3"


# ---------------------------------------------------------------- canary


def test_canary_steps_follow_the_weights_then_promote(
    engine, cluster, env, namespace, gate, kube_api, tmp_path
):
    engine.deploy(_req("shop:1"), _strategy("canary", steps=[25, 50]), env)  # first: rolling
    result = engine.deploy(_req("shop:2"), _strategy("canary", steps=[25, 50]), env)
    assert result.status == "succeeded", result.message
    assert gate.steps == [(25, 1), (50, 2)]
    assert _image(_deployment(cluster, namespace)) == "shop:2"
    assert _deployment(cluster, namespace)["spec"]["replicas"] == 4
    assert _deployment(cluster, namespace, "shop-canary") is None
    assert _rollout_status(kube_api, namespace, tmp_path).returncode == 0


def test_a_failing_canary_is_aborted_and_stable_is_untouched(
    engine, cluster, env, namespace, kube_api
):
    engine.deploy(_req("shop:1"), _strategy("canary", steps=[25]), env)
    kube_api.fail_image("shop:broken")
    result = engine.deploy(_req("shop:broken"), _strategy("canary", steps=[25, 50]), env)
    assert result.status == "rolled_back"
    assert "ImagePullBackOff" in result.message
    stable = _deployment(cluster, namespace)
    assert (_image(stable), stable["spec"]["replicas"]) == ("shop:1", 4)
    assert _deployment(cluster, namespace, "shop-canary") is None


def test_a_gate_that_says_rollback_aborts_the_canary(engine, cluster, env, namespace, gate):
    engine.deploy(_req("shop:1"), _strategy("canary", steps=[25]), env)
    gate.decisions = ["continue", "rollback"]
    result = engine.deploy(_req("shop:2"), _strategy("canary", steps=[25, 50]), env)
    assert result.status == "rolled_back"
    assert "scripted rollback" in result.message
    assert _image(_deployment(cluster, namespace)) == "shop:1"


def test_manual_canary_pauses_then_abort_or_promote(engine, cluster, env, namespace):
    engine.deploy(_req("shop:1"), _strategy("canary", steps=[25]), env)
    paused = engine.deploy(_req("shop:2"), _strategy("canary", steps=[25], manual=True), env)
    assert paused.status == "paused"
    assert _image(_deployment(cluster, namespace, "shop-canary")) == "shop:2"
    aborted = engine.abort("production", "shop")
    assert aborted.status == "rolled_back"
    assert _deployment(cluster, namespace, "shop-canary") is None
    assert _deployment(cluster, namespace)["spec"]["replicas"] == 4

    engine.deploy(_req("shop:3"), _strategy("canary", steps=[25], manual=True), env)
    promoted = engine.promote("production", "shop", timeout=20)
    assert promoted.status == "succeeded", promoted.message
    assert _image(_deployment(cluster, namespace)) == "shop:3"


def test_promote_without_a_paused_deploy_says_so(engine, env):
    engine.deploy(_req("shop:1"), _strategy("rolling"), env)
    with pytest.raises(Exception, match="its last deploy is succeeded"):
        engine.promote("production", "shop")


# ---------------------------------------------------------------- locks, bad input, dry runs


def test_a_locked_environment_names_the_holder(engine, store, env, cluster, namespace):
    store.acquire("production", "someone-else", "deploy api:9", ttl=60)
    with pytest.raises(LockedError, match="locked by someone-else \\(deploy api:9\\)"):
        engine.deploy(_req("shop:1"), _strategy("rolling"), env)
    assert _deployment(cluster, namespace) is None


def test_a_second_deploy_waits_for_the_lock_then_runs(cluster, store, env, namespace, gate):
    store.acquire("production", "someone-else", "deploy api:9", ttl=60)
    engine = DeployEngine(cluster, store, gate=gate, lock_wait=10)
    timer = threading.Timer(0.3, store.release, args=("production", "someone-else"))
    timer.start()
    result = engine.deploy(_req("shop:1"), _strategy("rolling"), env)
    timer.join()
    assert result.status == "succeeded"
    assert store.lock("production") is None


def test_a_broken_manifest_is_rejected_before_anything_is_applied(
    engine, env, tmp_path, cluster, namespace
):
    bad = tmp_path / "deploy.yaml"
    bad.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shop}\nspec:\n"
        "  selector: {matchLabels: {app: shop}}\n  template:\n"
        "    metadata: {labels: {app: other}}\n"
        "    spec: {containers: [{name: shop, image: shop:1}]}\n"
    )
    with pytest.raises(ManifestError, match=r"Deployment/shop: spec\.template\.metadata\.labels"):
        engine.deploy(_req("shop:2", manifests=[str(bad)]), _strategy("rolling"), env)
    assert cluster.list_objects("apps/v1", "Deployment", namespace) == []


def test_manifests_get_the_image_substituted(engine, env, tmp_path, cluster, namespace):
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shop}\nspec:\n  replicas: 2\n"
        "  selector: {matchLabels: {app: shop}}\n  template:\n    metadata: {labels: {app: shop}}\n"
        "    spec:\n      containers:\n"
        "        - {name: shop, image: 'registry.local:5000/shop:old'}\n"
        "        - {name: proxy, image: envoy:1.30}\n"
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: shop-config}\ndata: {a: b}\n"
    )
    result = engine.deploy(
        _req("registry.local:5000/shop:new", manifests=[str(manifest)]), _strategy("rolling"), env
    )
    assert result.status == "succeeded", result.message
    images = [
        c["image"]
        for c in _deployment(cluster, namespace)["spec"]["template"]["spec"]["containers"]
    ]
    assert images == ["registry.local:5000/shop:new", "envoy:1.30"]
    assert cluster.get("v1", "ConfigMap", namespace, "shop-config") is not None


def test_client_dry_run_renders_without_a_cluster(store, env, tmp_path):
    engine = DeployEngine(KubernetesCluster(client.ApiClient(client.Configuration())), store)
    result = engine.deploy(_req("shop:1", dry_run="client"), _strategy("rolling"), env)
    assert result.status == "planned"
    assert [o["kind"] for o in result.objects] == ["Deployment", "Service"]


def test_server_dry_run_changes_nothing(engine, env, cluster, namespace):
    result = engine.deploy(_req("shop:1", dry_run="server"), _strategy("rolling"), env)
    assert result.status == "planned"
    assert _deployment(cluster, namespace) is None


def test_an_unreachable_api_server_is_a_clear_error_after_retries(store, env):
    cfg = client.Configuration()
    cfg.host = "http://127.0.0.1:9"  # discard port: nothing listens
    engine = DeployEngine(KubernetesCluster(client.ApiClient(cfg)), store)
    with pytest.raises(IntegrationError, match="unreachable after 5 attempts"):
        engine.deploy(_req("shop:1"), _strategy("rolling"), env)
    assert store.lock("production") is None


# ---------------------------------------------------------------- strategies over time


def test_strategies_can_change_from_one_deploy_to_the_next(engine, cluster, env, namespace, store):
    assert engine.deploy(_req("shop:1"), _strategy("rolling"), env).status == "succeeded"
    green = engine.deploy(_req("shop:2"), _strategy("blue-green", keep=0), env)
    assert green.status == "succeeded", green.message
    service = cluster.get("v1", "Service", namespace, "shop")
    assert service["spec"]["selector"][COLOR_LABEL] == "blue"
    assert "shop stays up 0s" in green.message

    # the next deploy tidies up: the plain Deployment's rollback window has passed
    rolled = engine.deploy(_req("shop:3"), _strategy("rolling"), env)
    assert rolled.status == "succeeded", rolled.message
    assert _image(_deployment(cluster, namespace, "shop-blue")) == "shop:3"
    assert _deployment(cluster, namespace)["spec"]["replicas"] == 0
    assert "scaled down shop: its rollback window has passed" in engine.lines

    canary = engine.deploy(_req("shop:4"), _strategy("canary", steps=[50]), env)
    assert canary.status == "succeeded", canary.message
    assert _image(_deployment(cluster, namespace, "shop-blue")) == "shop:4"
    assert _deployment(cluster, namespace, "shop-canary") is None


def test_rollback_after_blue_green_switches_traffic_back(engine, cluster, env, namespace):
    engine.deploy(_req("shop:1"), _strategy("blue-green", keep=3600), env)
    engine.deploy(_req("shop:2"), _strategy("blue-green", keep=3600), env)
    assert (
        cluster.get("v1", "Service", namespace, "shop")["spec"]["selector"][COLOR_LABEL] == "green"
    )
    back = engine.rollback("production", "shop", timeout=20)
    assert back.status == "succeeded", back.message
    assert (
        cluster.get("v1", "Service", namespace, "shop")["spec"]["selector"][COLOR_LABEL] == "blue"
    )
    assert "shop-blue is live" in back.message


def test_a_cluster_error_half_way_is_recorded_and_the_lock_released(engine, env, tmp_path, store):
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shop}\nspec:\n"
        "  selector: {matchLabels: {app: shop}}\n  template:\n    metadata: {labels: {app: shop}}\n"
        "    spec: {containers: [{name: shop, image: shop:1}]}\n"
        "---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"
    )
    with pytest.raises(IntegrationError, match="the cluster does not know Widget"):
        engine.deploy(_req("shop:1", manifests=[str(manifest)]), _strategy("rolling"), env)
    record = store.history("production", "shop")[0]
    assert record.status == "failed"
    assert "the cluster does not know Widget" in record.reason
    assert store.lock("production") is None


def test_status_reports_what_runs_and_what_was_done(engine, env, namespace, store):
    engine.deploy(_req("shop:1"), _strategy("rolling"), env)
    status = engine.status("production", "shop", namespace)
    (workload,) = status.workloads
    assert (workload.name, workload.images, workload.ready, workload.replicas) == (
        "shop",
        ["shop:1"],
        4,
        4,
    )
    assert status.latest.status == "succeeded"
    assert status.lock is None


def test_rollback_without_records_uses_the_previous_revision(
    engine, cluster, env, namespace, kube_api, tmp_path
):
    config = kube_api.kubeconfig(tmp_path / "kubeconfig", namespace)
    kubectl = [kubectl_binary(), "--kubeconfig", str(config)]
    manifest = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shop}\nspec:\n"
        "  replicas: 2\n  selector: {matchLabels: {app: shop}}\n  template:\n"
        "    metadata: {labels: {app: shop}}\n"
        "    spec: {containers: [{name: shop, image: 'shop:%s'}]}\n"
    )
    for tag in ("1", "2"):
        subprocess.run(
            [*kubectl, "apply", "--validate=false", "-f", "-"],
            input=manifest % tag,
            text=True,
            check=True,
            capture_output=True,
        )
        assert _rollout_status(kube_api, namespace, tmp_path).returncode == 0
    result = engine.rollback("production", "shop", namespace=namespace, timeout=20)
    assert result.status == "succeeded", result.message
    assert result.message == "rolled back to revision 1 (shop:1)"
    assert _image(_deployment(cluster, namespace)) == "shop:1"


def test_a_crash_looping_container_fails_the_rollout_fast(
    engine, cluster, env, namespace, kube_api
):
    engine.deploy(_req("shop:1"), _strategy("rolling"), env)
    kube_api.fail_image("shop:crash", "CrashLoopBackOff")
    result = engine.deploy(_req("shop:crash"), _strategy("rolling"), env)
    assert result.status == "rolled_back"
    assert "keeps crashing (3 restarts)" in result.message
    assert "Back-off restarting failed container" in result.message


def test_pods_that_never_get_ready_fail_at_the_progress_deadline(
    engine, cluster, env, namespace, kube_api, tmp_path
):
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: shop}\nspec:\n  replicas: 2\n"
        "  progressDeadlineSeconds: 2\n  selector: {matchLabels: {app: shop}}\n  template:\n"
        "    metadata: {labels: {app: shop}}\n"
        "    spec: {containers: [{name: shop, image: shop:1}]}\n"
    )
    first = engine.deploy(_req("shop:1", manifests=[str(manifest)]), _strategy("rolling"), env)
    assert first.status == "succeeded", first.message
    kube_api.fail_image("shop:unready", "Unready")
    result = engine.deploy(
        _req("shop:unready", manifests=[str(manifest)]), _strategy("rolling"), env
    )
    assert result.status == "rolled_back"
    assert "exceeded its progress deadline" in result.message
    assert _image(_deployment(cluster, namespace)) == "shop:1"


def test_without_server_side_apply_objects_are_created_then_patched(
    engine, cluster, env, namespace, kube_api
):
    kube_api.control("POST", "settings", {"server_side_apply": False})
    assert engine.deploy(_req("shop:1"), _strategy("rolling"), env).status == "succeeded"
    assert engine.deploy(_req("shop:2"), _strategy("rolling"), env).status == "succeeded"
    assert cluster.no_server_side_apply is True
    assert _image(_deployment(cluster, namespace)) == "shop:2"


def test_connects_with_kubeconfig_content_and_a_named_context(kube_api, namespace):
    import json

    content = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "wrong",
            "clusters": [
                {"name": "test", "cluster": {"server": kube_api.url}},
                {"name": "nowhere", "cluster": {"server": "http://127.0.0.1:9"}},
            ],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [
                {"name": "wrong", "context": {"cluster": "nowhere", "user": "u"}},
                {"name": "right", "context": {"cluster": "test", "user": "u"}},
            ],
        }
    )
    cluster = KubernetesCluster.connect(kubeconfig_content=content, context="right")
    assert cluster.get("v1", "Namespace", "", namespace)["metadata"]["name"] == namespace
    with pytest.raises(IntegrationError, match="cannot load the Kubernetes configuration"):
        KubernetesCluster.connect(kubeconfig_content=content, context="missing")


def test_inconclusive_gates_pause_then_expire_by_policy(engine, cluster, gate, namespace, store):
    env = Environment(name="production", namespace=namespace, inconclusive_timeout="0s")
    engine.deploy(_req("shop:1"), _strategy("canary", steps=[25]), env)
    gate.decisions = ["inconclusive"]
    paused = engine.deploy(_req("shop:2"), _strategy("canary", steps=[25, 50]), env)
    assert paused.status == "paused"
    assert "inconclusive" in paused.message
    with pytest.raises(Exception, match="its last deploy is aborted"):
        engine.promote("production", "shop")
    record = store.history("production", "shop")[0]
    assert record.status == "aborted"
    assert "inconclusive_timeout" in record.reason
    assert _deployment(cluster, namespace, "shop-canary") is None
    assert _deployment(cluster, namespace)["spec"]["replicas"] == 4


def test_inconclusive_gates_roll_back_where_the_policy_says_fail(engine, cluster, gate, namespace):
    env = Environment(name="production", namespace=namespace, on_inconclusive="fail")
    engine.deploy(_req("shop:1"), _strategy("canary", steps=[25]), env)
    gate.decisions = ["inconclusive"]
    result = engine.deploy(_req("shop:2"), _strategy("canary", steps=[25]), env)
    assert result.status == "rolled_back"
    assert "policy is to fail" in result.message
    assert _image(_deployment(cluster, namespace)) == "shop:1"
