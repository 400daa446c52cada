"""DeployRequest (+ manifests) -> the objects to apply, labelled, with the image substituted."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_bot.core.images import TAG_ANNOTATION
from pipeline_bot.core.manifests import (
    add_metadata,
    check_objects,
    describe,
    parse_manifests,
    substitute_images,
)
from pipeline_bot.core.render import render_app
from pipeline_bot.errors import ManifestError
from pipeline_bot.models import DeployRequest

Obj = dict[str, Any]
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
    }
)
DEPLOY_ID = "pipeline-bot.dev/deploy-id"
COMMIT = "pipeline-bot.dev/commit"
STRATEGY = "pipeline-bot.dev/strategy"
ENVIRONMENT = "pipeline-bot.dev/environment"
APP = "pipeline-bot.dev/app"
IMAGE_TAG = TAG_ANNOTATION  # the tag a digest-pinned image was resolved from


@dataclass
class Workload:
    namespace: str
    objects: list[Obj]
    deployment: Obj
    service: Obj | None

    @property
    def others(self) -> list[Obj]:
        """Every object but the Deployment and Service the strategies handle themselves."""
        return [o for o in self.objects if o is not self.deployment and o is not self.service]


def build_workload(
    req: DeployRequest, *, namespace: str, replicas: int, deploy_id: str, strategy: str
) -> Workload:
    if req.manifests:
        objs = load_manifests(req.manifests)
        objs, replaced = substitute_images(objs, [req.image])
        if replaced == 0:
            raise ManifestError(
                f"no container in the manifests uses the repository of {req.image}",
                source=", ".join(req.manifests),
            )
    else:
        objs = render_app(req, namespace=namespace, replicas=replicas)
    for obj in objs:
        if obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = obj["metadata"].get("namespace") or namespace
    labels = {
        APP: req.app,
        ENVIRONMENT: req.environment,
        "app.kubernetes.io/managed-by": "pipeline-bot",
    }
    notes = {DEPLOY_ID: deploy_id, STRATEGY: strategy}
    if req.commit_sha:
        notes[COMMIT] = req.commit_sha
    if req.image_tag:
        notes[IMAGE_TAG] = req.image_tag
    objs = add_metadata(objs, labels, notes)
    deployments = [o for o in objs if o["kind"] == "Deployment"]
    deployment = next((d for d in deployments if d["metadata"]["name"] == req.app), None)
    if deployment is None and len(deployments) == 1:
        deployment = deployments[0]
    if deployment is None:
        names = ", ".join(describe(d) for d in deployments) or "none"
        raise ManifestError(f"no Deployment named {req.app!r} in the manifests (found: {names})")
    namespaces = {o["metadata"].get("namespace") for o in objs if o["kind"] not in CLUSTER_SCOPED}
    if len(namespaces) > 1:
        raise ManifestError(
            f"the manifests target several namespaces ({', '.join(sorted(map(str, namespaces)))}); "
            "deploy one namespace at a time"
        )
    service = next(
        (
            o
            for o in objs
            if o["kind"] == "Service" and o["metadata"]["name"] == deployment["metadata"]["name"]
        ),
        None,
    )
    return Workload(str(deployment["metadata"]["namespace"]), objs, deployment, service)


def load_manifests(patterns: list[str]) -> list[Obj]:
    """The objects of manifest files, folders and globs, parsed and checked."""
    files: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
            continue
        matched = sorted(Path(p) for p in glob.glob(pattern, recursive=True))  # noqa: PTH207 - absolute and relative patterns alike
        if not matched:
            raise ManifestError("no such file", source=pattern)
        files += matched
    objs: list[Obj] = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(f"cannot read: {exc}", source=str(file)) from None
        parsed = parse_manifests(text, source=str(file))
        check_objects(parsed, source=str(file))
        objs += parsed
    check_objects(objs)
    return objs
