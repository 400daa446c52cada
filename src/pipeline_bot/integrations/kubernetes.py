"""The cluster through the official `kubernetes` client: apply, read, scale, watch a rollout.

Objects go in and come out as plain dicts. API errors become IntegrationError with the API
server's own message (never headers or credentials); transient failures (connection errors, 429,
5xx) are retried with backoff (or as long as Retry-After asks) before giving up. A rollout's watch
is retried for as long as the rollout may take instead (see `_Stream`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import yaml
from kubernetes import client, config, dynamic
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from urllib3.exceptions import HTTPError

from pipeline_bot.errors import IntegrationError

Obj = dict[str, Any]
T = TypeVar("T")
FIELD_MANAGER = "pipeline-bot"
_RETRIES = (0.2, 0.5, 1.0, 2.0)
_TRANSIENT = {429, 500, 502, 503, 504}
_WATCH_SECONDS = 300  # asked of the server per watch; it may end one sooner, and we resume


class KubernetesCluster:
    """ClusterPort over one API server."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.host = api.configuration.host
        self._dynamic: dynamic.DynamicClient | None = None
        self.requests = 0
        self.watch_resumes = 0  # watches the server ended, started again from the last version
        self.watch_relists = 0  # lists again after 410 Gone
        self.no_server_side_apply = False

    # ------------------------------------------------------------------ construction

    @classmethod
    def connect(
        cls,
        *,
        kubeconfig: str | None = None,
        kubeconfig_content: str | None = None,
        context: str | None = None,
        in_cluster: bool = False,
    ) -> KubernetesCluster:
        """From a kubeconfig file, kubeconfig content (a secret), or the pod's service account."""
        try:
            if in_cluster:
                cfg = client.Configuration()
                config.load_incluster_config(client_configuration=cfg)
                return cls(client.ApiClient(cfg))
            if kubeconfig_content:
                data = yaml.safe_load(kubeconfig_content)
                if not isinstance(data, dict):
                    raise IntegrationError(
                        "the kubeconfig content is not a YAML mapping", service="kubernetes"
                    )
                return cls(config.new_client_from_config_dict(data, context=context))
            # the client reads $KUBECONFIG once, at import; read it now instead
            path = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            return cls(config.new_client_from_config(config_file=path, context=context))
        except (config.ConfigException, yaml.YAMLError, OSError) as exc:
            # the message names the file or the missing key; it never holds the credentials
            raise IntegrationError(
                f"cannot load the Kubernetes configuration: {_first_line(exc)}",
                service="kubernetes",
            ) from None

    # ------------------------------------------------------------------ calls

    def _call(self, what: str, fn: Callable[[], T], *, passthrough: set[int] | None = None) -> T:
        for delay in (*_RETRIES, None):
            self.requests += 1
            try:
                return fn()
            except ApiException as exc:
                if exc.status in (passthrough or ()):
                    raise
                if exc.status in _TRANSIENT and delay is not None:
                    time.sleep(_retry_after(exc) or delay)
                    continue
                raise IntegrationError(
                    f"{what}: {_status_message(exc)}", service="kubernetes"
                ) from None
            except (HTTPError, OSError) as exc:
                if delay is not None:
                    time.sleep(delay)
                    continue
                raise IntegrationError(
                    f"{what}: the Kubernetes API at {self.host} is unreachable after "
                    f"{len(_RETRIES) + 1} attempts ({_first_line(exc)})",
                    service="kubernetes",
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def dyn(self) -> dynamic.DynamicClient:
        if self._dynamic is None:
            self._dynamic = self._call("discovery", lambda: dynamic.DynamicClient(self.api))
        return self._dynamic

    def _resource(self, api_version: str, kind: str) -> Any:
        try:
            return self.dyn.resources.get(api_version=api_version, kind=kind)
        except dynamic.exceptions.ResourceNotFoundError:
            raise IntegrationError(
                f"the cluster does not know {kind} in {api_version}", service="kubernetes"
            ) from None

    def apply(self, obj: Obj, *, dry_run: bool = False) -> Obj:
        """Server-side apply with field manager `pipeline-bot` (forcing ownership of its fields);
        create-or-patch on a server that does not support server-side apply."""
        meta = obj["metadata"]
        res = self._resource(obj["apiVersion"], obj["kind"])
        extra = {"dry_run": "All"} if dry_run else {}
        what = f"apply {obj['kind']}/{meta['name']}"
        if not self.no_server_side_apply:
            try:
                out = self._call(
                    what,
                    lambda: res.server_side_apply(
                        body=obj,
                        name=meta["name"],
                        namespace=meta.get("namespace"),
                        field_manager=FIELD_MANAGER,
                        force_conflicts=True,
                        **extra,
                    ),
                    passthrough={415},
                )
                return dict(out.to_dict())
            except ApiException:
                self.no_server_side_apply = True  # 415: this server has no apply patch type
        if (
            self.get(obj["apiVersion"], obj["kind"], meta.get("namespace") or "", meta["name"])
            is None
        ):
            out = self._call(
                what,
                lambda: res.create(
                    body=obj, namespace=meta.get("namespace"), field_manager=FIELD_MANAGER, **extra
                ),
            )
        else:
            out = self._call(
                what,
                lambda: res.patch(
                    body=obj,
                    name=meta["name"],
                    namespace=meta.get("namespace"),
                    content_type="application/merge-patch+json",
                    field_manager=FIELD_MANAGER,
                    **extra,
                ),
            )
        return dict(out.to_dict())

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> Obj | None:
        res = self._resource(api_version, kind)
        try:
            out = self._call(
                f"read {kind}/{name}",
                lambda: res.get(name=name, namespace=namespace),
                passthrough={404},
            )
        except dynamic.exceptions.NotFoundError:
            return None
        return dict(out.to_dict())

    def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        name: str,
        *,
        resource_version: str | None = None,
    ) -> bool:
        """False when there was nothing to delete, or (with `resource_version`, a precondition)
        when the object has changed since that version."""
        res = self._resource(api_version, kind)
        body: Obj = {"propagationPolicy": "Background"}
        if resource_version is not None:
            body["preconditions"] = {"resourceVersion": resource_version}
        try:
            self._call(
                f"delete {kind}/{name}",
                lambda: res.delete(name=name, namespace=namespace, body=body),
                passthrough={404, 409},
            )
        except (dynamic.exceptions.NotFoundError, dynamic.exceptions.ConflictError):
            return False
        return True

    def create(self, obj: Obj) -> Obj | None:
        """Create the object; None when one of that name exists already (409 AlreadyExists)."""
        meta = obj["metadata"]
        res = self._resource(obj["apiVersion"], obj["kind"])
        try:
            out = self._call(
                f"create {obj['kind']}/{meta['name']}",
                lambda: res.create(
                    body=obj, namespace=meta.get("namespace"), field_manager=FIELD_MANAGER
                ),
                passthrough={409},
            )
        except dynamic.exceptions.ConflictError:
            return None
        return dict(out.to_dict())

    def replace(self, obj: Obj) -> Obj | None:
        """Replace the object (PUT) if it is still at `metadata.resourceVersion`; None when it
        has changed since, or is gone (409 Conflict, 404): read it again and decide again."""
        meta = obj["metadata"]
        res = self._resource(obj["apiVersion"], obj["kind"])
        try:
            out = self._call(
                f"replace {obj['kind']}/{meta['name']}",
                lambda: res.replace(
                    body=obj,
                    name=meta["name"],
                    namespace=meta.get("namespace"),
                    field_manager=FIELD_MANAGER,
                ),
                passthrough={404, 409},
            )
        except (dynamic.exceptions.NotFoundError, dynamic.exceptions.ConflictError):
            return None
        return dict(out.to_dict())

    def patch(self, api_version: str, kind: str, namespace: str, name: str, body: Obj) -> Obj:
        """A JSON merge patch."""
        res = self._resource(api_version, kind)
        out = self._call(
            f"patch {kind}/{name}",
            lambda: res.patch(
                body=body,
                name=name,
                namespace=namespace,
                content_type="application/merge-patch+json",
            ),
        )
        return dict(out.to_dict())

    def list_objects(
        self,
        api_version: str,
        kind: str,
        namespace: str,
        *,
        labels: dict[str, str] | None = None,
        fields: str | None = None,
    ) -> list[Obj]:
        res = self._resource(api_version, kind)
        selector = ",".join(f"{k}={v}" for k, v in (labels or {}).items()) or None
        out = self._call(
            f"list {kind}",
            lambda: res.get(
                namespace=namespace or None, label_selector=selector, field_selector=fields
            ),
        )
        return [dict(item) for item in out.to_dict().get("items", [])]

    def ensure_namespace(self, name: str) -> None:
        if self.get("v1", "Namespace", "", name) is None:
            self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def pod_events(self, namespace: str, pod_names: list[str]) -> list[str]:
        """'pod: reason: message' lines for the pods named, newest last."""
        lines = []
        for name in pod_names[:5]:
            events = self.list_objects(
                "v1", "Event", namespace, fields=f"involvedObject.name={name}"
            )
            lines += [f"{name}: {e.get('reason')}: {e.get('message')}" for e in events]
        return lines

    def pod_logs(self, namespace: str, pod: str, *, tail_lines: int = 30) -> str:
        """The last lines a pod's (first) container printed; when it has none yet (still
        pulling its image, say), the API server's reason in brackets."""
        try:
            text = client.CoreV1Api(self.api).read_namespaced_pod_log(
                pod, namespace, tail_lines=tail_lines, _request_timeout=10
            )
        except ApiException as exc:
            return f"(no logs: {_status_message(exc)})"
        except (HTTPError, OSError) as exc:
            raise IntegrationError(
                f"reading the logs of {pod} failed: {_first_line(exc)}", service="kubernetes"
            ) from None
        return str(text)

    # ------------------------------------------------------------------ watching

    def watch_rollout(
        self, namespace: str, name: str, pod_labels: dict[str, str], *, timeout: float
    ) -> Iterator[tuple[Obj, list[Obj]]]:
        """(Deployment, its pods) now and after every change to either, until `timeout` or the
        caller stops iterating. Two list-then-watch streams (`_Stream`) feed one queue: no
        polling, and what a real API server does to watches ends neither; only `timeout` does."""
        events: queue.Queue[tuple[str, str, Obj]] = queue.Queue()
        stop = threading.Event()
        deadline = time.monotonic() + timeout
        selector = ",".join(f"{k}={v}" for k, v in pod_labels.items())
        core, apps = client.CoreV1Api(self.api), client.AppsV1Api(self.api)
        streams = [
            _Stream(
                self,
                "deployment",
                lambda **kw: apps.list_namespaced_deployment(
                    namespace, field_selector=f"metadata.name={name}", **kw
                ),
                events,
                stop,
                deadline,
            ),
            _Stream(
                self,
                "pod",
                lambda **kw: core.list_namespaced_pod(namespace, label_selector=selector, **kw),
                events,
                stop,
                deadline,
            ),
        ]
        threads = [threading.Thread(target=s.run, daemon=True) for s in streams]
        for t in threads:
            t.start()
        deployment: Obj | None = None
        pods: dict[str, Obj] = {}
        try:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    kind, change, obj = events.get(timeout=left)
                except queue.Empty:
                    break
                if kind == "error":
                    raise IntegrationError(str(obj.get("message")), service="kubernetes")
                if change == "LISTED":  # a (re)list: the whole current state replaces ours
                    items = obj["items"]
                    if kind == "deployment":
                        deployment = items[0] if items else None
                    else:
                        pods = {p["metadata"]["name"]: p for p in items}
                elif kind == "deployment":
                    deployment = None if change == "DELETED" else obj
                elif change == "DELETED":
                    pods.pop(obj["metadata"]["name"], None)
                else:
                    pods[obj["metadata"]["name"]] = obj
                if deployment is not None and events.empty():
                    yield deployment, list(pods.values())
        finally:
            # end the watches now: a stream left reading a socket while the interpreter shuts
            # down (the Action exits right after a rollout) can abort the process
            stop.set()
            for s in streams:
                s.cut()
            for t in threads:
                t.join(timeout=5)


