"""The cluster through the official `kubernetes` client: apply, read, scale, watch a rollout.

Objects go in and come out as plain dicts. API errors become IntegrationError with the API
server's own message (never headers or credentials). Transient failures (connection errors,
answers that do not come, 429, 5xx) are retried with backoff, or after as long as Retry-After
asks, until the caller's deadline (ports.deadline: a deploy's step sets it) and no longer: a
Retry-After that reaches past it gives up at once, and one attempt waits at most half the time
left, so that a request the server never answers leaves time for another. Outside a deadline a
call gets a few quick retries (about 4 s). A rollout's watch is retried until the rollout's own
deadline (see `_Stream`); if the API is still failing then, that is the error, not a slow rollout.
The client's own silent retries (urllib3's) are off: every attempt is one of ours, and counted.
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
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client, config, dynamic
from kubernetes.client import rest
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from urllib3.exceptions import HTTPError, ReadTimeoutError

from pipeline_bot.errors import IntegrationError, KubeconfigError
from pipeline_bot.integrations.ports import current_deadline

Obj = dict[str, Any]
T = TypeVar("T")
FIELD_MANAGER = "pipeline-bot"
_RETRIES = (0.2, 0.5, 1.0, 2.0)  # the waits of a call outside a deadline: five attempts in all
_BACKOFF_MAX = 2.0  # within a deadline the waits grow as above, then stay at this
_RETRY_AFTER_MAX = 10.0  # outside a deadline, a longer Retry-After gives up instead of waiting
_ATTEMPT_SECONDS = 30.0  # the longest one attempt waits for its answer
_CONNECT_SECONDS = 5.0
_LAST_ATTEMPT = 0.5  # a deadline closer than this leaves no time for another attempt
_TRANSIENT = {429, 500, 502, 503, 504}
_WATCH_SECONDS = 300  # asked of the server per watch; it may end one sooner, and we resume


class KubernetesCluster:
    """ClusterPort over one API server."""

    def __init__(self, api: client.ApiClient) -> None:
        # every attempt is one of ours (_call, _Stream): urllib3 would otherwise repeat a GET
        # that timed out three more times on its own, each as long again
        api.configuration.retries = False
        api.rest_client = rest.RESTClientObject(api.configuration)
        self.api = api
        self.host = api.configuration.host
        self._dynamic: dynamic.DynamicClient | None = None
        self.requests = 0
        self.retries = 0  # attempts made again after a transient failure (watches apart)
        self.answered = False  # the server has answered once: a connection failure is a blip
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
        # where it looks, said in every error: a newcomer's first failure is usually this
        if in_cluster:
            where = "the pod's service account (in-cluster)"
        elif kubeconfig_content:
            where = "the kubeconfig content given (PIPELINE_BOT_KUBECONFIG_CONTENT or an input)"
        elif kubeconfig:
            where = f"{kubeconfig} (--kubeconfig)"
        elif os.environ.get("KUBECONFIG"):
            where = f"{os.environ['KUBECONFIG']} ($KUBECONFIG)"
        else:
            where = "~/.kube/config (the default: set KUBECONFIG or pass --kubeconfig)"
        try:
            if in_cluster:
                cfg = client.Configuration()
                config.load_incluster_config(client_configuration=cfg)
                return cls(client.ApiClient(cfg))
            if kubeconfig_content:
                data = yaml.safe_load(kubeconfig_content)
                if not isinstance(data, dict):
                    raise KubeconfigError(
                        "the kubeconfig content is not a YAML mapping", service="kubernetes"
                    )
                return cls(config.new_client_from_config_dict(data, context=context))
            # the client reads $KUBECONFIG once, at import; read it now instead
            path = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            first = path.split(os.pathsep)[0]
            if not Path(first).expanduser().exists():
                raise KubeconfigError(
                    f"no kubeconfig found: looked at {where}", service="kubernetes"
                )
            return cls(config.new_client_from_config(config_file=path, context=context))
        except (config.ConfigException, yaml.YAMLError, OSError) as exc:
            # the message names the file or the missing key; it never holds the credentials
            raise KubeconfigError(
                f"cannot load the Kubernetes configuration from {where}: {_first_line(exc)}",
                service="kubernetes",
            ) from None

    # ------------------------------------------------------------------ calls

    def _call(self, what: str, fn: Callable[[Any], T], *, passthrough: set[int] | None = None) -> T:
        """`fn(request_timeout)`, again while it fails transiently and the deadline allows."""
        started, limit, attempt = time.monotonic(), current_deadline(), 0
        while True:
            attempt += 1
            self.requests += 1
            timeout = _attempt_timeout(limit)
            try:
                out = fn(timeout)
                self.answered = True
                return out
            except ApiException as exc:
                self.answered = True
                if exc.status in (passthrough or ()):
                    raise
                if exc.status not in _TRANSIENT:
                    raise IntegrationError(
                        f"{what}: {_status_message(exc)}", service="kubernetes"
                    ) from None
                failure, asked = _status_message(exc), _retry_after(exc)
            except (HTTPError, OSError) as exc:
                if not self.answered:  # never reached: a wrong address, not a blip to wait out
                    if attempt <= len(_RETRIES):
                        time.sleep(_RETRIES[attempt - 1])
                        continue
                    raise IntegrationError(
                        f"{what}: the Kubernetes API at {self.host} is unreachable after "
                        f"{attempt} attempts ({_first_line(exc)})",
                        service="kubernetes",
                    ) from None
                failure, asked = self._transport_failure(exc, timeout), None
            wait, why_not = _next_wait(attempt, asked, limit)
            if why_not is not None:
                raise IntegrationError(
                    f"{what}: {failure}; {why_not} after {attempt} attempt"
                    f"{'s' if attempt > 1 else ''} in {time.monotonic() - started:.1f}s",
                    service="kubernetes",
                ) from None
            self.retries += 1
            time.sleep(wait)

    def _transport_failure(self, exc: BaseException, timeout: tuple[float, float]) -> str:
        if isinstance(exc, ReadTimeoutError):
            return f"no answer from the Kubernetes API at {self.host} within {timeout[1]:.1f}s"
        return f"the connection to the Kubernetes API at {self.host} failed ({_first_line(exc)})"

    @property
    def dyn(self) -> dynamic.DynamicClient:
        if self._dynamic is None:
            self._dynamic = self._call("discovery", lambda _t: dynamic.DynamicClient(self.api))
        return self._dynamic

    def _resource(self, api_version: str, kind: str) -> Any:
        try:  # discovery of the kind's group, once (the client keeps it): a request like others
            return self._call(
                f"discover {kind}",
                lambda _t: self.dyn.resources.get(api_version=api_version, kind=kind),
            )
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
                    lambda t: res.server_side_apply(
                        _request_timeout=t,
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
                lambda t: res.create(
                    _request_timeout=t,
                    body=obj,
                    namespace=meta.get("namespace"),
                    field_manager=FIELD_MANAGER,
                    **extra,
                ),
            )
        else:
            out = self._call(
                what,
                lambda t: res.patch(
                    _request_timeout=t,
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
                lambda t: res.get(_request_timeout=t, name=name, namespace=namespace),
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
                lambda t: res.delete(_request_timeout=t, name=name, namespace=namespace, body=body),
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
                lambda t: res.create(
                    _request_timeout=t,
                    body=obj,
                    namespace=meta.get("namespace"),
                    field_manager=FIELD_MANAGER,
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
                lambda t: res.replace(
                    _request_timeout=t,
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
            lambda t: res.patch(
                _request_timeout=t,
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
            lambda t: res.get(
                _request_timeout=t,
                namespace=namespace or None,
                label_selector=selector,
                field_selector=fields,
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
            failing = [s.failing for s in streams if s.failing]
            if failing:  # the deadline found the API failing, not the rollout slow
                raise IntegrationError(
                    f"watching the rollout of {name}: the Kubernetes API was still failing at "
                    f"the deadline ({sum(s.failures for s in streams)} failed attempts; last: "
                    f"{failing[0]})",
                    service="kubernetes",
                )
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
    ends the stream, or an answer that retrying cannot change (403, 404 ...). `failing` says
    why the last attempt failed while no answer has come since (a watch the server dropped after
    answering is no failure): a rollout whose deadline finds its streams failing failed because
    of the API, not because it was slow."""

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
        self.failing: str | None = None  # the last failure, while nothing has answered since
        self.failures = 0  # failed attempts, all told
        self._answered = False  # the server answered the attempt under way

    def run(self) -> None:
        ended, failures = False, 0  # ended: the last watch ended; the next one resumes
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            began, seen, pause = time.monotonic(), self.seen, None
            self._answered = False
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
                    self._failed(_status_message(exc))
                else:
                    message = f"watching {self.kind}s failed: {_status_message(exc)}"
                    self.out.put(("error", "", {"message": message}))
                    return
            except (HTTPError, OSError, ValueError, KeyError) as exc:  # the last two: garbled
                if self.stop.is_set():  # the socket was cut to end this watch
                    return
                ended = self.rv is not None
                if not self._answered:  # no answer at all, rather than a watch cut short
                    self._failed(_first_line(exc))
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
        left = self.deadline - time.monotonic()
        resp = self.fn(_preload_content=False, _request_timeout=(10, max(1.0, min(60.0, left))))
        self._answer()
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
        self._answer()
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

    def _answer(self) -> None:
        self._answered, self.failing = True, None

    def _failed(self, why: str) -> None:
        self.failing = why
        self.failures += 1

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


