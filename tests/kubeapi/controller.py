"""A small stand-in for kube-controller-manager and the kubelet: Deployments roll ReplicaSets,
ReplicaSets keep their Pods, Pods become ready (or fail, for images a test marks as failing)."""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.kubeapi.store import BY_PATH, ApiError, Obj, Store, now_rfc3339

DEPLOYMENTS = BY_PATH[("apps", "v1", "deployments")]
REPLICASETS = BY_PATH[("apps", "v1", "replicasets")]
PODS = BY_PATH[("", "v1", "pods")]
EVENTS = BY_PATH[("", "v1", "events")]
NAMESPACES = BY_PATH[("", "v1", "namespaces")]
REVISION = "deployment.kubernetes.io/revision"


@dataclass
class Settings:
    pod_ready_seconds: float = 0.2
    server_side_apply: bool = True  # False: answer apply patches with 415, as old servers did
    failing_images: dict[str, str] = field(default_factory=dict)  # image -> waiting reason


def _owned_by(obj: Obj, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences", []))


def _owner_ref(owner: Obj) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def template_hash(template: Obj) -> str:
    raw = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:10]


def _resolve(value: Any, total: int, *, round_up: bool) -> int:
    if value is None:
        value = "25%"
    if isinstance(value, str) and value.endswith("%"):
        exact = total * int(value[:-1]) / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value)


def _ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


