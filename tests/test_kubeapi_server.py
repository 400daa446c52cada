"""The Kubernetes API test server is faithful where the deploy engine relies on it: checked with
the real kubectl and the real `kubernetes` client, not with anything of ours."""

from __future__ import annotations

import subprocess

import pytest
from kubernetes import client, watch

from tests.conftest import kubectl_binary

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  progressDeadlineSeconds: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.25
"""


@pytest.fixture
def kubectl(kube_api, namespace, tmp_path):
    config = kube_api.kubeconfig(tmp_path / "kubeconfig", namespace)
    binary = kubectl_binary()

    def run(
        *args: str, stdin: str | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binary, "--kubeconfig", str(config), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


@pytest.fixture
def apps(kube_api):
    cfg = client.Configuration()
    cfg.host = kube_api.url
    with client.ApiClient(cfg) as api:
        yield client.AppsV1Api(api), client.CoreV1Api(api)


def test_kubectl_apply_and_rollout_status_succeed(kubectl):
    applied = kubectl("apply", "--validate=false", "-f", "-", stdin=DEPLOYMENT)
    assert applied.returncode == 0, applied.stderr
    status = kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    assert status.returncode == 0, status.stderr
    assert 'deployment "web" successfully rolled out' in status.stdout
    table = kubectl("get", "deployment", "web")
    assert table.stdout.split("\n")[1].split()[:4] == ["web", "3/3", "3", "3"]


def test_kubectl_rollout_status_fails_on_an_image_that_cannot_be_pulled(kube_api, kubectl):
    kubectl("apply", "--validate=false", "-f", "-", stdin=DEPLOYMENT)
    assert kubectl("rollout", "status", "deployment/web", "--timeout=20s").returncode == 0
    kube_api.fail_image("nginx:broken")
    kubectl("set", "image", "deployment/web", "web=nginx:broken")
    status = kubectl("rollout", "status", "deployment/web", "--timeout=20s")
    assert status.returncode == 1
    assert 'deployment "web" exceeded its progress deadline' in status.stderr
    pods = kubectl("get", "pods")
    assert "ImagePullBackOff" in pods.stdout
    undo = kubectl("rollout", "undo", "deployment/web")
    assert undo.returncode == 0, undo.stderr
    assert kubectl("rollout", "status", "deployment/web", "--timeout=20s").returncode == 0


def test_kubectl_logs_shows_a_crashing_containers_last_lines(kube_api, kubectl):
    kube_api.fail_image("nginx:crash", "CrashLoopBackOff")
    kubectl(
        "apply",
        "--validate=false",
        "-f",
        "-",
        stdin=DEPLOYMENT.replace("nginx:1.25", "nginx:crash"),
    )
    kubectl("rollout", "status", "deployment/web", "--timeout=5s")
    pod = kubectl("get", "pods", "-o", "name").stdout.split()[0]
    logs = kubectl("logs", pod, "--tail=2")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.splitlines()[-1].startswith("ConnectionRefusedError")
    assert len(logs.stdout.splitlines()) == 2


def test_client_sees_status_errors_as_kubernetes_sends_them(apps, namespace):
    apps_v1, core = apps
    with pytest.raises(client.ApiException) as missing:
        apps_v1.read_namespaced_deployment("nope", namespace)
    assert missing.value.status == 404
    assert '"reason": "NotFound"' in missing.value.body
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "c"}})
    with pytest.raises(client.ApiException) as exists:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "c"}})
    assert exists.value.status == 409
    with pytest.raises(client.ApiException) as invalid:
        apps_v1.create_namespaced_deployment(
            namespace,
            {
                "metadata": {"name": "bad"},
                "spec": {
                    "selector": {"matchLabels": {"app": "x"}},
                    "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"containers": []}},
                },
            },
        )
    assert invalid.value.status == 422
    assert "selector` does not match template `labels`" in invalid.value.body


def test_server_side_apply_watch_and_generations(apps, namespace):
    apps_v1, _ = apps
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "api"}},
            "template": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {"containers": [{"name": "api", "image": "api:1"}]},
            },
        },
    }
    first = apps_v1.patch_namespaced_deployment(
        "api",
        namespace,
        body,
        field_manager="test",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    assert first.metadata.generation == 1
    assert first.metadata.uid
    _wait_rolled_out(apps_v1, namespace, generation=1)
    body["spec"]["template"]["spec"]["containers"][0]["image"] = "api:2"
    second = apps_v1.patch_namespaced_deployment(
        "api",
        namespace,
        body,
        field_manager="test",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    assert second.metadata.generation == 2
    _wait_rolled_out(apps_v1, namespace, generation=2)
    sets = apps_v1.list_namespaced_replica_set(namespace).items
    revisions = sorted(rs.metadata.annotations["deployment.kubernetes.io/revision"] for rs in sets)
    assert revisions == ["1", "2"]


def _wait_rolled_out(apps_v1, namespace, *, generation):
    w = watch.Watch()
    for event in w.stream(apps_v1.list_namespaced_deployment, namespace, timeout_seconds=10):
        status = event["object"].status
        if (
            status is not None
            and status.observed_generation == generation
            and status.updated_replicas == 2
            and status.available_replicas == 2
            and (status.replicas or 0) == 2
        ):
            w.stop()
            return
    pytest.fail("the rollout did not finish within the watch")