class _Stream:
    """One list-then-watch of a rollout's objects until a deadline, as client-go's reflector
    does. A watch the server ends (its own timeout, a dropped connection) resumes from the last
    resourceVersion seen, which BOOKMARK events advance too. 410 Gone (the server's history no
    longer reaches back that far; the watch's HTTP status, or an ERROR event in its stream) lists
    again and watches from the fresh version. 429 waits as long as Retry-After says; 5xx and
    connection failures back off. None of these counts against the rollout: only the deadline
    ends the stream, or an answer that retrying cannot change (403, 404 ...)."""

    def __init__(
        self,
        cluster: KubernetesCluster,
        kind: str,
        fn: Callable[..., Any],
        out: queue.Queue[tuple[str, str, Obj]],
        stop: threading.Event,
        deadline: float,
    ) -> None:
        self.cluster, self.kind, self.fn, self.out = cluster, kind, fn, out
        self.stop, self.deadline = stop, deadline
        self.rv: str | None = None  # None: list (again) before watching
        self.resp: Any = None  # the open watch response, so that it can be cut from outside
        self.seen = 0  # watch events read, BOOKMARKs included

    def run(self) -> None:
        ended, failures = False, 0  # ended: the last watch ended; the next one resumes
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            began, seen, pause = time.monotonic(), self.seen, None
            try:
                rv = self.rv if self.rv is not None else self._list()
                if ended:
                    self.cluster.watch_resumes += 1
                ended = False
                self._watch(rv)
                ended = True
            except ApiException as exc:
                if self.stop.is_set():
                    return
                if exc.status == 410:  # Gone: list again, then watch from there
                    self.rv = None
                    self.cluster.watch_relists += 1
                elif exc.status in _TRANSIENT or exc.status == 0:  # 0: a TLS failure
                    pause = _retry_after(exc)
                else:
                    message = f"watching {self.kind}s failed: {_status_message(exc)}"
                    self.out.put(("error", "", {"message": message}))
                    return
            except (HTTPError, OSError, ValueError, KeyError):  # the last two: a garbled body
                if self.stop.is_set():  # the socket was cut to end this watch
                    return
                ended = self.rv is not None
            # a step that brought events, or lasted, goes on at once; one that failed straight
            # away backs off, so that a server refusing every watch is not hammered
            got_somewhere = self.seen > seen or time.monotonic() - began >= 1.0
            failures = 0 if got_somewhere else failures + 1
            if pause is None:
                pause = _RETRIES[min(failures, len(_RETRIES)) - 1] if failures else 0.0
            self.stop.wait(max(0.0, min(pause, self.deadline - time.monotonic())))

    def _list(self) -> str:
        """The current state, as one LISTED message; returns the version to watch from."""
        self.cluster.requests += 1
        resp = self.fn(_preload_content=False, _request_timeout=(10, 60))
        try:
            body = json.loads(resp.data)
        finally:
            resp.release_conn()
        self.out.put((self.kind, "LISTED", {"items": body.get("items") or []}))
        self.rv = str(body["metadata"]["resourceVersion"])
        return self.rv

    def _watch(self, rv: str) -> None:
        """One watch request, read until the server ends it."""
        seconds = max(1, min(_WATCH_SECONDS, math.ceil(self.deadline - time.monotonic())))
        self.cluster.requests += 1
        self.resp = self.fn(
            watch=True,
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=seconds,
            _preload_content=False,
            _request_timeout=(10, seconds + 15),  # a connection gone quiet is a broken one
        )
        try:
            if self.stop.is_set():  # stopped before there was a socket to cut
                return
            for line in iter_resp_lines(self.resp):
                if self.stop.is_set():
                    return
                if line.strip():
                    self._take(json.loads(line))
        finally:
            resp, self.resp = self.resp, None
            resp.close()
            resp.release_conn()

    def _take(self, event: Obj) -> None:
        obj = event.get("object") or {}
        if event.get("type") == "ERROR":  # a metav1.Status inside a 200 stream
            raise ApiException(
                status=obj.get("code") or 500,
                reason=f"{obj.get('reason')}: {obj.get('message')}",
                body=json.dumps(obj),
            )
        self.seen += 1
        self.rv = str((obj.get("metadata") or {}).get("resourceVersion") or self.rv)
        if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):  # BOOKMARK: the version only
            self.out.put((self.kind, event["type"], obj))

    def cut(self) -> None:
        """Shut the open watch's socket down, so that a read blocked on it returns now."""
        sock = getattr(getattr(self.resp, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):  # closed already
                sock.shutdown(socket.SHUT_RDWR)


def _retry_after(exc: ApiException) -> float | None:
    """Seconds the server asked the client to wait (429 and 503 may say), at most a minute."""
    value = (exc.headers or {}).get("Retry-After")
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare from an API server; the usual backoff instead


def _status_message(exc: ApiException) -> str:
    """The API server's own explanation (metav1.Status.message), else the HTTP reason."""
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return f"{message} (HTTP {exc.status})" if message else f"HTTP {exc.status} {exc.reason}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
