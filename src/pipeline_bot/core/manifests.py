"""Kubernetes manifests: parse, check before anything is applied, substitute images, label."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Sequence
from typing import Any

import yaml

from pipeline_bot.errors import ManifestError
from pipeline_bot.repo_config import RepoConfig

Obj = dict[str, Any]
# kinds whose pod template sits at these paths
_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def parse_manifests(text: str, *, source: str) -> list[Obj]:
    """Every object in a (multi-document) YAML or JSON text; `kind: List` is unpacked."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ManifestError(f"not valid YAML{line}", source=source) from None
    out: list[Obj] = []
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ManifestError(f"document {index + 1} is not a mapping", source=source)
        if doc.get("kind") == "List" or str(doc.get("kind", "")).endswith("List"):
            out += [item for item in doc.get("items") or [] if isinstance(item, dict)]
        else:
            out.append(doc)
    if not out:
        raise ManifestError("no Kubernetes objects found", source=source)
    return out


def describe(obj: Obj) -> str:
    return f"{obj.get('kind', '?')}/{(obj.get('metadata') or {}).get('name', '?')}"


def check_objects(objs: list[Obj], *, source: str = "") -> None:
    """Reject what the API server would reject (or silently misapply), naming object and field."""
    seen: set[tuple[str, str, str]] = set()
    for obj in objs:
        where = describe(obj)
        for field in ("apiVersion", "kind"):
            if not isinstance(obj.get(field), str) or not obj[field]:
                raise ManifestError(
                    "required field is missing", source=source, obj=where, field=field
                )
        name = (obj.get("metadata") or {}).get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ManifestError(
                f"{name!r} is not a valid object name",
                source=source,
                obj=where,
                field="metadata.name",
            )
        key = (obj["kind"], str((obj.get("metadata") or {}).get("namespace", "")), name)
        if key in seen:
            raise ManifestError("the same object appears twice", source=source, obj=where)
        seen.add(key)
        for field, problem in _workload_problems(obj):
            raise ManifestError(problem, source=source, obj=where, field=field)


def _workload_problems(obj: Obj) -> Iterator[tuple[str, str]]:
    path = _TEMPLATE_PATHS.get(obj["kind"])
    if path is None:
        return
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        yield "spec", "required field is missing"
        return
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        yield "spec.replicas", f"expected a whole number of at least 0, got {replicas!r}"
    template = _dig(obj, path)
    if not isinstance(template, dict):
        yield ".".join(path), "required field is missing"
        return
    if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        selector = (spec.get("selector") or {}).get("matchLabels")
        labels = (template.get("metadata") or {}).get("labels") or {}
        if not isinstance(selector, dict) or not selector:
            yield "spec.selector.matchLabels", "required field is missing"
        elif any(labels.get(k) != v for k, v in selector.items()):
            yield (
                "spec.template.metadata.labels",
                "must include every label of spec.selector.matchLabels",
            )
    containers = (template.get("spec") or {}).get("containers")
    field = ".".join(path) + ".spec.containers"
    if not isinstance(containers, list) or not containers:
        yield field, "at least one container is required"
        return
    for i, c in enumerate(containers):
        if not isinstance(c, dict) or not c.get("name"):
            yield f"{field}[{i}].name", "required field is missing"
        elif not c.get("image"):
            yield f"{field}[{i}].image", "required field is missing"


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def pod_template(obj: Obj) -> Obj | None:
    path = _TEMPLATE_PATHS.get(str(obj.get("kind")))
    template = _dig(obj, path) if path else None
    return template if isinstance(template, dict) else None


def image_repository(image: str) -> str:
    """`ghcr.io/acme/api:1.2@sha256:...` -> `ghcr.io/acme/api` (a registry port is kept)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        last[-1] = last[-1].split(":", 1)[0]
    return "/".join(last)


class AppChoiceError(ValueError):
    """No app was named and the rule cannot pick one; the message says how to name it."""


def default_app(
    explicit: str | None, services: Sequence[str], deployments: Sequence[str], fallback: str
) -> str:
    """Which app a command acts on, the same in every front end: the one named; else the one
    Deployment of the manifests given; else the configuration's one service; else, with no
    services configured, the repository's name. Several Deployments or services: an error."""
    if explicit:
        return explicit
    if len(deployments) == 1:
        return deployments[0]
    if deployments:
        names = ", ".join(sorted(deployments))
        raise AppChoiceError(f"the manifests hold several Deployments ({names})")
    if len(services) == 1:
        return services[0]
    if services:
        names = ", ".join(services)
        raise AppChoiceError(f"this repository has several services ({names})")
    return fallback


def deployment_names(objs: Sequence[Obj]) -> list[str]:
    return [str(o["metadata"]["name"]) for o in objs if o.get("kind") == "Deployment"]


def image_reference(config: RepoConfig, app: str, tag: str) -> str | None:
    """The image a deploy of `tag` to `app` runs: a full reference (`repo:tag`, `repo@digest`,
    a path) as given; a bare tag on the service's configured image; None for a bare tag when
    the service has no image to put it on."""
    if ":" in tag.rsplit("/", 1)[-1] or "@" in tag or "/" in tag:
        return tag
    service = next((s for s in config.services if s.name == app), None)
    if service is None or not service.image:
        return None
    return f"{image_repository(service.image)}:{tag}"


def substitute_images(objs: list[Obj], images: list[str]) -> tuple[list[Obj], int]:
    """Replace the image of every container whose repository matches one of `images` (as
    Azure/k8s-deploy's `images` input does). Returns new objects and how many were replaced."""
    wanted = {image_repository(i): i for i in images}
    out = copy.deepcopy(objs)
    count = 0
    for obj in out:
        template = pod_template(obj)
        spec = (template or {}).get("spec") or {}
        for c in [*spec.get("containers", []), *spec.get("initContainers", [])]:
            repo = image_repository(str(c.get("image", "")))
            if repo in wanted and c["image"] != wanted[repo]:
                c["image"] = wanted[repo]
                count += 1
            elif repo in wanted:
                count += 1
    return out, count


def add_metadata(objs: list[Obj], labels: dict[str, str], annotations: dict[str, str]) -> list[Obj]:
    """Label and annotate every object, and annotate pod templates (so each deploy is traceable
    to its commit and deploy id). Selectors are never touched."""
    out = copy.deepcopy(objs)
    for obj in out:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("labels", {}).update(labels)
        meta.setdefault("annotations", {}).update(annotations)
        template = pod_template(obj)
        if template is not None:
            tmeta = template.setdefault("metadata", {})
            tmeta.setdefault("labels", {}).update(
                {k: v for k, v in labels.items() if k not in _selector(obj)}
            )
            tmeta.setdefault("annotations", {}).update(annotations)
    return out


def _selector(obj: Obj) -> dict[str, str]:
    selector = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return selector if isinstance(selector, dict) else {}
