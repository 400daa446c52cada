"""The Kubernetes API test server serves Leases (coordination.k8s.io/v1) and Secrets as a real API
server does where locks and deploy records rely on it: optimistic concurrency by resourceVersion,
delete preconditions, MicroTime decoding, validation. Checked with the official `kubernetes`
client and the real kubectl, not with anything of ours."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.conftest import kubectl_binary

WHEN = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@pytest.fixture
def api(kube_api):
    cfg = client.Configuration()
    cfg.host = kube_api.url
    with client.ApiClient(cfg) as api_client:
        yield client.CoordinationV1Api(api_client), client.CoreV1Api(api_client)


@pytest.fixture
def kubectl(kube_api, namespace, tmp_path):
    config = kube_api.kubeconfig(tmp_path / "kubeconfig", namespace)

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [kubectl_binary(), "--kubeconfig", str(config), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    return run


def _lease(name: str, holder: str, seconds: int = 15) -> client.V1Lease:
    return client.V1Lease(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1LeaseSpec(
            holder_identity=holder,
            lease_duration_seconds=seconds,
            acquire_time=WHEN,
            renew_time=WHEN,
            lease_transitions=0,
        ),
    )


def _status(exc: ApiException) -> dict:
    return json.loads(exc.body)


def test_a_lease_is_created_read_and_renewed_with_its_resource_version(api, namespace):
    leases, _ = api
    created = leases.create_namespaced_lease(namespace, _lease("lock", "job-1"))
    assert created.spec.holder_identity == "job-1"
    assert created.spec.renew_time == WHEN  # MicroTime kept to the microsecond
    assert created.metadata.uid
    assert created.metadata.resource_version
    created.spec.renew_time = datetime(2026, 1, 2, 3, 4, 10, 5, tzinfo=UTC)
    renewed = leases.replace_namespaced_lease("lock", namespace, created)
    assert int(renewed.metadata.resource_version) > int(created.metadata.resource_version)
    assert leases.read_namespaced_lease("lock", namespace).spec.renew_time == (
        created.spec.renew_time
    )
    assert [item.metadata.name for item in leases.list_namespaced_lease(namespace).items] == [
        "lock"
    ]


def test_a_second_create_and_a_stale_update_are_conflicts(api, namespace):
    leases, _ = api
    first = leases.create_namespaced_lease(namespace, _lease("lock", "job-1"))
    with pytest.raises(ApiException) as exists:
        leases.create_namespaced_lease(namespace, _lease("lock", "job-2"))
    assert (exists.value.status, _status(exists.value)["reason"]) == (409, "AlreadyExists")
    assert _status(exists.value)["message"] == ('leases.coordination.k8s.io "lock" already exists')
    winner = leases.read_namespaced_lease("lock", namespace)
    winner.spec.holder_identity = "job-2"
    leases.replace_namespaced_lease("lock", namespace, winner)
    first.spec.holder_identity = "job-3"  # written against the version before job-2's
    with pytest.raises(ApiException) as stale:
        leases.replace_namespaced_lease("lock", namespace, first)
    assert (stale.value.status, _status(stale.value)["reason"]) == (409, "Conflict")
    assert _status(stale.value)["message"].startswith(
        'Operation cannot be fulfilled on leases.coordination.k8s.io "lock": '
        "the object has been modified"
    )
    assert leases.read_namespaced_lease("lock", namespace).spec.holder_identity == "job-2"


def test_delete_honours_resource_version_preconditions(api, namespace):
    leases, _ = api
    created = leases.create_namespaced_lease(namespace, _lease("lock", "job-1"))
    stale = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version=str(1)))
    with pytest.raises(ApiException) as refused:
        leases.delete_namespaced_lease("lock", namespace, body=stale)
    assert refused.value.status == 409
    assert (
        "Precondition failed: ResourceVersion in precondition: 1"
        in (_status(refused.value)["message"])
    )
    current = client.V1DeleteOptions(
        preconditions=client.V1Preconditions(resource_version=created.metadata.resource_version)
    )
    leases.delete_namespaced_lease("lock", namespace, body=current)
    with pytest.raises(ApiException) as gone:
        leases.read_namespaced_lease("lock", namespace)
    assert gone.value.status == 404


def test_invalid_leases_are_refused_as_the_api_server_refuses_them(api, namespace, kube_api):
    leases, _ = api
    with pytest.raises(ApiException) as invalid:
        leases.create_namespaced_lease(namespace, _lease("lock", "job-1", seconds=0))
    assert invalid.value.status == 422
    assert (
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"
        in (_status(invalid.value)["message"])
    )
    # a time without microseconds is not a MicroTime: the body cannot be decoded (400)
    import urllib.request

    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "lock"},
        "spec": {"holderIdentity": "x", "renewTime": "2026-01-02T03:04:05Z"},
    }
    req = urllib.request.Request(
        f"{kube_api.url}/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(req, timeout=5)
    assert bad.value.code == 400
    assert "cannot be handled as a Lease" in json.loads(bad.value.read())["message"]


def test_kubectl_lists_shows_and_deletes_leases(kubectl):
    applied = kubectl(
        "apply",
        "--validate=false",
        "-f",
        "-",
        stdin=(
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: lock}\n"
            "spec: {holderIdentity: job-7, leaseDurationSeconds: 30, "
            "renewTime: '2026-01-02T03:04:05.000001Z'}\n"
        ),
    )
    assert applied.returncode == 0, applied.stderr
    listed = kubectl("get", "leases")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split("\n")[1].split()[:2] == ["lock", "job-7"]
    shown = json.loads(kubectl("get", "lease", "lock", "-o", "json").stdout)
    assert shown["spec"]["leaseDurationSeconds"] == 30
    deleted = kubectl("delete", "lease", "lock")
    assert deleted.returncode == 0, deleted.stderr
    assert 'lease.coordination.k8s.io "lock" deleted' in deleted.stdout


def test_secrets_fold_string_data_and_are_checked_like_a_real_server(api, namespace):
    _, core = api
    created = core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="rec.1", labels={"app": "shop"}),
            type="example.com/record",
            string_data={"record": '{"a": 1}'},
        ),
    )
    assert created.data == {"record": "eyJhIjogMX0="}
    assert created.string_data is None
    created.type = "Opaque"
    with pytest.raises(ApiException) as immutable:
        core.replace_namespaced_secret("rec.1", namespace, created)
    assert "type: Invalid value" in _status(immutable.value)["message"]
    assert "field is immutable" in _status(immutable.value)["message"]
    with pytest.raises(ApiException) as too_big:
        core.create_namespaced_secret(
            namespace,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name="big"), string_data={"x": "a" * ((1 << 20) + 1)}
            ),
        )
    assert too_big.value.status == 422
    assert "Too long: must have at most 1048576 bytes" in _status(too_big.value)["message"]
    with pytest.raises(ApiException) as bad_label:
        core.create_namespaced_secret(
            namespace,
            client.V1Secret(metadata=client.V1ObjectMeta(name="x", labels={"env": "Prod!"})),
        )
    assert bad_label.value.status == 422
    assert 'metadata.labels: Invalid value: "Prod!"' in _status(bad_label.value)["message"]
