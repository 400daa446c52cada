"""deploy/helm/pipeline-bot: rendered (with `helm template` where a helm binary is installed, else
with tests/helm_render.py), every built-in object checked against Kubernetes' own schemas
(kubernetes-validate, strict), the App's safety settings asserted, and the objects the Kubernetes
API test server serves applied to it with kubectl and rolled out there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import kubectl_binary
from tests.helm_render import Renderer, TemplateError

CHART = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "pipeline-bot"
KUBERNETES = "1.33.0"  # the schemas the objects are checked against
VALUES: dict[str, Any] = {"github": {"appId": "12345"}}
EVERYTHING: dict[str, Any] = {
    "github": {"appId": "12345", "apiUrl": "https://ghe.example.org/api/v3"},
    "apiToken": {"existingSecret": "pipeline-bot-api"},
    "autoscaling": {"enabled": True},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "extraEnv": [{"name": "PIPELINE_BOT_LOG_LEVEL", "value": "info"}],
}


def _helm() -> str | None:
    """helm: PIPELINE_BOT_HELM (scripts/test builds it: scripts/helm-binary), else one in the
    cache scripts/helm-binary fills, else one on PATH; None when there is none (then the chart is
    rendered by tests/helm_render.py, and CI fails instead)."""
    given = os.environ.get("PIPELINE_BOT_HELM")
    if given:
        return given
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pipeline-bot"
    built = sorted((cache / "helm").glob("v*/helm"), reverse=True)
    if built:
        return str(built[0])
    found = shutil.which("helm")
    if found is None and os.environ.get("CI") == "true":
        pytest.fail("no helm binary: scripts/helm-binary builds one (scripts/test does)")
    return found


def _render(values: dict[str, Any]) -> list[dict[str, Any]]:
    helm = _helm()
    if helm is None:
        return Renderer(CHART).objects(values)
    done = subprocess.run(
        [helm, "template", "bot", str(CHART), "--values", "-"],
        input=json.dumps(values),
        capture_output=True,
        text=True,
        check=True,
    )
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


@pytest.mark.parametrize("values", [VALUES, EVERYTHING], ids=["defaults", "every-option"])
def test_every_built_in_object_is_valid_for_kubernetes(values):
    import kubernetes_validate

    objects = _render(values)
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD of the Prometheus Operator: no schema of Kubernetes' own
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    kinds = sorted(o["kind"] for o in objects)
    expected = ["Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"]
    if values is EVERYTHING:
        expected += ["HorizontalPodAutoscaler", "ServiceMonitor"]
    assert kinds == sorted(expected)


def test_the_app_runs_non_root_on_a_read_only_root_with_health_probes_and_secret_references():
    objects = _by_kind(_render(EVERYTHING))
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    env = {e["name"]: e for e in container["env"]}
    # secrets only by reference: the key as a file from the Secret, the others from its keys
    assert env["GITHUB_WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == (
        "pipeline-bot-github"
    )
    assert env["PIPELINE_BOT_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "url"
    assert env["PIPELINE_BOT_API_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == (
        "pipeline-bot-api"
    )
    key_path = env["GITHUB_APP_PRIVATE_KEY_PATH"]["value"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert key_path.startswith(mounts["github"]["mountPath"] + "/")
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["github"]["secret"]["secretName"] == "pipeline-bot-github"
    assert {"cache", "tmp"} <= set(mounts)  # writable places on a read-only root
    assert env["PIPELINE_BOT_CACHE_DIR"]["value"] == mounts["cache"]["mountPath"]
    assert "value" not in env["GITHUB_WEBHOOK_SECRET"]
    assert env["PIPELINE_BOT_LOG_LEVEL"]["value"] == "info"


def test_the_service_budget_autoscaler_and_monitor_all_point_at_the_apps_pods():
    objects = _by_kind(_render(EVERYTHING))
    deployment = objects["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "replicas" not in deployment["spec"]  # the autoscaler decides
    assert objects["Service"]["spec"]["selector"].items() <= labels.items()
    assert objects["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    pdb = objects["PodDisruptionBudget"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["minAvailable"] == 1
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    monitor = objects["ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0] == {
        "port": "http",
        "path": "/metrics",
        "interval": "30s",
        "scrapeTimeout": "10s",
    }
    service_labels = objects["Service"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    defaults = _by_kind(_render(VALUES))
    assert defaults["Deployment"]["spec"]["replicas"] == 2


def test_helm_lint_strict_passes():
    helm = _helm()
    if helm is None:
        pytest.skip("no helm binary: scripts/helm-binary builds one (needs Go)")
    for values in (VALUES, EVERYTHING):
        done = subprocess.run(
            [helm, "lint", "--strict", str(CHART), "--values", "-"],
            input=json.dumps(values),
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


def test_the_apps_id_is_required():
    if _helm() is None:
        with pytest.raises(TemplateError, match=r"github\.appId is required"):
            Renderer(CHART).objects({})
    else:
        with pytest.raises(subprocess.CalledProcessError):
            _render({})


@pytest.mark.integration
def test_the_chart_applies_and_rolls_out_on_the_kubernetes_api_test_server(
    kube_api, namespace, tmp_path
):
    served = {"Deployment", "Service", "ServiceAccount"}  # what the test server serves
    objects = [o for o in _render(VALUES) if o["kind"] in served]
    manifest = tmp_path / "chart.yaml"
    manifest.write_text(yaml.safe_dump_all(objects))
    kubeconfig = kube_api.kubeconfig(tmp_path / "kubeconfig", namespace)
    kubectl = kubectl_binary()

    def run(*args: str) -> str:
        done = subprocess.run(
            [kubectl, "--kubeconfig", str(kubeconfig), "-n", namespace, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    # the test server publishes no OpenAPI description for kubectl's own check; the objects
    # were checked against Kubernetes' schemas above
    applied = run("apply", "--validate=false", "-f", str(manifest))
    assert applied.count("created") == len(objects)
    run("rollout", "status", "deployment/bot-pipeline-bot", "--timeout=90s")
    deployment = json.loads(run("get", "deployment", "bot-pipeline-bot", "-o", "json"))
    assert deployment["status"]["readyReplicas"] == 2
    again = run("apply", "--validate=false", "-f", str(manifest))  # applied twice: nothing changes
    assert "created" not in again
