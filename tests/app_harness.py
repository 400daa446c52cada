"""Shared set-up for the App's tests: a signing key, signed deliveries, recorded payloads with
their ids set to the test's, and a config for the test repository."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import uuid
from typing import Any

SECRET = b"webhook-test-secret"
API_TOKEN = "api-test-token"
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
