"""HTTP front of the Kubernetes API test server: discovery, CRUD, patch, apply, watch, status."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.kubeapi import patch as patches
from tests.kubeapi import validate
from tests.kubeapi.controller import Controller, Settings
from tests.kubeapi.faults import Faults, too_many_requests
from tests.kubeapi.store import (
    BY_PATH,
    RESOURCES,
    ApiError,
    Obj,
    Resource,
    Store,
    check_preconditions,
    gone,
)

VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0",
    "gitCommit": "pipeline-bot-test-server",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.24",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$"
)
_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)
_INJECTED = {  # reason and message of an injected error, as kube-apiserver words them
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", "Internal error occurred: injected fault"),
    502: ("InternalError", "Bad Gateway: injected fault"),
    503: ("ServiceUnavailable", "The server is currently unable to handle the request"),
    504: ("Timeout", "The server was unable to return a response in the time allotted"),
}
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


class ApiServer:
    """The store, the controller and the HTTP server, started and stopped together."""

    def __init__(
        self, port: int = 0, *, pod_ready_seconds: float = 0.2, faults: Obj | None = None
    ) -> None:
        self.store = Store()
        self.settings = Settings(pod_ready_seconds=pod_ready_seconds)
        self.faults = Faults()
        self.faults.configure(faults or {})
        self.controller = Controller(self.store, self.settings)
        self.applied: dict[tuple[Any, ...], Obj] = {}
        self.requests: Counter[str] = Counter()
        handler = type("Handler", (_Handler,), {"api": self})
        self.http = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.http.daemon_threads = True
        self.port = self.http.server_address[1]
        self._thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.store.create(BY_PATH[("", "v1", "namespaces")], "", {"metadata": {"name": "default"}})
        for i, ready in enumerate(("True", "True", "False")):  # two working nodes, one broken
            self.store.create(
                BY_PATH[("", "v1", "nodes")],
                "",
                {
                    "metadata": {"name": f"node-{i}"},
                    "status": {
                        "conditions": [{"type": "Ready", "status": ready}],
                        "capacity": {"cpu": "4", "memory": "16Gi"},
                    },
                },
            )

    def start(self) -> None:
        self.controller.start()
        self._thread.start()

    def stop(self) -> None:
        self.http.shutdown()
        self.controller.stop()
        self.http.server_close()


def _label_match(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, _split_selector(selector)):
        term = term.strip()
        if m := re.match(r"^(\S+)\s+(in|notin)\s+\((.*)\)$", term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if (labels.get(key) in values) != (op == "in"):
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _split_selector(selector: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _field_match(obj: Obj, selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        negate = "!=" in term
        key, value = re.split(r"!=|==|=", term, maxsplit=1)
        cur: Any = obj
        for part in key.strip().split("."):
            cur = cur.get(part) if isinstance(cur, dict) else None
        if (str(cur if cur is not None else "") == value.strip()) == negate:
            return False
    return True


class _Handler(BaseHTTPRequestHandler):
    api: ApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    # ------------------------------------------------------------------ plumbing

    def _send(
        self,
        code: int,
        body: Any,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        raw = self._raw
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if "protobuf" in ctype:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "this test server speaks JSON only; protobuf bodies are not supported",
            )
        if not raw:
            return {}
        try:
            return (
                yaml.safe_load(raw) if ctype == "application/apply-patch+yaml" else json.loads(raw)
            )
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError(400, "BadRequest", f"the request body is not valid: {exc}") from None

    def _dispatch(self, verb: str) -> None:
        # read the whole body first, even where it is not used (DELETE options): whatever is
        # left unread would be taken for the next request on this keep-alive connection
        length = int(self.headers.get("Content-Length") or 0)
        self._raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.api.requests[verb] += 1
        path = url.path.rstrip("/") or "/"
        self._drop_after: int | None = None  # a watch to break after this many events
        self._lose_answer = False
        self._epoch = self.api.faults.watch_epoch
        try:
            if not path.startswith("/__control") and self._inject(verb, path, query):
                return
            if self._lose_answer:  # carried out; the answer goes nowhere, the connection closes
                self.wfile, answer = io.BytesIO(), self.wfile
                try:
                    self._route(verb, path, query)
                except ApiError:
                    pass
                finally:
                    self.wfile = answer
                    self.close_connection = True
                return
            if _PATH.match(path) and (wait := self.api.faults.throttled()) is not None:
                self._send(
                    429, too_many_requests(wait).status(), headers={"Retry-After": str(wait)}
                )
                return
            self._route(verb, path, query)
        except ApiError as err:
            self._send(err.code, err.status())
        except (BrokenPipeError, ConnectionResetError):
            return

    def _inject(self, verb: str, path: str, query: dict[str, str]) -> bool:
        """Apply the injected fault that takes this request, if any (tests/kubeapi/faults.py);
        True when the request has been dealt with."""
        faults = self.api.faults
        watch = query.get("watch") in ("true", "1")
        rule = faults.injected(verb, path, watch)
        if rule is None:
            return False
        if rule.answer is not None:
            headers = {}
            if rule.retry_after is not None and rule.answer in (429, 503):
                headers["Retry-After"] = str(rule.retry_after)
            reason, message = _INJECTED.get(rule.answer, ("InternalError", "injected fault"))
            details = {"retryAfterSeconds": rule.retry_after} if "Retry-After" in headers else None
            status = ApiError(rule.answer, reason, message, details).status()
            self._send(rule.answer, status, headers=headers)
            return True
        if rule.hang is not None:
            faults.released.wait(rule.hang)
            if rule.then == "answer":
                return False  # carried out now, and answered to whoever still listens
            self.close_connection = True
            return True
        if rule.lost:
            self._lose_answer = True
            return False
        if watch:  # drop: answered, then broken after `events` events
            self._drop_after = rule.events
            return False
        self.close_connection = True  # drop: the connection closed, nothing answered
        return True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ------------------------------------------------------------------ routing

    def _route(self, verb: str, path: str, query: dict[str, str]) -> None:
        if path.startswith("/__control"):
            self._control(verb, path, query)
            return
        if verb == "GET" and (doc := self._discovery(path)) is not None:
            self._send(200, doc)
            return
        if path in ("/healthz", "/readyz", "/livez"):
            self._send(200, b"ok", "text/plain")
            return
        m = _PATH.match(path)
        if not m:
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource ({path})"
            )
        group, version = ("", "v1") if m.group("core") else (m.group("group"), m.group("version"))
        plural, name, sub, ns = m.group("plural"), m.group("name"), m.group("sub"), m.group("ns")
        # /api/v1/namespaces/{name}[/status]: the namespace object itself
        if m.group("ns") and plural in ("status", "finalize") and name is None:
            plural, name, sub, ns = "namespaces", m.group("ns"), plural, None
        res = BY_PATH.get((group, version, plural))
        if res is None:
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource ({path})"
            )
        if not res.namespaced and ns is not None:
            # /api/v1/namespaces/{name} matched as namespace + plural
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource ({path})"
            )
        ns = ns or ("" if not res.namespaced else None)
        if plural == "pods" and sub == "log" and verb == "GET" and ns and name:
            self._pod_log(ns, name, query)
            return
        self._resource(verb, res, ns, name, sub or "", query)

    def _pod_log(self, ns: str, name: str, query: dict[str, str]) -> None:
        """What a container printed: a crash's traceback for CrashLoopBackOff, a start line for a
        running one; a pod still pulling its image has no log (400, as a real API server says)."""
        pod = self.api.store.get(BY_PATH[("", "v1", "pods")], ns, name)  # 404 when absent
        statuses = pod.get("status", {}).get("containerStatuses") or []
        waiting = [(s.get("state") or {}).get("waiting") or {} for s in statuses]
        reasons = {w.get("reason") for w in waiting}
        if reasons & {"ImagePullBackOff", "ErrImagePull", "ContainerCreating"} or not statuses:
            raise ApiError(
                400,
                "BadRequest",
                f'container "{statuses[0]["name"] if statuses else "app"}" in pod "{name}" is '
                "waiting to start: trying and failing to pull image",
            )
        if "CrashLoopBackOff" in reasons:
            lines = [
                "starting app on :8080",
                "connecting to the database at db:5432",
                "Traceback (most recent call last):",
                '  File "/app/main.py", line 12, in <module>',
                "ConnectionRefusedError: [Errno 111] Connection refused (db:5432)",
            ]
        else:
            lines = ["starting app on :8080", "listening on :8080"]
        tail = int(query.get("tailLines") or 0)
        text = "\n".join(lines[-tail:] if tail else lines) + "\n"
        self._send(200, text.encode(), "text/plain")

    def _discovery(self, path: str) -> Obj | None:
        if path in ("/version",):
            return VERSION
        if path == "/api":
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.api.port}"}
                ],
            }
        if path == "/apis":
            groups = sorted({(r.group, r.version) for r in RESOURCES if r.group})
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                        "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v},
                    }
                    for g, v in groups
                ],
            }
        m = re.match(r"^/(?:api/(v1)|apis/([^/]+)/([^/]+))$", path)
        if not m:
            return None
        group, version = ("", "v1") if m.group(1) else (m.group(2), m.group(3))
        resources = [r for r in RESOURCES if (r.group, r.version) == (group, version)]
        if not resources:
            return None
        listed: list[Obj] = []
        for r in resources:
            listed.append(
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": VERBS,
                    "shortNames": list(r.short_names),
                }
            )
            listed += [
                {
                    "name": f"{r.plural}/{s}",
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "kind": "Scale" if s == "scale" else r.kind,
                    "verbs": ["get", "patch", "update"],
                }
                for s in r.subresources
            ]
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": listed,
        }

    def _control(self, verb: str, path: str, query: dict[str, str]) -> None:
        settings = self.api.settings
        if path == "/__control/failing-images" and verb == "POST":
            body = self._body()
            settings.failing_images[body["image"]] = body.get("reason", "ImagePullBackOff")
        elif path == "/__control/failing-images" and verb == "DELETE":
            settings.failing_images.clear()
        elif path == "/__control/settings" and verb == "POST":
            body = self._body()
            settings.pod_ready_seconds = float(
                body.get("pod_ready_seconds", settings.pod_ready_seconds)
            )
            settings.server_side_apply = bool(
                body.get("server_side_apply", settings.server_side_apply)
            )
        elif path == "/__control/requests" and verb == "GET":
            self._send(200, dict(self.api.requests))
            return
        elif path == "/__control/requests" and verb == "DELETE":
            self.api.requests.clear()
        elif path == "/__control/faults":
            if verb in ("POST", "DELETE"):
                self.api.faults.configure(self._body() if verb == "POST" else {})
            self._send(200, self.api.faults.describe())
            return
        elif path == "/__control/faults/rules" and verb == "POST":
            index = self.api.faults.add_rule(self._body())
            self._send(200, {"rule": index, **self.api.faults.describe()})
            return
        elif path == "/__control/faults/drop-watches" and verb == "POST":
            self._send(200, {"epoch": self.api.faults.drop_watches()})
            return
        elif path == "/__control/compact" and verb == "POST":
            self._send(200, {"compacted": self.api.store.compact()})
            return
        else:
            raise ApiError(404, "NotFound", f"no control endpoint {verb} {path}")
        self._send(
            200,
            {
                "failing_images": settings.failing_images,
                "pod_ready_seconds": settings.pod_ready_seconds,
            },
        )

    # ------------------------------------------------------------------ resources

    def _resource(
        self,
        verb: str,
        res: Resource,
        ns: str | None,
        name: str | None,
        sub: str,
        query: dict[str, str],
    ) -> None:
        store = self.api.store
        if sub and sub not in res.subresources:
            raise ApiError(404, "NotFound", f"{res.plural} has no subresource {sub!r}")
        if verb == "GET" and name is None:
            if query.get("watch") in ("true", "1"):
                self._watch(res, ns, query)
            else:
                items, rv = store.list(res, ns)
                items = self._filter(items, query)
                if self._wants_table():
                    self._send(200, table(res, items, rv))
                    return
                self._send(
                    200,
                    {
                        "kind": res.list_kind,
                        "apiVersion": res.api_version,
                        "metadata": {"resourceVersion": str(rv)},
                        "items": items,
                    },
                )
            return
        ns = ns or ""
        dry = query.get("dryRun") == "All"
        if verb == "GET":
            obj = store.get(res, ns, name or "")
            if sub == "scale":
                obj = self._scale_view(obj)
            elif self._wants_table():
                obj = table(res, [obj], int(obj["metadata"]["resourceVersion"]))
            self._send(200, obj)
        elif verb == "POST":
            body = self._validated(res, self._body(), ns)
            self._send(201, body if dry else store.create(res, ns, body))
        elif verb == "PUT":
            body = self._body()
            if sub == "scale":
                obj = store.get(res, ns, name or "")
                obj["spec"]["replicas"] = body.get("spec", {}).get("replicas", 0)
                self._send(200, self._scale_view(store.replace(res, ns, name or "", obj)))
                return
            if not sub:
                body = self._validated(res, body, ns, store.find(res, ns, name or ""))
            if body.get("metadata", {}).get("name") not in (None, name):
                raise ApiError(400, "BadRequest", "the name of the object does not match the URL")
            self._send(
                200, body if dry else store.replace(res, ns, name or "", body, subresource=sub)
            )
        elif verb == "PATCH":
            self._patch(res, ns, name or "", sub, query, dry)
        elif verb == "DELETE":
            if name is None:
                raise ApiError(405, "MethodNotAllowed", "deletecollection is not supported")
            body = self._body()
            preconditions = (body.get("preconditions") if isinstance(body, dict) else None) or {}
            if dry:
                gone = store.get(res, ns, name)
                check_preconditions(res, gone, preconditions)
            else:
                gone = store.delete(res, ns, name, preconditions)
            self._send(200, gone)

    def _wants_table(self) -> bool:
        return "as=Table" in (self.headers.get("Accept") or "")

    def _scale_view(self, obj: Obj) -> Obj:
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: obj["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion")
            },
            "spec": {"replicas": obj["spec"].get("replicas", 1)},
            "status": {"replicas": obj.get("status", {}).get("replicas", 0)},
        }

    def _patch(
        self, res: Resource, ns: str, name: str, sub: str, query: dict[str, str], dry: bool
    ) -> None:
        # a patch applies to the latest object: read, merge and write under the store's lock, as
        # the real server retries a patch on conflicts instead of failing it
        with self.api.store.lock:
            self._patch_locked(res, ns, name, sub, query, dry)

    def _patch_locked(
        self, res: Resource, ns: str, name: str, sub: str, query: dict[str, str], dry: bool
    ) -> None:
        store = self.api.store
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        body = self._body()
        current = store.find(res, ns, name)
        if ctype == "application/apply-patch+yaml" and not self.api.settings.server_side_apply:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown "
                f"format - accepted media types include: {', '.join(_PATCH_TYPES)}",
            )
        if ctype == "application/apply-patch+yaml":
            manager = query.get("fieldManager")
            if not manager:
                raise ApiError(400, "BadRequest", "PATCH with apply-patch requires a fieldManager")
            key = (res, ns, name, manager, sub)
            if current is None:
                body = self._validated(res, body, ns)
                result = body if dry else store.create(res, ns, body)
            else:
                pruned = patches.prune(current, self.api.applied.get(key), body)
                merged = patches.strategic_merge(pruned, body, kind=res.kind)
                if not sub:
                    merged = self._validated(res, merged, ns, current)
                merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                result = merged if dry else store.replace(res, ns, name, merged, subresource=sub)
            if not dry:
                self.api.applied[key] = body
            self._send(200 if current is not None else 201, result)
            return
        if current is None:
            raise ApiError(
                404,
                "NotFound",
                f'{res.plural} "{name}" not found',
                {"name": name, "kind": res.plural},
            )
        if sub == "scale":
            replicas = body.get("spec", {}).get("replicas")
            current["spec"]["replicas"] = replicas
            self._send(200, self._scale_view(store.replace(res, ns, name, current)))
            return
        precondition = (
            (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
        )
        if ctype == "application/merge-patch+json":
            merged = patches.merge_patch(current, body)
        elif ctype == "application/strategic-merge-patch+json":
            merged = patches.strategic_merge(current, body, kind=res.kind)
        elif ctype == "application/json-patch+json":
            merged = patches.json_patch(current, body)
        else:
            raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {ctype!r}")
        if not sub:
            merged = self._validated(res, merged, ns, current)
        if not precondition:
            merged["metadata"].pop("resourceVersion", None)
        self._send(200, merged if dry else store.replace(res, ns, name, merged, subresource=sub))

    def _validated(self, res: Resource, obj: Any, ns: str, current: Obj | None = None) -> Obj:
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the request body must be an object")
        obj = validate.decode(res, obj)
        causes = validate.problems(res, obj, current)
        if obj.get("kind") not in (None, res.kind):
            causes.append({"field": "kind", "message": f"must be {res.kind}"})
        if res.kind == "Deployment":
            causes += _deployment_problems(obj)
        if causes:
            name = obj.get("metadata", {}).get("name", "")
            detail = "; ".join(f"{c['field']}: {c['message']}" for c in causes)
            raise ApiError(
                422,
                "Invalid",
                f'{res.kind}{"." + res.group if res.group else ""} "{name}" is invalid: {detail}',
                {
                    "name": name,
                    "group": res.group,
                    "kind": res.kind,
                    "causes": [{"reason": "FieldValueInvalid", **c} for c in causes],
                },
            )
        return obj

    def _filter(self, items: list[Obj], query: dict[str, str]) -> list[Obj]:
        labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
        return [
            o
            for o in items
            if _label_match(o["metadata"].get("labels", {}), labels) and _field_match(o, fields)
        ]

    # ------------------------------------------------------------------ watch

    def _watch(self, res: Resource, ns: str | None, query: dict[str, str]) -> None:
        store, faults = self.api.store, self.api.faults
        asked = min(float(query.get("timeoutSeconds") or 300), 300)
        timeout = min(asked, faults.watch_close_seconds or asked)
        cut = timeout < asked  # the server's own timeout (a fault) ends it before the client's
        deadline = time.monotonic() + timeout
        rv = query.get("resourceVersion", "")
        initial = query.get("sendInitialEvents") == "true"
        bookmarks = query.get("allowWatchBookmarks") == "true"
        resuming = not initial and rv not in ("", "0")
        if resuming and int(rv) < store.compacted and faults.gone_at_start == "http":
            faults.count("gone_http")
            raise gone(int(rv), store.compacted)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if not resuming:
            items, start = store.list(res, ns)
            for obj in self._filter(items, query):
                self._chunk({"type": "ADDED", "object": obj})
            if initial:
                self._chunk(_bookmark(res, start, initial_events_end=True))
        else:
            start = int(rv)
        if self._stream(res, ns, query, start, deadline, bookmarks=bookmarks, cut=cut):
            self.wfile.write(b"0\r\n\r\n")

    def _stream(
        self,
        res: Resource,
        ns: str | None,
        query: dict[str, str],
        start: int,
        deadline: float,
        *,
        bookmarks: bool,
        cut: bool,
    ) -> bool:
        """Send the events after `start` until `deadline`; False when the connection was dropped
        (a fault) instead of ended."""
        store, faults = self.api.store, self.api.faults
        sent = 0
        while (left := deadline - time.monotonic()) > 0:
            if self._broken(sent):
                self._fault_close()
                self.close_connection = True  # no terminator: a broken connection
                return False
            try:
                events, head = store.events_since(start, res, ns)
            except ApiError as err:  # compacted past this watch: it cannot go on
                faults.count("gone_events")
                self._chunk({"type": "ERROR", "object": err.status()})
                return True
            compact = False
            for event in events:
                start = event.rv
                if not self._filter([event.obj], query):
                    continue
                self._chunk({"type": event.type, "object": event.obj})
                sent += 1
                if self._broken(sent) or (
                    faults.watch_close_events and sent >= faults.watch_close_events
                ):
                    self._fault_close()
                    self.close_connection = True  # no terminator: a broken connection
                    return False
                if faults.compact_now():
                    compact = True
                    break
            if compact:
                faults.count("compactions")
                store.compact()  # this watch, and every other one, gets ERROR 410 next round
                continue
            start = head
            if not store.wait(start, min(1.0, left)) and bookmarks:
                self._chunk(_bookmark(res, start))  # idle: tell the client how far it is
                faults.count("bookmarks")
        if bookmarks:  # as kube-apiserver does before it ends a watch at its timeout
            self._chunk(_bookmark(res, start))
        if cut:
            self._fault_close()
        return True

    def _broken(self, sent: int) -> bool:
        """An injected fault breaks this watch now: a drop rule's events are out, or every
        watch was dropped since this one began."""
        if self._drop_after is not None and sent >= self._drop_after:
            self.api.faults.count("dropped_watches")
            return True
        if self._epoch != self.api.faults.watch_epoch:
            self.api.faults.count("dropped_watches")
            return True
        return False

    def _fault_close(self) -> None:
        faults = self.api.faults
        faults.count("closed")
        if faults.compact_on_close:
            faults.count("compactions")
            self.api.store.compact()

    def _chunk(self, event: Obj) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _bookmark(res: Resource, rv: int, *, initial_events_end: bool = False) -> Obj:
    meta: Obj = {"resourceVersion": str(rv)}
    if initial_events_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {
        "type": "BOOKMARK",
        "object": {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta},
    }


def _age(obj: Obj) -> str:
    created = datetime.strptime(obj["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    seconds = int((datetime.now(UTC) - created.replace(tzinfo=UTC)).total_seconds())
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m"


def _columns(res: Resource, obj: Obj) -> list[tuple[str, str, Any]]:
    status, spec = obj.get("status", {}), obj.get("spec", {})
    name = obj["metadata"]["name"]
    if res.kind == "Deployment":
        want = spec.get("replicas", 1)
        return [
            ("Name", "string", name),
            ("Ready", "string", f"{status.get('readyReplicas', 0)}/{want}"),
            ("Up-to-date", "integer", status.get("updatedReplicas", 0)),
            ("Available", "integer", status.get("availableReplicas", 0)),
            ("Age", "string", _age(obj)),
        ]
    if res.kind == "ReplicaSet":
        return [
            ("Name", "string", name),
            ("Desired", "integer", spec.get("replicas", 0)),
            ("Current", "integer", status.get("replicas", 0)),
            ("Ready", "integer", status.get("readyReplicas", 0)),
            ("Age", "string", _age(obj)),
        ]
    if res.kind == "Pod":
        cs = status.get("containerStatuses", [])
        waiting = [c["state"]["waiting"]["reason"] for c in cs if "waiting" in c.get("state", {})]
        return [
            ("Name", "string", name),
            (
                "Ready",
                "string",
                f"{sum(c.get('ready', False) for c in cs)}/{len(spec.get('containers', []))}",
            ),
            ("Status", "string", waiting[0] if waiting else status.get("phase", "Pending")),
            ("Restarts", "integer", sum(c.get("restartCount", 0) for c in cs)),
            ("Age", "string", _age(obj)),
        ]
    if res.kind == "Lease":
        return [
            ("Name", "string", name),
            ("Holder", "string", spec.get("holderIdentity", "")),
            ("Age", "string", _age(obj)),
        ]
    return [("Name", "string", name), ("Age", "string", _age(obj))]


def table(res: Resource, items: list[Obj], rv: int) -> Obj:
    """A meta.k8s.io/v1 Table, which kubectl asks for to print `kubectl get`."""
    sample = (
        _columns(res, items[0])
        if items
        else _columns(res, {"metadata": {"name": "", "creationTimestamp": "2026-01-01T00:00:00Z"}})
    )
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(rv)},
        "columnDefinitions": [
            {
                "name": n,
                "type": t,
                "format": "name" if n == "Name" else "",
                "description": "",
                "priority": 0,
            }
            for n, t, _ in sample
        ],
        "rows": [
            {
                "cells": [v for _, _, v in _columns(res, o)],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o["metadata"],
                },
            }
            for o in items
        ],
    }


def _deployment_problems(obj: Obj) -> list[dict[str, str]]:
    spec = obj.get("spec") or {}
    out = []
    selector = (spec.get("selector") or {}).get("matchLabels")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selector:
        out.append({"field": "spec.selector", "message": "Required value"})
    elif any(labels.get(k) != v for k, v in selector.items()):
        out.append(
            {
                "field": "spec.template.metadata.labels",
                "message": "`selector` does not match template `labels`",
            }
        )
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    if not containers:
        out.append({"field": "spec.template.spec.containers", "message": "Required value"})
    for i, c in enumerate(containers):
        if not c.get("name"):
            out.append(
                {"field": f"spec.template.spec.containers[{i}].name", "message": "Required value"}
            )
        if not c.get("image"):
            out.append(
                {"field": f"spec.template.spec.containers[{i}].image", "message": "Required value"}
            )
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or replicas < 0:
        out.append({"field": "spec.replicas", "message": "must be a non-negative integer"})
    return out