def _attempt_timeout(limit: float | None) -> tuple[float, float]:
    """(connect, read) seconds for one attempt: at most half the time left before the deadline
    (at least a second), so that an answer that never comes leaves time to try again."""
    read = _ATTEMPT_SECONDS
    if limit is not None and (left := limit - time.monotonic()) > 0:
        read = min(read, max(1.0, left / 2))
    return min(_CONNECT_SECONDS, read), read


def _next_wait(attempt: int, asked: float | None, limit: float | None) -> tuple[float, str | None]:
    """How long to wait before attempt `attempt` + 1, or why there is none (then the wait is 0).
    Within a deadline: Retry-After if the server asked (unless it reaches past the deadline),
    else a backoff growing to _BACKOFF_MAX; never a wait that leaves no time for the attempt.
    Outside one (or past it): the few quick _RETRIES."""
    now = time.monotonic()
    if limit is not None and (left := limit - now) > 0:
        if asked is not None and asked > left:
            return (
                0.0,
                f"the API server asked to wait {asked:g}s, past the deadline ({left:.1f}s left)",
            )
        if left <= _LAST_ATTEMPT:
            return 0.0, "gave up at the deadline"
        backoff = _RETRIES[attempt - 1] if attempt <= len(_RETRIES) else _BACKOFF_MAX
        wait = asked if asked is not None else min(backoff, _BACKOFF_MAX)
        return min(wait, left - _LAST_ATTEMPT), None
    if attempt > len(_RETRIES):
        return 0.0, "gave up" if limit is None else "gave up past the deadline"
    if asked is not None and asked > _RETRY_AFTER_MAX:
        return 0.0, f"the API server asked to wait {asked:g}s"
    return (asked if asked is not None else _RETRIES[attempt - 1]), None


def _retry_after(exc: ApiException) -> float | None:
    """Seconds the server asked the client to wait (429 and 503 may say)."""
    value = (exc.headers or {}).get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
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