class Controller:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kubeapi-controller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        seen = 0
        busy = True  # something waits on a clock (a pod starting, a progress deadline)
        while not self._stop.is_set():
            changed = self.store.wait(seen, 0.05)
            if not changed and not busy:
                continue
            seen = self.store.rv
            try:
                busy = self.reconcile()
            except ApiError:
                busy = True  # a conflict with a concurrent client write: try again next round

    # ------------------------------------------------------------------ one pass

    def reconcile(self) -> bool:
        """One pass over everything; True while something still waits on a clock."""
        self._collect_garbage()
        for dep in self.store.list(DEPLOYMENTS, None)[0]:
            self._deployment(dep)
        for rs in self.store.list(REPLICASETS, None)[0]:
            self._replicaset(rs)
        pods = self.store.list(PODS, None)[0]
        for pod in pods:
            self._pod(pod)
        busy = any(not p.get("status", {}).get("containerStatuses") for p in pods)
        for dep in self.store.list(DEPLOYMENTS, None)[0]:
            busy = self._deployment_status(dep) or busy
        return busy

    def _collect_garbage(self) -> None:
        namespaces = {n["metadata"]["name"] for n in self.store.list(NAMESPACES, None)[0]}
        uids = {
            o["metadata"]["uid"]
            for res in (DEPLOYMENTS, REPLICASETS)
            for o in self.store.list(res, None)[0]
        }
        for res in (REPLICASETS, PODS):
            for obj in self.store.list(res, None)[0]:
                refs = obj["metadata"].get("ownerReferences", [])
                ns = obj["metadata"]["namespace"]
                orphan = refs and not any(r.get("uid") in uids for r in refs)
                if orphan or (ns != "default" and ns not in namespaces):
                    self.store.delete(res, ns, obj["metadata"]["name"])

    # ------------------------------------------------------------------ deployments

    def _deployment(self, dep: Obj) -> None:
        ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        spec = dep["spec"]
        desired = spec.get("replicas", 1)
        rss = [
            rs
            for rs in self.store.list(REPLICASETS, ns)[0]
            if _owned_by(rs, dep["metadata"]["uid"])
        ]
        thash = template_hash(spec["template"])
        new = next(
            (rs for rs in rss if rs["metadata"]["labels"].get("pod-template-hash") == thash), None
        )
        revisions = [int(rs["metadata"].get("annotations", {}).get(REVISION, "0")) for rs in rss]
        if spec.get("paused"):
            return
        if new is None:
            new = self._create_rs(dep, thash, max(revisions, default=0) + 1)
            rss.append(new)
        elif int(new["metadata"].get("annotations", {}).get(REVISION, "0")) < max(
            revisions, default=0
        ):
            new["metadata"]["annotations"][REVISION] = str(max(revisions) + 1)  # a rollback
            new = self.store.replace(REPLICASETS, ns, new["metadata"]["name"], new)
        dep_rev = new["metadata"]["annotations"][REVISION]
        if dep["metadata"].get("annotations", {}).get(REVISION) != dep_rev:
            fresh = self.store.get(DEPLOYMENTS, ns, name)
            fresh["metadata"].setdefault("annotations", {})[REVISION] = dep_rev
            self.store.replace(DEPLOYMENTS, ns, name, fresh)
        old = [rs for rs in rss if rs["metadata"]["uid"] != new["metadata"]["uid"]]
        if spec.get("strategy", {}).get("type") == "Recreate":
            self._recreate(new, old, desired)
        else:
            self._rolling(spec, new, old, desired)

    def _create_rs(self, dep: Obj, thash: str, revision: int) -> Obj:
        template = json.loads(json.dumps(dep["spec"]["template"]))
        labels = {**template.get("metadata", {}).get("labels", {}), "pod-template-hash": thash}
        template.setdefault("metadata", {})["labels"] = labels
        selector = json.loads(json.dumps(dep["spec"].get("selector", {})))
        selector.setdefault("matchLabels", {})["pod-template-hash"] = thash
        rs = {
            "metadata": {
                "name": f"{dep['metadata']['name']}-{thash}",
                "labels": labels,
                "annotations": {
                    REVISION: str(revision),
                    "deployment.kubernetes.io/desired-replicas": str(
                        dep["spec"].get("replicas", 1)
                    ),
                },
                "ownerReferences": [_owner_ref(dep)],
            },
            "spec": {
                "replicas": 0,
                "selector": selector,
                "template": template,
                "minReadySeconds": dep["spec"].get("minReadySeconds", 0),
            },
        }
        return self.store.create(REPLICASETS, dep["metadata"]["namespace"], rs)

    def _scale(self, rs: Obj, replicas: int) -> None:
        if rs["spec"].get("replicas", 0) != replicas:
            rs["spec"]["replicas"] = replicas
            rs["metadata"].pop("resourceVersion", None)
            self.store.replace(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"], rs)

    def _recreate(self, new: Obj, old: list[Obj], desired: int) -> None:
        for rs in old:
            self._scale(rs, 0)
        if all(rs.get("status", {}).get("replicas", 0) == 0 for rs in old):
            self._scale(new, desired)

    def _rolling(self, spec: Obj, new: Obj, old: list[Obj], desired: int) -> None:
        rolling = spec.get("strategy", {}).get("rollingUpdate", {})
        surge = _resolve(rolling.get("maxSurge"), desired, round_up=True)
        unavailable = _resolve(rolling.get("maxUnavailable"), desired, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        old_total = sum(rs["spec"].get("replicas", 0) for rs in old)
        new_count = new["spec"].get("replicas", 0)
        if new_count > desired:
            new_count = desired
        elif new_count < desired:
            room = desired + surge - (new_count + old_total)
            new_count = min(desired, new_count + max(0, room))
        self._scale(new, new_count)
        available = sum(rs.get("status", {}).get("availableReplicas", 0) for rs in [new, *old])
        can_remove = max(0, available - (desired - unavailable))
        for rs in sorted(old, key=lambda r: r["metadata"]["creationTimestamp"]):
            count = rs["spec"].get("replicas", 0)
            broken = count - rs.get("status", {}).get("availableReplicas", 0)
            drop = min(count, can_remove + max(0, broken))
            can_remove = max(0, can_remove - (drop - max(0, broken)))
            self._scale(rs, count - drop)

    def _deployment_status(self, dep: Obj) -> bool:
        ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        spec, old_status = dep["spec"], dep.get("status", {})
        desired = spec.get("replicas", 1)
        rss = [
            rs
            for rs in self.store.list(REPLICASETS, ns)[0]
            if _owned_by(rs, dep["metadata"]["uid"])
        ]
        thash = template_hash(spec["template"])
        new = next(
            (rs for rs in rss if rs["metadata"]["labels"].get("pod-template-hash") == thash), None
        )
        st = [rs.get("status", {}) for rs in rss]
        status: Obj = {
            "observedGeneration": dep["metadata"].get("generation", 1),
            "replicas": sum(s.get("replicas", 0) for s in st),
            "updatedReplicas": (new or {}).get("status", {}).get("replicas", 0),
            "readyReplicas": sum(s.get("readyReplicas", 0) for s in st),
            "availableReplicas": sum(s.get("availableReplicas", 0) for s in st),
        }
        status["unavailableReplicas"] = max(0, desired - status["availableReplicas"])
        status = {k: v for k, v in status.items() if v or k == "observedGeneration"}
        rolling = spec.get("strategy", {}).get("rollingUpdate", {})
        max_unavailable = _resolve(rolling.get("maxUnavailable"), desired, round_up=False)
        counts = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
        progressed = (
            any(status.get(k, 0) != old_status.get(k, 0) for k in counts)
            or old_status.get("observedGeneration") != status["observedGeneration"]
        )
        status["conditions"] = self._conditions(
            dep, status, new, desired, max_unavailable, progressed
        )
        if status != old_status:
            self.store.replace(
                DEPLOYMENTS,
                ns,
                name,
                {"metadata": {"name": name}, "status": status},
                subresource="status",
            )
        progressing = next((c for c in status["conditions"] if c["type"] == "Progressing"), {})
        return bool(progressing.get("reason") == "ReplicaSetUpdated")  # its deadline still runs

    def _conditions(
        self,
        dep: Obj,
        status: Obj,
        new: Obj | None,
        desired: int,
        max_unavailable: int,
        progressed: bool,
    ) -> list[Obj]:
        now = now_rfc3339()
        old = {c["type"]: c for c in dep.get("status", {}).get("conditions", [])}
        available = status.get("availableReplicas", 0) >= desired - max_unavailable
        conds = [
            self._cond(
                old.get("Available"),
                "Available",
                available,
                "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                "Deployment has minimum availability."
                if available
                else "Deployment does not have minimum availability.",
                now,
            )
        ]
        rs_name = new["metadata"]["name"] if new else ""
        complete = (
            status.get("updatedReplicas", 0) == desired
            and status.get("replicas", 0) == desired
            and status.get("availableReplicas", 0) == desired
        )
        previous = old.get("Progressing")
        deadline = dep["spec"].get("progressDeadlineSeconds", 600)
        if complete:
            cond = self._cond(
                previous,
                "Progressing",
                True,
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
                now,
            )
        elif progressed or previous is None or previous.get("reason") == "NewReplicaSetAvailable":
            cond = self._cond(
                previous,
                "Progressing",
                True,
                "ReplicaSetUpdated",
                f'ReplicaSet "{rs_name}" is progressing.',
                now,
                touch=True,
            )
        elif (
            previous.get("reason") == "ProgressDeadlineExceeded"
            or _age(previous["lastUpdateTime"]) > deadline
        ):
            cond = self._cond(
                previous,
                "Progressing",
                False,
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{rs_name}" has timed out progressing.',
                now,
            )
        else:
            cond = previous
        conds.append(cond)
        return conds

    @staticmethod
    def _cond(
        old: Obj | None,
        kind: str,
        ok: bool,
        reason: str,
        message: str,
        now: str,
        *,
        touch: bool = False,
    ) -> Obj:
        status = "True" if ok else "False"
        if old and old.get("status") == status and old.get("reason") == reason and not touch:
            return old
        changed = not old or old.get("status") != status
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastUpdateTime": now,
            "lastTransitionTime": now if changed else old.get("lastTransitionTime", now),
        }

    # ------------------------------------------------------------------ replicasets and pods

    def _replicaset(self, rs: Obj) -> None:
        ns = rs["metadata"]["namespace"]
        pods = [p for p in self.store.list(PODS, ns)[0] if _owned_by(p, rs["metadata"]["uid"])]
        want = rs["spec"].get("replicas", 0)
        for _ in range(want - len(pods)):
            pods.append(self._create_pod(rs))
        if len(pods) > want:
            pods.sort(key=lambda p: (_ready(p), p["metadata"]["creationTimestamp"]))
            for pod in pods[: len(pods) - want]:
                self.store.delete(PODS, ns, pod["metadata"]["name"])
            pods = pods[len(pods) - want :]
        ready = sum(_ready(p) for p in pods)
        status = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        status = {k: v for k, v in status.items() if v or k in ("replicas", "observedGeneration")}
        if status != rs.get("status"):
            self.store.replace(
                REPLICASETS,
                ns,
                rs["metadata"]["name"],
                {"metadata": {"name": rs["metadata"]["name"]}, "status": status},
                subresource="status",
            )

    def _create_pod(self, rs: Obj) -> Obj:
        template = json.loads(json.dumps(rs["spec"]["template"]))
        pod = {
            "metadata": {
                **template.get("metadata", {}),
                "generateName": rs["metadata"]["name"] + "-",
                "ownerReferences": [_owner_ref(rs)],
            },
            "spec": template.get("spec", {}),
            "status": {"phase": "Pending"},
        }
        pod["metadata"].pop("name", None)
        return self.store.create(PODS, rs["metadata"]["namespace"], pod)

    def _pod(self, pod: Obj) -> None:
        status = pod.get("status", {})
        if (
            status.get("containerStatuses")
            or _age(pod["metadata"]["creationTimestamp"], precise=pod)
            < self.settings.pod_ready_seconds
        ):
            return
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        containers = pod["spec"].get("containers", [])
        failing = {
            c["image"]: self.settings.failing_images[c["image"]]
            for c in containers
            if c.get("image") in self.settings.failing_images
        }
        now = now_rfc3339()
        statuses = []
        for c in containers:
            reason = failing.get(c.get("image"))
            if reason == "Unready":  # runs, but its readiness probe never passes
                statuses.append(
                    {
                        "name": c["name"],
                        "image": c["image"],
                        "ready": False,
                        "restartCount": 0,
                        "started": True,
                        "state": {"running": {"startedAt": now}},
                    }
                )
            elif reason:
                message = (
                    f'Back-off pulling image "{c["image"]}"'
                    if reason == "ImagePullBackOff"
                    else f"back-off restarting failed container {c['name']}"
                )
                statuses.append(
                    {
                        "name": c["name"],
                        "image": c["image"],
                        "ready": False,
                        "restartCount": 0 if reason == "ImagePullBackOff" else 3,
                        "state": {"waiting": {"reason": reason, "message": message}},
                    }
                )
            else:
                statuses.append(
                    {
                        "name": c["name"],
                        "image": c["image"],
                        "ready": True,
                        "restartCount": 0,
                        "started": True,
                        "state": {"running": {"startedAt": now}},
                    }
                )
        ok = not failing
        ready = {"type": "Ready", "status": "True" if ok else "False", "lastTransitionTime": now}
        new_status = {
            "phase": "Running"
            if ok or {"CrashLoopBackOff", "Unready"} & set(failing.values())
            else "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": ready["status"], "lastTransitionTime": now},
                ready,
            ],
            "containerStatuses": statuses,
            "hostIP": "127.0.0.1",
            "podIP": f"10.244.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}",
            "startTime": now,
        }
        # the events first: whoever sees the failing status can read why at once
        events = {
            "ImagePullBackOff": ("Failed", 'Failed to pull image "{image}": not found'),
            "CrashLoopBackOff": ("BackOff", "Back-off restarting failed container"),
            "Unready": (
                "Unhealthy",
                "Readiness probe failed: HTTP probe failed with statuscode: 503",
            ),
        }
        for image, reason in failing.items():
            kind, message = events.get(reason, ("Failed", reason))
            self._event(pod, kind, message.format(image=image))
        self.store.replace(
            PODS, ns, name, {"metadata": {"name": name}, "status": new_status}, subresource="status"
        )

    def _event(self, pod: Obj, reason: str, message: str) -> None:
        now = now_rfc3339()
        self.store.create(
            EVENTS,
            pod["metadata"]["namespace"],
            {
                "metadata": {"name": f"{pod['metadata']['name']}.{uuid.uuid4().hex[:12]}"},
                "involvedObject": {
                    "kind": "Pod",
                    "namespace": pod["metadata"]["namespace"],
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                    "apiVersion": "v1",
                },
                "reason": reason,
                "message": message,
                "type": "Warning",
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "source": {"component": "kubelet"},
            },
        )


_CREATED: dict[str, float] = {}


def _age(stamp: str, precise: Obj | None = None) -> float:
    """Seconds since an RFC 3339 stamp; pods are timed from when this process first saw them, as
    stamps have whole-second precision."""
    if precise is not None:
        uid = precise["metadata"]["uid"]
        first = _CREATED.setdefault(uid, time.monotonic())
        return time.monotonic() - first
    when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (datetime.now(UTC) - when).total_seconds()
