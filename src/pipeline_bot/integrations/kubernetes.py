"""The cluster through the official `kubernetes` client: apply, read, scale, watch a rollout.

Objects go in and come out as plain dicts. API errors become IntegrationError with the API
server's own message (never headers or credentials); transient failures (connection errors, 429,
5xx) are retried with backoff before giving up.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import yaml
from kubernetes import client, config, dynamic, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from pipeline_bot.errors import IntegrationError

Obj = dict[str, Any]
T = TypeVar("T")
FIELD_MANAGER = "pipeline-bot"
_RETRIES = (0.2, 0.5, 1.0, 2.0)
_TRANSIENT = {429, 500, 502, 503, 504}


class KubernetesCluster:
    """ClusterPort over one API server."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.host = api.configuration.host
        self._dynamic: dynamic.DynamicClient | None = None
        self.requests = 0
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
                    time.sleep(delay)
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
            self.requests += 1
            return dict(res.get(name=name, namespace=namespace).to_dict())
        except dynamic.exceptions.NotFoundError:
            return None
        except ApiException as exc:
            raise IntegrationError(
                f"read {kind}/{name}: {_status_message(exc)}", service="kubernetes"
            ) from None

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        res = self._resource(api_version, kind)
        try:
            self.requests += 1
            res.delete(name=name, namespace=namespace, body={"propagationPolicy": "Background"})
            return True
        except dynamic.exceptions.NotFoundError:
            return False
        except ApiException as exc:
            raise IntegrationError(
                f"delete {kind}/{name}: {_status_message(exc)}", service="kubernetes"
            ) from None

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
        caller stops iterating. Two watches feed one queue: no polling."""
        events: queue.Queue[tuple[str, str, Obj]] = queue.Queue()
        stop = threading.Event()
        deadline = time.monotonic() + timeout
        selector = ",".join(f"{k}={v}" for k, v in pod_labels.items())
        core, apps = client.CoreV1Api(self.api), client.AppsV1Api(self.api)
        streams = [
            (
                "deployment",
                lambda **kw: apps.list_namespaced_deployment(
                    namespace, field_selector=f"metadata.name={name}", **kw
                ),
            ),
            (
                "pod",
                lambda **kw: core.list_namespaced_pod(namespace, label_selector=selector, **kw),
            ),
        ]
        current: dict[str, Any] = {}  # each pump's open watch, so it can be closed from here
        threads = [
            threading.Thread(
                target=self._pump,
                args=(kind, fn, events, stop, deadline, current),
                daemon=True,
            )
            for kind, fn in streams
        ]
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
                if kind == "deployment":
                    deployment = None if change == "DELETED" else obj
                elif change == "DELETED":
                    pods.pop(obj["metadata"]["name"], None)
                else:
                    pods[obj["metadata"]["name"]] = obj
                if deployment is not None and events.empty():
                    yield deployment, list(pods.values())
        finally:
            # end the watches now: a pump left reading a socket while the interpreter shuts
            # down (the Action exits right after a rollout) can abort the process
            stop.set()
            for w in list(current.values()):
                w.stop()  # shuts the watch's socket down, which unblocks the pump's read
            for t in threads:
                t.join(timeout=5)

    def _pump(
        self,
        kind: str,
        fn: Callable[..., Any],
        out: queue.Queue[tuple[str, str, Obj]],
        stop: threading.Event,
        deadline: float,
        current: dict[str, Any],
    ) -> None:
        rv = ""
        failures = 0
        while not stop.is_set() and time.monotonic() < deadline:
            w = watch.Watch()
            current[kind] = w
            try:
                self.requests += 1
                for event in w.stream(
                    fn, resource_version=rv, timeout_seconds=5, allow_watch_bookmarks=False
                ):
                    if stop.is_set():
                        w.stop()
                        return
                    obj = self.api.sanitize_for_serialization(event["object"])
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    out.put((kind, event["type"], obj))
                failures = 0
            except (ApiException, HTTPError, OSError) as exc:
                if stop.is_set():  # the socket was shut down to end this watch
                    return
                failures += 1
                if failures > len(_RETRIES):
                    out.put(
                        ("error", "", {"message": f"watching {kind}s failed: {_first_line(exc)}"})
                    )
                    return
                time.sleep(_RETRIES[failures - 1])


def _status_message(exc: ApiException) -> str:
    """The API server's own explanation (metav1.Status.message), else the HTTP reason."""
    import json

    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return f"{message} (HTTP {exc.status})" if message else f"HTTP {exc.status} {exc.reason}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
