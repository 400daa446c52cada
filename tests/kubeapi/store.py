"""Objects by resource, namespace and name, with resourceVersions and an event log for watches."""

from __future__ import annotations

import copy
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    has_generation: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"


RESOURCES = [
    Resource(
        "",
        "v1",
        "namespaces",
        "Namespace",
        namespaced=False,
        short_names=("ns",),
        subresources=("status",),
    ),
    Resource("", "v1", "pods", "Pod", short_names=("po",), subresources=("status",)),
    Resource(
        "", "v1", "nodes", "Node", namespaced=False, short_names=("no",), subresources=("status",)
    ),
    Resource("", "v1", "services", "Service", short_names=("svc",), subresources=("status",)),
    Resource("", "v1", "events", "Event", short_names=("ev",)),
    Resource("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
    Resource(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        short_names=("deploy",),
        subresources=("status", "scale"),
        has_generation=True,
    ),
    Resource("coordination.k8s.io", "v1", "leases", "Lease"),
    Resource(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        short_names=("rs",),
        subresources=("status", "scale"),
        has_generation=True,
    ),
]
BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
BY_KIND = {(r.api_version, r.kind): r for r in RESOURCES}


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """Becomes a metav1.Status response."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> Obj:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        }


def qualified(res: Resource) -> str:
    """`leases.coordination.k8s.io`, `pods`: how the API server names a resource in messages."""
    return f"{res.plural}{'.' + res.group if res.group else ''}"


def not_found(res: Resource, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified(res)} "{name}" not found',
        {"name": name, "group": res.group, "kind": res.plural},
    )


def conflict(res: Resource, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(res)} "{name}": {why}',
        {"name": name, "group": res.group, "kind": res.plural},
    )


def check_preconditions(res: Resource, obj: Obj, preconditions: Obj) -> None:
    """DeleteOptions.preconditions, as the API server's storage checks them (409 Conflict)."""
    meta = obj["metadata"]
    uid, rv = preconditions.get("uid"), preconditions.get("resourceVersion")
    if uid is not None and uid != meta.get("uid"):
        raise conflict(
            res,
            meta["name"],
            f"Precondition failed: UID in precondition: {uid}, UID in object meta: {meta['uid']}",
        )
    if rv is not None and rv != meta.get("resourceVersion"):
        raise conflict(
            res,
            meta["name"],
            f"Precondition failed: ResourceVersion in precondition: {rv}, "
            f"ResourceVersion in object meta: {meta['resourceVersion']}",
        )


def gone(rv: int, compacted: int) -> ApiError:
    return ApiError(410, "Expired", f"too old resource version: {rv} ({compacted})")


@dataclass
class Event:
    rv: int
    type: str
    res: Resource
    obj: Obj
    at: float = field(default_factory=time.monotonic)  # when it happened, for benchmarks


@dataclass
class Store:
    """All objects; every write bumps one global resourceVersion and appends to the event log."""

    lock: threading.Condition = field(default_factory=threading.Condition)
    objects: dict[tuple[Resource, str, str], Obj] = field(default_factory=dict)
    log: list[Event] = field(default_factory=list)
    rv: int = 100
    requests: int = 0
    compacted: int = 0  # the history up to here is forgotten: watching from before it is 410

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def get(self, res: Resource, ns: str, name: str) -> Obj:
        with self.lock:
            obj = self.objects.get((res, ns, name))
            if obj is None:
                raise not_found(res, name)
            return copy.deepcopy(obj)

    def find(self, res: Resource, ns: str, name: str) -> Obj | None:
        with self.lock:
            obj = self.objects.get((res, ns, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, res: Resource, ns: str | None) -> tuple[list[Obj], int]:
        with self.lock:
            items = [
                copy.deepcopy(o)
                for (r, n, _), o in sorted(self.objects.items(), key=lambda kv: kv[0][1:])
                if r == res and (ns is None or n == ns)
            ]
            return items, self.rv

    def create(self, res: Resource, ns: str, obj: Obj) -> Obj:
        with self.lock:
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            name = meta.get("name")
            if not name:
                raise ApiError(
                    422, "Invalid", f"{res.kind} is invalid: metadata.name: Required value"
                )
            if res.namespaced:
                if (
                    not self.objects.get((BY_PATH[("", "v1", "namespaces")], "", ns))
                    and ns != "default"
                ):
                    raise ApiError(
                        404,
                        "NotFound",
                        f'namespaces "{ns}" not found',
                        {"name": ns, "kind": "namespaces"},
                    )
                meta["namespace"] = ns
            key = (res, ns if res.namespaced else "", name)
            if key in self.objects:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{qualified(res)} "{name}" already exists',
                    {"name": name, "group": res.group, "kind": res.plural},
                )
            obj["apiVersion"], obj["kind"] = res.api_version, res.kind
            if "status" in res.subresources:
                obj.setdefault("status", {})  # as the real server: status is there, if empty
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            if res.has_generation:
                meta["generation"] = 1
            meta["resourceVersion"] = str(self._next_rv())
            self.objects[key] = obj
            self._emit("ADDED", res, obj)
            return copy.deepcopy(obj)

    def replace(self, res: Resource, ns: str, name: str, obj: Obj, *, subresource: str = "") -> Obj:
        """Update an existing object; `subresource` "status" writes only the status."""
        with self.lock:
            key = (res, ns if res.namespaced else "", name)
            old = self.objects.get(key)
            if old is None:
                raise not_found(res, name)
            meta = obj.setdefault("metadata", {})
            sent_rv = meta.get("resourceVersion")
            if sent_rv and sent_rv != old["metadata"]["resourceVersion"]:
                raise conflict(
                    res,
                    name,
                    "the object has been modified; please apply your changes to the latest "
                    "version and try again",
                )
            if subresource == "status":
                new = copy.deepcopy(old)
                new["status"] = obj.get("status", {})
            else:
                new = obj
                if "status" in old and res.subresources and "status" in res.subresources:
                    new["status"] = old["status"]
                for keep in ("uid", "creationTimestamp", "namespace", "name", "generation"):
                    if keep in old["metadata"]:
                        new["metadata"][keep] = old["metadata"][keep]
                if res.has_generation and new.get("spec") != old.get("spec"):
                    new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            new["apiVersion"], new["kind"] = res.api_version, res.kind
            if new == old:
                return copy.deepcopy(old)
            new["metadata"]["resourceVersion"] = str(self._next_rv())
            self.objects[key] = new
            self._emit("MODIFIED", res, new)
            return copy.deepcopy(new)

    def delete(self, res: Resource, ns: str, name: str, preconditions: Obj | None = None) -> Obj:
        with self.lock:
            key = (res, ns if res.namespaced else "", name)
            old = self.objects.get(key)
            if old is None:
                raise not_found(res, name)
            check_preconditions(res, old, preconditions or {})
            del self.objects[key]
            old["metadata"]["resourceVersion"] = str(self._next_rv())
            self._emit("DELETED", res, old)
            if res.kind == "Namespace":  # everything in it goes with it
                for inner in [k for k in self.objects if k[0].namespaced and k[1] == name]:
                    gone = self.objects.pop(inner)
                    gone["metadata"]["resourceVersion"] = str(self._next_rv())
                    self._emit("DELETED", inner[0], gone)
            return copy.deepcopy(old)

    def _emit(self, kind: str, res: Resource, obj: Obj) -> None:
        self.log.append(Event(self.rv, kind, res, copy.deepcopy(obj)))
        self.lock.notify_all()

    def events_after(self, rv: int, res: Resource, ns: str | None) -> list[Event]:
        with self.lock:
            # one event per resourceVersion, in order: the log is indexed by rv
            first = self.log[0].rv if self.log else rv + 1
            return [
                e
                for e in self.log[max(0, rv + 1 - first) :]
                if e.res == res and (ns is None or e.obj["metadata"].get("namespace", "") == ns)
            ]

    def events_since(self, rv: int, res: Resource, ns: str | None) -> tuple[list[Event], int]:
        """The events after `rv` and the version they bring a watcher to, read at one instant;
        410 Expired when the history after `rv` has been compacted away."""
        with self.lock:
            if rv < self.compacted:
                raise gone(rv, self.compacted)
            return self.events_after(rv, res, ns), self.rv

    def compact(self) -> int:
        """Forget the history so far, as etcd's compaction does: watching from an older version
        gets 410 from now on. The version moves on too, as it always does on a real cluster
        (something else is written meanwhile), so every open watch is left behind."""
        with self.lock:
            self.rv += 1
            self.compacted = self.rv
            self.log.clear()
            self.lock.notify_all()
            return self.compacted

    def wait(self, rv: int, timeout: float) -> bool:
        """Block until the store moves past `rv` or `timeout` passes; True when it moved."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.rv <= rv:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(left)
            return True
