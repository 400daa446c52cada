"""`pipeline-bot deploy | promote | abort | rollback | status` as a user runs them, against the
Kubernetes API test server."""

from __future__ import annotations

import pytest


def _deploy(cli, repo, *args):
    return cli("deploy", "--repo", str(repo.root), "-e", "production", *args)


def test_deploy_json_has_objects_strategy_and_steps(cli, deploy_env):
    result = _deploy(
        cli,
        deploy_env,
        "--image",
        "registry.local/shop:1",
        "--strategy",
        "rolling",
        "--timeout",
        "30s",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["status"] == "succeeded"
    assert data["strategy"] == "rolling"
    assert [o["kind"] for o in data["objects"]] == ["Deployment", "Service"]
    assert [s["name"] for s in data["steps"]] == ["apply shop", "rollout"]
    assert data["app"] == "shop"  # the only service in the config
    assert "rollout: " in result.stderr  # progress goes to stderr


def test_a_tag_alone_takes_the_service_image_and_auto_follows_the_analysis(cli, deploy_env):
    deploy_env.commit("docs", {"README.md": "# Shop, documented\n"})
    result = _deploy(cli, deploy_env, "--image", "1.2.3", "--format", "json", "--timeout", "30s")
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert data["image"] == "registry.local/shop:1.2.3"
    assert data["strategy"] == "rolling"
    assert "nothing deployable" in data["reasons"][0]


def test_client_dry_run_needs_no_cluster_and_prints_the_objects(
    cli, deploy_env, monkeypatch, tmp_path
):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    result = _deploy(
        cli,
        deploy_env,
        "--image",
        "registry.local/shop:1",
        "--strategy",
        "canary",
        "--dry-run",
        "client",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("PLANNED: shop registry.local/shop:1 -> production")
    assert "kind: Deployment" in result.stdout
    assert "image: registry.local/shop:1" in result.stdout


def test_failed_rollout_exits_1_and_rolls_back(cli, deploy_env, kube_api):
    assert (
        _deploy(
            cli, deploy_env, "--image", "registry.local/shop:1", "--strategy", "rolling"
        ).exit_code
        == 0
    )
    kube_api.fail_image("registry.local/shop:2")
    result = _deploy(
        cli,
        deploy_env,
        "--image",
        "registry.local/shop:2",
        "--strategy",
        "rolling",
        "--timeout",
        "30s",
    )
    assert result.exit_code == 1
    assert result.stdout.startswith("ROLLED_BACK")
    assert "ImagePullBackOff" in result.stdout


def test_canary_pause_then_promote_and_status(cli, deploy_env):
    _deploy(cli, deploy_env, "--image", "registry.local/shop:1", "--strategy", "rolling")
    paused = _deploy(
        cli,
        deploy_env,
        "--image",
        "registry.local/shop:2",
        "--strategy",
        "canary",
        "--steps",
        "34",
        "--pause",
        "0s",
        "--format",
        "json",
    )
    assert paused.exit_code == 0, paused.stderr
    assert paused.json()["status"] in ("succeeded", "paused")
    status = cli("status", "--repo", str(deploy_env.root), "-e", "production")
    assert status.exit_code == 0, status.stderr
    assert "shop: registry.local/shop:2  ready 3/3" in status.stdout
    nothing = cli("promote", "--repo", str(deploy_env.root), "-e", "production")
    assert nothing.exit_code == 2
    assert "nothing to promote or abort for shop in production" in nothing.stderr


def test_rollback_command(cli, deploy_env):
    for tag in ("1", "2"):
        _deploy(cli, deploy_env, "--image", f"registry.local/shop:{tag}", "--strategy", "rolling")
    result = cli("rollback", "--repo", str(deploy_env.root), "-e", "production")
    assert result.exit_code == 0, result.stderr
    assert "rolled back to registry.local/shop:1" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--image", "x:1", "--timeout", "soon"), "'soon' is not a duration"),
        (("--image", "x:1", "--strategy", "yolo"), "'yolo' is not one of"),
        (("--image", "x:1", "-e", "moon"), "unknown environment 'moon'"),
        (("--image", "x:1", "--steps", "10,abc"), "expected percentages like 10,25,50"),
    ],
)
def test_malformed_commands_exit_2_with_a_clear_message(cli, deploy_env, args, message):
    result = _deploy(cli, deploy_env, *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_the_kubeconfig_token_never_appears_in_output(cli, deploy_env, kube_api):
    kube_api.fail_image("registry.local/shop:9")
    outputs = []
    for args in (
        ("--image", "registry.local/shop:1", "--strategy", "rolling"),
        ("--image", "registry.local/shop:9", "--strategy", "rolling", "--format", "json"),
    ):
        result = _deploy(cli, deploy_env, *args)
        outputs.append(result.stdout + result.stderr)
    status = cli("status", "--repo", str(deploy_env.root), "-e", "production", "--format", "json")
    outputs.append(status.stdout + status.stderr)
    assert all("test-server-token" not in out for out in outputs)


def test_an_unreadable_kubeconfig_is_a_clear_error(cli, deploy_env, monkeypatch, tmp_path):
    bad = tmp_path / "bad-kubeconfig"
    bad.write_text("apiVersion: v1\nkind: Config\nusers: [{name: u, user: {token: hunter2}}]\n")
    monkeypatch.setenv("KUBECONFIG", str(bad))
    result = _deploy(cli, deploy_env, "--image", "registry.local/shop:1", "--strategy", "rolling")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot load the Kubernetes configuration")
    assert "hunter2" not in result.stderr


def test_a_killed_deploy_leaves_a_record_of_where_it_stopped_and_its_lock(
    cli, deploy_env, kube_api, tmp_path
):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from pipeline_bot import wiring
    from pipeline_bot.repo_config import load_repo_config
    from pipeline_bot.settings import get_settings

    kube_api.fail_image("registry.local/shop:hang", "Unready")
    script = Path(sys.executable).parent / "pipeline-bot"
    proc = subprocess.Popen(
        [
            str(script),
            "deploy",
            "--repo",
            str(deploy_env.root),
            "-e",
            "production",
            "--image",
            "registry.local/shop:hang",
            "--strategy",
            "rolling",
            "--timeout",
            "60s",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ),
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # wait for the watch to start, then kill it hard
        if "rollout:" in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()

    # the store the CLI used (the cluster's, by default), seen as another job would see it
    settings = get_settings()
    config = load_repo_config(None, repo_root=deploy_env.root)
    store = wiring.stores(settings, wiring.cluster(settings))(config)
    record = store.history("production", "shop")[0]
    assert (record.status, record.step) == ("running", "apply shop")
    lock = store.lock("production")
    assert lock is not None
    assert lock.owner == record.id
    status = cli("status", "--repo", str(deploy_env.root), "-e", "production")
    assert f"locked by {record.id} (deploy shop registry.local/shop:hang)" in status.stdout
    assert f"{record.id} running" in status.stdout


def test_own_metrics_are_written_as_a_textfile(cli, deploy_env, tmp_path, monkeypatch):
    from pipeline_bot.settings import get_settings

    target = tmp_path / "pipeline-bot.prom"
    monkeypatch.setenv("PIPELINE_BOT_METRICS_TEXTFILE", str(target))
    get_settings.cache_clear()
    assert (
        _deploy(
            cli, deploy_env, "--image", "registry.local/shop:1", "--strategy", "rolling"
        ).exit_code
        == 0
    )
    text = target.read_text()
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    deploys = [line for line in lines if line.startswith("pipeline_bot_deploys_total{")]
    assert any('result="succeeded"' in line and 'strategy="rolling"' in line for line in deploys)
    assert any(line.startswith("pipeline_bot_deploy_duration_seconds_count") for line in lines)


def _manifest(name: str, image: str = "registry.local/web:0") -> str:
    return (
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n"
        f"  replicas: 1\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n"
        f"    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n"
        f"        - {{name: {name}, image: '{image}'}}\n"
    )


def test_manifests_with_one_deployment_need_no_app_in_any_front_end(cli, deploy_env, namespace):
    deploy_env.commit(
        "config without services",
        {
            ".github/pipeline-bot.yml": (
                "version: 1\nenvironments:\n"
                f"  - {{name: production, order: 1, namespace: {namespace}, replicas: 1}}\n"
            ),
            "deploy/web.yaml": _manifest("web"),
        },
    )
    result = _deploy(
        cli,
        deploy_env,
        "--image",
        "registry.local/web:1",
        "--manifests",
        str(deploy_env.root / "deploy" / "web.yaml"),
        "--strategy",
        "rolling",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    assert result.json()["app"] == "web"


def test_two_deployments_and_no_app_is_a_clear_error(cli, deploy_env, namespace):
    deploy_env.commit(
        "two",
        {"deploy/a.yaml": _manifest("a"), "deploy/b.yaml": _manifest("b")},
    )
    result = _deploy(
        cli,
        deploy_env,
        "--image",
        "registry.local/web:1",
        "--manifests",
        str(deploy_env.root / "deploy"),
        "--dry-run",
        "client",
    )
    assert result.exit_code == 2
    assert "several Deployments (a, b)" in result.stderr


def test_a_services_own_manifests_are_what_is_deployed(cli, deploy_env, namespace, kube_api):
    extra = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shop-settings\ndata:\n  a: '1'\n"
    deploy_env.commit(
        "service manifests",
        {
            ".github/pipeline-bot.yml": (
                "version: 1\nenvironments:\n"
                f"  - {{name: production, order: 1, namespace: {namespace}, replicas: 1}}\n"
                "services:\n  - {name: shop, paths: ['src/**'], image: registry.local/shop,"
                " manifests: ['deploy/shop/*.yaml']}\n"
            ),
            "deploy/shop/deployment.yaml": _manifest("shop", "registry.local/shop:0"),
            "deploy/shop/settings.yaml": extra,
        },
    )
    result = _deploy(cli, deploy_env, "--image", "7", "--strategy", "rolling", "--format", "json")
    assert result.exit_code == 0, result.stderr
    kinds = sorted(o["kind"] for o in result.json()["objects"])
    assert kinds == ["ConfigMap", "Deployment"]  # the service's files, not rendered objects


def test_a_deploy_paused_in_one_job_is_promoted_from_another(
    cli, deploy_env, tmp_path, monkeypatch
):
    """Deploy state lives in the cluster (PIPELINE_BOT_STORE=cluster, the default): a second job,
    with nothing of the first's on its disk, finds the paused deploy and promotes it."""
    from pipeline_bot.settings import get_settings

    _deploy(cli, deploy_env, "--image", "registry.local/shop:1", "--strategy", "rolling")
    paused = _deploy(
        cli,
        deploy_env,
        "--image",
        "registry.local/shop:2",
        "--strategy",
        "blue-green",
        "--format",
        "json",
    )
    assert paused.exit_code == 0, paused.stderr
    assert paused.json()["status"] == "paused"
    # another job: another machine's disk, so another (empty) SQL database and cache
    monkeypatch.setenv("PIPELINE_BOT_DATABASE_URL", f"sqlite:///{tmp_path / 'other-job.db'}")
    monkeypatch.setenv("PIPELINE_BOT_CACHE_DIR", str(tmp_path / "other-cache"))
    get_settings.cache_clear()
    promoted = cli(
        "promote", "--repo", str(deploy_env.root), "-e", "production", "--format", "json"
    )
    assert promoted.exit_code == 0, promoted.stderr
    assert promoted.json()["status"] == "succeeded"
    status = cli("status", "--repo", str(deploy_env.root), "-e", "production")
    assert "registry.local/shop:2" in status.stdout


def test_abort_that_succeeds_exits_0_and_a_deploy_over_a_paused_one_exits_5(cli, deploy_env):
    """Issue 16, points 6 and 7: abort exited 1 when it did what was asked, and a deploy over a
    paused blue-green replaced it silently."""
    _deploy(cli, deploy_env, "--image", "registry.local/shop:1", "--strategy", "rolling")
    paused = _deploy(
        cli, deploy_env, "--image", "registry.local/shop:2", "--strategy", "blue-green"
    )
    assert paused.exit_code == 0, paused.stderr
    over = _deploy(cli, deploy_env, "--image", "registry.local/shop:3", "--strategy", "rolling")
    assert over.exit_code == 5
    assert "paused deploy" in over.stderr
    assert "pipeline-bot abort -e production --app shop" in over.stderr
    aborted = cli("abort", "--repo", str(deploy_env.root), "-e", "production")
    assert aborted.exit_code == 0, (aborted.stdout, aborted.stderr)
    assert aborted.stdout.startswith("ROLLED_BACK")
    again = _deploy(cli, deploy_env, "--image", "registry.local/shop:3", "--strategy", "rolling")
    assert again.exit_code == 0, again.stderr
