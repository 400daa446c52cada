"""`pipeline-bot plan` and `deploy --plan` as a user runs them: five services with dependencies on
the Kubernetes API test server, one made to fail (its dependents skipped, the others done, the
records saying so)."""

from __future__ import annotations

import json

import pytest

from pipeline_bot.tools import ToolContext, build_registry

WORKER_MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: worker, labels: {app: worker, tier: background}}
spec:
  replicas: 1
  selector: {matchLabels: {app: worker}}
  template:
    metadata: {labels: {app: worker}}
    spec:
      containers: [{name: worker, image: registry.local/worker:0}]
"""


def _config(namespace: str) -> str:
    return (
        "version: 1\nenvironments:\n"
        f"  - {{name: staging, order: 1, namespace: {namespace}, replicas: 1}}\n"
        "services:\n"
        "  - {name: db, paths: ['db/**'], image: registry.local/db}\n"
        "  - {name: cache, paths: ['cache/**'], image: registry.local/cache}\n"
        "  - {name: api, paths: ['api/**'], image: registry.local/api, depends_on: [db, cache]}\n"
        "  - name: worker\n"
        "    paths: ['worker/**']\n"
        "    image: registry.local/worker\n"
        "    manifests: [deploy/worker.yaml]\n"
        "    depends_on: [db]\n"
        "  - {name: web, paths: ['web/**'], image: registry.local/web, depends_on: [api]}\n"
    )


@pytest.fixture
def five(kube_api, namespace, tmp_path, monkeypatch, base_repo):  # type: ignore[no-untyped-def]
    """base_repo with five services (db, cache; api after both; worker after db; web after api)
    deploying to staging in a fresh namespace of the Kubernetes API test server."""
    monkeypatch.setenv("KUBECONFIG", str(kube_api.kubeconfig(tmp_path / "kubeconfig", namespace)))
    monkeypatch.setenv("PIPELINE_BOT_DATABASE_URL", f"sqlite:///{tmp_path / 'pb.db'}")
    base_repo.commit(
        "five services",
        {".github/pipeline-bot.yml": _config(namespace), "deploy/worker.yaml": WORKER_MANIFEST},
    )
    return base_repo


def test_plan_prints_stages_as_text_json_and_mermaid(cli, five):
    root = str(five.root)
    text = cli("plan", "--repo", root, "-e", "staging")
    assert text.exit_code == 0, text.stderr
    assert "5 service(s) in 3 stage(s)" in text.stdout
    assert "api  image registry.local/api  (after db, cache)" in text.stdout
    data = cli("plan", "--repo", root, "--format", "json").json()
    assert data["stages"] == [["db", "cache"], ["api", "worker"], ["web"]]
    assert data["environment"] == "staging"  # the last in promotion order
    graph = cli("plan", "--repo", root, "--format", "mermaid").stdout
    assert graph.startswith("graph LR\n")
    assert "s0 --> s3" in graph


def test_a_cycle_is_a_config_error_naming_its_line(cli, tmp_path, repo):
    repo.commit(
        "cycle",
        {
            ".github/pipeline-bot.yml": "version: 1\nservices:\n"
            "  - {name: a, paths: [a/], depends_on: [b]}\n"
            "  - {name: b, paths: [b/], depends_on: [a]}\n"
        },
    )
    result = cli("plan", "--repo", str(repo.root))
    assert result.exit_code == 2
    assert "pipeline-bot.yml:4: services[1].depends_on[0]" in result.stderr
    assert "cycle: a -> b -> a" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_failing_service_stops_its_dependents_and_keeps_the_others(
    cli, five, kube_api, namespace
):
    kube_api.fail_image("registry.local/cache:2")
    result = cli(
        "deploy",
        "--plan",
        "--repo",
        str(five.root),
        "-e",
        "staging",
        "--image",
        "2",
        "--strategy",
        "rolling",
        "--timeout",
        "30s",
        "--format",
        "json",
    )
    assert result.exit_code == 1, result.stderr
    data = result.json()
    by = {s["name"]: s for s in data["services"]}
    assert data["status"] == "failed"
    assert {n: s["status"] for n, s in by.items()} == {
        "db": "succeeded",
        "cache": "rolled_back",  # its own deploy rolled it back (the engine's auto_rollback)
        "api": "skipped",
        "worker": "succeeded",
        "web": "skipped",
    }
    assert "ImagePullBackOff" in by["cache"]["message"]
    assert by["api"]["blocked_by"] == "cache"
    assert by["web"]["blocked_by"] == "cache"
    assert by["api"]["deploy_id"] is None
    assert by["web"]["deploy_id"] is None
    assert by["worker"]["image"] == "registry.local/worker:2"
    assert data["message"] == "5 service(s): 2 succeeded, 1 rolled back, 2 skipped"

    record = _record(cli, five, "cache")
    assert record["status"] == "rolled_back"
    assert record["state"]["plan"]["id"] == data["plan_id"]
    assert record["state"]["plan"]["stopped"] == ["api", "web"]
    assert record["state"]["plan"]["services"]["worker"] == "succeeded"
    worker = _status(cli, five, "worker")
    assert worker["workloads"][0]["images"] == ["registry.local/worker:2"]
    # worker deployed from its own manifests (their labels kept), the others rendered
    labels = _deployment(kube_api, namespace, "worker")["metadata"]["labels"]
    assert labels["tier"] == "background"
    assert "tier" not in _deployment(kube_api, namespace, "db")["metadata"].get("labels", {})
    assert worker["lock"] is None  # the plan released the environment's lock
    assert _status(cli, five, "api")["history"] == []

    # status --plan: every service as the plan left it, skipped ones too
    where = ("status", "--plan", "--repo", str(five.root), "-e", "staging")
    status = cli(*where, "--format", "json")
    assert status.exit_code == 0, status.stderr
    shown = status.json()
    assert shown["plan_id"] == data["plan_id"]
    assert {o["name"]: o["status"] for o in shown["services"]} == {
        n: s["status"] for n, s in by.items()
    }
    assert {o["name"]: o["deploy_id"] for o in shown["services"]}["worker"] == by["worker"][
        "deploy_id"
    ]
    text = cli(*where).stdout
    assert "  stage 2 api                  skipped" in text
    assert '  s1["cache (rolled_back)"]' in text


def test_deploy_plan_through_the_registry_renders_every_service_in_a_client_dry_run(five):
    result = build_registry().call(
        "deploy_plan",
        {
            "environment": "staging",
            "image_tag": "3",
            "images": {"web": "registry.local/web-next:7"},
            "strategy": "rolling",
            "repository": str(five.root),
            "dry_run": "client",
        },
        ToolContext(),  # no cluster and no store: a client dry run needs neither
    )
    assert result.status == "planned"
    images = {s.name: s.image for s in result.services}
    assert images["db"] == "registry.local/db:3"
    assert images["web"] == "registry.local/web-next:7"


def _deployment(kube_api, namespace, name):  # type: ignore[no-untyped-def]
    import urllib.request

    url = f"{kube_api.url}/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def _status(cli, repo, app):  # type: ignore[no-untyped-def]
    out = cli("status", "--repo", str(repo.root), "-e", "staging", "--app", app, "--format", "json")
    assert out.exit_code == 0, out.stderr
    return json.loads(out.stdout)


def _record(cli, repo, app):  # type: ignore[no-untyped-def]
    history = _status(cli, repo, app)["history"]
    assert history, f"no deploy record of {app}"
    return history[0]


def test_an_environment_whose_plan_failure_is_roll_back_rolls_back_what_the_plan_deployed(
    cli, five, kube_api, namespace
):
    config = _config(namespace).replace("replicas: 1}", "replicas: 1, plan_failure: roll_back}")
    five.commit("plan failures roll back", {".github/pipeline-bot.yml": config})
    deploy = ("deploy", "--plan", "--repo", str(five.root), "-e", "staging", "--strategy")
    first = cli(*deploy, "rolling", "--timeout", "30s", "--image", "1", "--format", "json")
    assert first.exit_code == 0, first.stderr
    kube_api.fail_image("registry.local/cache:2")
    result = cli(*deploy, "rolling", "--timeout", "30s", "--image", "2", "--format", "json")
    assert result.exit_code == 1, result.stderr
    data = result.json()
    by = {s["name"]: s for s in data["services"]}
    assert {n: s["status"] for n, s in by.items()} == {
        "db": "rolled_back",  # deployed by this plan, then rolled back by the policy
        "cache": "rolled_back",  # its own failure
        "api": "skipped",
        "worker": "rolled_back",
        "web": "skipped",
    }
    assert by["db"]["message"] == (
        "rolled back: cache failed and staging's plan_failure is roll_back"
    )
    assert data["message"].endswith("cache failed and staging's plan_failure is roll_back")
    for app in ("db", "worker"):  # what ran before the plan runs again
        assert _status(cli, five, app)["workloads"][0]["images"] == [f"registry.local/{app}:1"]
    # status --plan says the same as the result
    status = cli("status", "--plan", "--repo", str(five.root), "-e", "staging", "--format", "json")
    shown = {o["name"]: o["status"] for o in status.json()["services"]}
    assert shown["db"] == shown["worker"] == "rolled_back"
