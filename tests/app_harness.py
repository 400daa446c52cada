"""Shared set-up for the App's tests: a signing key, signed deliveries, recorded payloads with
their ids set to the test's, a config for the test repository, and the fixtures `gh` (GitHub's
API double), `app` (the App behind a TestClient) and `kube` (a namespace on the Kubernetes API
test server), which a test module imports for pytest to find."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import uuid
from typing import Any

import pytest
import respx
from fastapi.testclient import TestClient

from pipeline_bot.app.context import STATUS_MARKER, AppServices
from pipeline_bot.app.server import create_app
from pipeline_bot.integrations.deliveries import DeliveryStore
from pipeline_bot.integrations.github_app import GitHubApp
from pipeline_bot.integrations.kubernetes import KubernetesCluster
from pipeline_bot.integrations.store import SqlStore
from tests.conftest import github_examples, webhook_example
from tests.fakes.github_api import GitHubApiDouble, PullRequest

SECRET = b"webhook-test-secret"
API_TOKEN = "api-test-token-0f3b9c2d"  # 16+ characters: serve refuses shorter ones
HEAD = "a" * 40
BASE = "b" * 40


@functools.cache
def private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def signed(
    event: str, payload: dict[str, Any] | bytes, delivery: str | None = None, secret: bytes = SECRET
) -> tuple[bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest(),
    }
    return body, headers


def config(namespace: str) -> str:
    return (
        "version: 1\n"
        "environments:\n"
        f"  - {{name: staging, order: 1, namespace: {namespace}, replicas: 1, "
        "strategy: rolling, auto_deploy: [master]}\n"
        f"  - {{name: production, order: 2, namespace: {namespace}, replicas: 1, "
        "required_permission: maintain, requires: [staging]}\n"
        "services:\n"
        "  - {name: shop, paths: ['src/**'], image: registry.local/shop}\n"
    )


def pull_request_payload(example: dict[str, Any], number: int = 7) -> dict[str, Any]:
    pr = example["pull_request"]
    pr["number"] = number
    pr["head"]["sha"], pr["base"]["sha"] = HEAD, BASE
    pr["changed_files"] = 1
    example["number"] = number
    return example


def comment_payload(
    example: dict[str, Any], body: str, *, login: str, number: int = 7, comment_id: int = 501
) -> dict[str, Any]:
    """A recorded issue_comment, made a comment on PR `number` (GitHub marks those with
    issue.pull_request) by `login`."""
    example["issue"]["number"] = number
    example["issue"]["pull_request"] = {
        "url": f"https://api.github.com/repos/Codertocat/Hello-World/pulls/{number}"
    }
    example["comment"].update(id=comment_id, body=body)
    example["comment"]["user"].update(login=login, type="User")
    example["sender"]["login"] = login
    return example


def migration_files(count: int) -> list[dict[str, Any]]:
    """Compare API file entries (GitHub's shape) that each raise a finding."""
    return [
        {
            "sha": f"{i:040x}",
            "filename": f"db/migrations/{i:04d}_drop.sql",
            "status": "added",
            "additions": 1,
            "deletions": 0,
            "changes": 1,
            "patch": "@@ -0,0 +1 @@\n+ALTER TABLE cart DROP COLUMN note;",
        }
        for i in range(count)
    ]


# ---------------------------------------------------------------------- fixtures

API = "https://ghe.test/api/v3"


class Harness:
    def __init__(self, client: TestClient, services: AppServices, gh: GitHubApiDouble) -> None:
        self.client, self.services, self.gh = client, services, gh

    def deliver(self, event: str, payload: dict[str, Any], delivery: str | None = None) -> Any:
        body, headers = signed(event, payload, delivery)
        return self.client.post("/webhooks", content=body, headers=headers)

    def work(self) -> None:
        worker = self.client.app.state.worker  # type: ignore[attr-defined]
        while worker.run_once():
            pass

    def comment(self, body: str, login: str, comment_id: int = 501) -> Any:
        payload = comment_payload(
            webhook_example("issue_comment", action="created"),
            body,
            login=login,
            comment_id=comment_id,
        )
        response = self.deliver("issue_comment", payload)
        self.work()
        return response

    def status_comment(self) -> str:
        bodies = [b for b in self.gh.comments.values() if STATUS_MARKER in b]
        assert len(bodies) == 1, f"expected one status comment, found {len(bodies)}"
        return bodies[0]


@pytest.fixture(name="gh")
def gh_fixture() -> GitHubApiDouble:
    return GitHubApiDouble(github_examples())


@pytest.fixture(name="app")
def app_fixture(tmp_path, gh, request) -> Any:
    cluster = None
    if "kube" in request.fixturenames:
        kube = request.getfixturevalue("kube")
        cluster = lambda env: KubernetesCluster.connect(kubeconfig=str(kube))  # noqa: E731
    url = f"sqlite:///{tmp_path / 'app.db'}"
    services = AppServices(
        deliveries=DeliveryStore(url),
        github=GitHubApp("1", private_key(), api_url=API),
        store=SqlStore(url),
        cluster=cluster,
    )
    application = create_app(services, SECRET, api_token=API_TOKEN, mcp=False, start_worker=False)
    with respx.mock(assert_all_called=False) as mock:
        mock.route(url__startswith=API).mock(side_effect=gh.respx_side_effect)
        with TestClient(application) as client:
            yield Harness(client, services, gh)


@pytest.fixture(name="kube")
def kube_fixture(kube_api, namespace, tmp_path, gh):
    gh.config = config(namespace)
    gh.permissions.update(writer="write", reader="read", admin="admin")
    gh.pulls[7] = PullRequest(7, HEAD, BASE)
    return kube_api.kubeconfig(tmp_path / "kubeconfig", namespace)
