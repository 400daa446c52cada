"""Environment locks as Kubernetes Leases (coordination.k8s.io/v1) in each environment's namespace.

A Lease names its holder, when it was acquired and last renewed, and how long a renewal holds.
Taking it is one write the API server accepts from one writer only: create it (409 AlreadyExists:
someone else won), or replace it at the resourceVersion just read (409 Conflict: someone else
won) when it is ours, free, or its holder let it run out (renewTime + leaseDurationSeconds is
past). Taking a lock one holds already renews it. A holder that dies stops renewing, so the lock
is free one lease duration later; the reader's clock judges that, as for node leases.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline_bot.deploy.names import label_value, name_part
from pipeline_bot.errors import LockedError
from pipeline_bot.integrations.ports import ClusterPort
from pipeline_bot.models import EnvironmentLock

Obj = dict[str, Any]
Locate = Callable[[str], tuple[ClusterPort, str]]
API_VERSION, KIND = "coordination.k8s.io/v1", "Lease"
REASON = "pipeline-bot.dev/reason"
ENVIRONMENT = "pipeline-bot.dev/environment"
MANAGED = {"app.kubernetes.io/managed-by": "pipeline-bot"}
_ROUNDS = 5  # read-then-write attempts per try; each lost race is someone else's progress


def lease_name(environment: str) -> str:
    return f"pipeline-bot-lock.{name_part(environment)}"


def micro_time(at: datetime) -> str:
    """metav1.MicroTime: exactly six digits of fraction, as the API server insists."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseLocks:
    """acquire / release / lock of StorePort, over Lease objects."""

    def __init__(
        self,
        locate: Locate,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.locate, self.now, self.sleep = locate, now, sleep

    def acquire(
        self, environment: str, owner: str, reason: str, *, ttl: float, wait: float = 0.0
    ) -> EnvironmentLock:
        """Take (or renew) the environment's lock for `ttl` seconds (whole seconds, at least
        one), waiting up to `wait` seconds for its holder; LockedError names the holder."""
        deadline = time.monotonic() + wait
        while True:
            lock = self._try(environment, owner, reason, max(1, math.ceil(ttl)))
            if lock.owner == owner:
                return lock
            if time.monotonic() >= deadline:
                raise LockedError(
                    environment,
                    lock.owner,
                    lock.reason,
                    lock.expires_at.strftime("%Y-%m-%d %H:%M:%SZ"),
                )
            self.sleep(min(0.25, max(0.01, deadline - time.monotonic())))

    def release(self, environment: str, owner: str) -> bool:
        """Delete the Lease if `owner` still holds it (a precondition on its resourceVersion,
        so a lease taken over meanwhile is left alone)."""
        cluster, namespace = self.locate(environment)
        current = cluster.get(API_VERSION, KIND, namespace, lease_name(environment))
        if current is None or _spec(current).get("holderIdentity") != owner:
            return False
        return cluster.delete(
            API_VERSION,
            KIND,
            namespace,
            lease_name(environment),
            resource_version=current["metadata"]["resourceVersion"],
        )

    def lock(self, environment: str) -> EnvironmentLock | None:
        cluster, namespace = self.locate(environment)
        current = cluster.get(API_VERSION, KIND, namespace, lease_name(environment))
        held = _held(environment, current) if current else None
        return held if held and held.expires_at > self.now() else None

    def _try(self, environment: str, owner: str, reason: str, seconds: int) -> EnvironmentLock:
        """The lock after one attempt to take it: ours, or the holder's."""
        cluster, namespace = self.locate(environment)
        name = lease_name(environment)
        for _ in range(_ROUNDS):
            current = cluster.get(API_VERSION, KIND, namespace, name)
            now = self.now()
            if current is None:
                cluster.ensure_namespace(namespace)
                body = _lease(environment, namespace, owner, reason, seconds, now)
                created = cluster.create(body)
                if created is not None:
                    return _lock(environment, created)
                continue  # someone created it first: read theirs
            held = _held(environment, current)
            if held is not None and held.owner != owner and held.expires_at > now:
                return held
            replaced = cluster.replace(_taken(current, owner, reason, seconds, now))
            if replaced is not None:
                return _lock(environment, replaced)
        held = _held(environment, cluster.get(API_VERSION, KIND, namespace, name) or {})
        if held is None:  # it kept changing hands under us; report it as busy
            return EnvironmentLock(
                environment=environment,
                owner="(contended)",
                reason="the lock changed hands while we tried to take it",
                acquired_at=self.now(),
                expires_at=self.now(),
            )
        return held


def _lease(
    environment: str, namespace: str, owner: str, reason: str, seconds: int, now: datetime
) -> Obj:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": lease_name(environment),
            "namespace": namespace,
            "labels": {**MANAGED, ENVIRONMENT: label_value(environment)},
            "annotations": {ENVIRONMENT: environment, REASON: reason},
        },
        "spec": {
            "holderIdentity": owner,
            "leaseDurationSeconds": seconds,
            "acquireTime": micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": 0,
        },
    }


def _taken(current: Obj, owner: str, reason: str, seconds: int, now: datetime) -> Obj:
    """The Lease `current` (with its resourceVersion) held by `owner` from now on; a renewal
    when `owner` held it already (acquireTime kept), else a transition."""
    spec = dict(_spec(current))
    renewal = spec.get("holderIdentity") == owner
    spec.update(
        holderIdentity=owner,
        leaseDurationSeconds=seconds,
        renewTime=micro_time(now),
        acquireTime=spec.get("acquireTime") if renewal else micro_time(now),
        leaseTransitions=int(spec.get("leaseTransitions") or 0) + (0 if renewal else 1),
    )
    meta = current["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            **{k: meta[k] for k in ("name", "namespace", "resourceVersion", "uid") if k in meta},
            "labels": {**(meta.get("labels") or {}), **MANAGED},
            "annotations": {**(meta.get("annotations") or {}), REASON: reason},
        },
        "spec": spec,
    }


def _held(environment: str, lease: Obj) -> EnvironmentLock | None:
    """The lock a Lease describes; None when it has no holder."""
    spec = _spec(lease)
    if not spec.get("holderIdentity") or not spec.get("renewTime"):
        return None
    return _lock(environment, lease)


def _lock(environment: str, lease: Obj) -> EnvironmentLock:
    spec = _spec(lease)
    renewed = datetime.fromisoformat(spec["renewTime"])
    return EnvironmentLock(
        environment=environment,
        owner=spec["holderIdentity"],
        reason=((lease["metadata"].get("annotations") or {}).get(REASON)) or "",
        acquired_at=datetime.fromisoformat(spec.get("acquireTime") or spec["renewTime"]),
        expires_at=renewed + timedelta(seconds=int(spec.get("leaseDurationSeconds") or 0)),
    )


def _spec(lease: Obj) -> Obj:
    return dict(lease.get("spec") or {})
