"""Deploy records kept in the cluster, one Secret per record in the environment's namespace (as
Helm keeps release history): labelled by app, environment and status, the typed record as JSON.

A Secret rather than a ConfigMap because a record holds pod templates, whose environment values
may be sensitive; RBAC on Secrets is usually the tighter one. Writes are optimistic: a record is
replaced only at the resourceVersion this store last read or wrote, so a writer working from a
stale copy is refused instead of silently undoing someone else's change. The newest `keep`
records of an app are kept, and always the ones a later command needs (running, paused, and the
two latest successful ones, for a rollback).
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from pipeline_bot.deploy.names import label_value, name_part
from pipeline_bot.errors import DeployError
from pipeline_bot.integrations.ports import ClusterPort
from pipeline_bot.models import DeployRecord

Obj = dict[str, Any]
Locate = Callable[[str], tuple[ClusterPort, str]]
TYPE = "pipeline-bot.dev/deploy-record.v1"
KEY = "record"
RECORD = "pipeline-bot.dev/record"
DEPLOY_ID = "pipeline-bot.dev/deploy-id"
ENVIRONMENT = "pipeline-bot.dev/environment"
APP = "pipeline-bot.dev/app"
STATUS = "pipeline-bot.dev/status"
MANAGED = {"app.kubernetes.io/managed-by": "pipeline-bot"}
KEEP_ALWAYS = ("running", "paused")


def record_name(deploy_id: str) -> str:
    return f"pipeline-bot.deploy.{name_part(deploy_id)}"


class ClusterRecords:
    """save / get / history / last_successful of StorePort, over Secrets."""

    def __init__(
        self, locate: Locate, *, keep: int = 20, environments: Callable[[], list[str]]
    ) -> None:
        self.locate, self.keep, self.environments = locate, max(keep, 1), environments
        self._seen: dict[str, tuple[str, str]] = {}  # id -> (environment, resourceVersion)
        self._guard = threading.Lock()

    def save(self, record: DeployRecord) -> None:
        cluster, namespace = self.locate(record.environment)
        body = _secret(record, namespace)
        with self._guard:
            seen = self._seen.get(record.id)
        if seen is None:
            cluster.ensure_namespace(namespace)
            written = cluster.create(body)
            if written is None:
                # exists: someone else's, or ours, written by an attempt whose answer was lost
                written = cluster.get("v1", "Secret", namespace, record_name(record.id))
                if written is None or _decode(written) != record:
                    raise _conflict(record, "a record with this id exists already")
            self._remember(record.environment, written)
            self._prune(cluster, namespace, record)
            return
        body["metadata"]["resourceVersion"] = seen[1]
        written = cluster.replace(body)
        if written is None:
            # changed since we read it; or our own write landed and only its answer was lost
            current = cluster.get("v1", "Secret", namespace, record_name(record.id))
            if current is None or _decode(current) != record:
                raise _conflict(record, "it was changed by someone else since it was read")
            written = current
        self._remember(record.environment, written)

    def get(self, deploy_id: str) -> DeployRecord | None:
        with self._guard:
            seen = self._seen.get(deploy_id)
        places = [seen[0]] if seen else self.environments()
        for environment in dict.fromkeys(places):
            cluster, namespace = self.locate(environment)
            found = cluster.get("v1", "Secret", namespace, record_name(deploy_id))
            record = _decode(found) if found else None
            if record is not None and record.id == deploy_id:
                self._remember(record.environment, found or {})
                return record
        return None

    def history(
        self,
        environment: str,
        app: str | None = None,
        *,
        limit: int = 20,
        status: str | None = None,
    ) -> list[DeployRecord]:
        """Newest first."""
        cluster, namespace = self.locate(environment)
        found = _listed(cluster, namespace, environment, app, status)
        for record, secret in found:
            self._remember(record.environment, secret)
        return [record for record, _ in found[:limit]]

    def last_successful(
        self, environment: str, app: str, *, before: str | None = None
    ) -> DeployRecord | None:
        for record in self.history(environment, app, limit=50, status="succeeded"):
            if record.id != before:
                return record
        return None

    def _remember(self, environment: str, secret: Obj) -> None:
        meta = secret.get("metadata") or {}
        deploy_id = (meta.get("labels") or {}).get(DEPLOY_ID)
        ident = (meta.get("annotations") or {}).get(DEPLOY_ID, deploy_id)
        if ident and meta.get("resourceVersion"):
            with self._guard:
                self._seen[ident] = (environment, str(meta["resourceVersion"]))

    def _prune(self, cluster: ClusterPort, namespace: str, record: DeployRecord) -> None:
        """Delete the app's records beyond the newest `keep`, but never one a later promote,
        abort or rollback needs; each at the version just listed, so a record changed meanwhile
        stays (and two writers pruning at once delete each record once)."""
        found = _listed(cluster, namespace, record.environment, record.app, None)
        succeeded = [r.id for r, _ in found if r.status == "succeeded"][:2]
        for old, secret in found[self.keep :]:
            if old.status in KEEP_ALWAYS or old.id in succeeded:
                continue
            meta = secret["metadata"]
            cluster.delete(
                "v1", "Secret", namespace, meta["name"], resource_version=meta["resourceVersion"]
            )
            with self._guard:
                self._seen.pop(old.id, None)


def _listed(
    cluster: ClusterPort, namespace: str, environment: str, app: str | None, status: str | None
) -> list[tuple[DeployRecord, Obj]]:
    """The records of an environment (and app, and status), newest first. Labels narrow the
    list; the typed record decides (a label may be a digest of a long name)."""
    labels = {RECORD: "deploy", ENVIRONMENT: label_value(environment)}
    if app:
        labels[APP] = label_value(app)
    if status:
        labels[STATUS] = label_value(status)
    found = []
    for secret in cluster.list_objects("v1", "Secret", namespace, labels=labels):
        record = _decode(secret)
        if record is None or record.environment != environment:
            continue
        if (app and record.app != app) or (status and record.status != status):
            continue
        found.append((record, secret))
    found.sort(key=lambda pair: (pair[0].started_at, pair[0].id), reverse=True)
    return found


def _secret(record: DeployRecord, namespace: str) -> Obj:
    payload = record.model_dump_json().encode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": TYPE,
        "metadata": {
            "name": record_name(record.id),
            "namespace": namespace,
            "labels": {
                **MANAGED,
                RECORD: "deploy",
                DEPLOY_ID: label_value(record.id),
                ENVIRONMENT: label_value(record.environment),
                APP: label_value(record.app),
                STATUS: record.status,
            },
            "annotations": {DEPLOY_ID: record.id},
        },
        "data": {KEY: base64.b64encode(payload).decode()},
    }


def _decode(secret: Obj) -> DeployRecord | None:
    """The record a Secret holds; None for one that is not a record of ours (or no longer
    parses: a record is never trusted blindly)."""
    if secret.get("type") != TYPE:
        return None
    raw = (secret.get("data") or {}).get(KEY)
    if not raw:
        return None
    try:
        return DeployRecord.model_validate_json(base64.b64decode(raw))
    except (ValidationError, ValueError):
        return None


def _conflict(record: DeployRecord, why: str) -> DeployError:
    return DeployError(
        f"deploy record {record.id} of {record.app} in {record.environment} was not saved: {why}; "
        "read it again and retry",
        environment=record.environment,
        app=record.app,
    )
