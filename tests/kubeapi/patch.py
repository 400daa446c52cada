"""Patch semantics of the API server: JSON merge patch, strategic merge patch, JSON patch, and
server-side apply (with per-manager memory of what each field manager applied)."""

from __future__ import annotations

import copy
from typing import Any

from tests.kubeapi.store import ApiError

# list field name -> merge key, for the lists a strategic merge patch merges by key
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "conditions": "type",
    "imagePullSecrets": "name",
    "tolerations": "key",
    "ownerReferences": "uid",
    "finalizers": None,
}
SERVICE_PORT_KEY = "port"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge(target: Any, patch: Any, *, field: str = "", kind: str = "") -> Any:
    """Kubernetes strategic merge patch for the fields in MERGE_KEYS; other lists are replaced."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [v for v in result.get(name, []) if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            merge_key = (
                SERVICE_PORT_KEY if (key == "ports" and kind == "Service") else MERGE_KEYS.get(key)
            )
            if key in MERGE_KEYS and (merge_key or key == "finalizers"):
                result[key] = _merge_list(result.get(key) or [], value, merge_key, kind)
            else:
                result[key] = copy.deepcopy(value)
        else:
            result[key] = strategic_merge(result.get(key), value, field=key, kind=kind)
    return result


def _merge_list(current: list[Any], patch: list[Any], key: str | None, kind: str) -> list[Any]:
    if key is None:  # a set of primitives
        return current + [v for v in patch if v not in current]
    out = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            out.append(copy.deepcopy(item))
            continue
        index = next(
            (i for i, c in enumerate(out) if isinstance(c, dict) and c.get(key) == item[key]), None
        )
        if item.get("$patch") == "delete":
            if index is not None:
                out.pop(index)
        elif index is None:
            out.append({k: v for k, v in copy.deepcopy(item).items() if k != "$patch"})
        else:
            out[index] = strategic_merge(out[index], item, kind=kind)
    return out


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902: add, remove, replace, test, move, copy."""
    if not isinstance(ops, list):
        raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in ops:
        path = _pointer(op.get("path", ""))
        kind = op.get("op")
        if kind == "test":
            if _get(doc, path) != op.get("value"):
                raise ApiError(422, "Invalid", f"test operation failed at {op.get('path')}")
        elif kind == "remove":
            doc = _set(doc, path, None, remove=True)
        elif kind in ("add", "replace"):
            doc = _set(doc, path, copy.deepcopy(op.get("value")), insert=kind == "add")
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = copy.deepcopy(_get(doc, source))
            if kind == "move":
                doc = _set(doc, source, None, remove=True)
            doc = _set(doc, path, value, insert=True)
        else:
            raise ApiError(400, "BadRequest", f"unknown JSON patch operation {kind!r}")
    return doc


def _pointer(path: str) -> list[str]:
    if not path:
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def _get(doc: Any, path: list[str]) -> Any:
    for part in path:
        try:
            doc = doc[int(part)] if isinstance(doc, list) else doc[part]
        except (KeyError, IndexError, ValueError):
            raise ApiError(422, "Invalid", f"path /{'/'.join(path)} does not exist") from None
    return doc


def _set(
    doc: Any, path: list[str], value: Any, *, remove: bool = False, insert: bool = False
) -> Any:
    if not path:
        return value
    parent = _get(doc, path[:-1])
    last = path[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if remove:
            parent.pop(index)
        elif insert:
            parent.insert(index, value)
        else:
            parent[index] = value
    elif remove:
        if last not in parent:
            raise ApiError(422, "Invalid", f"path /{'/'.join(path)} does not exist")
        del parent[last]
    else:
        parent[last] = value
    return doc


def prune(current: Any, previous: Any, applied: Any) -> Any:
    """Remove from `current` what `previous` (this manager's last apply) set and `applied` (its new
    apply) no longer sets: server-side apply's "fields you stop applying are removed"."""
    if not isinstance(current, dict) or not isinstance(previous, dict):
        return current
    applied = applied if isinstance(applied, dict) else {}
    out = dict(current)
    for key, old in previous.items():
        if key not in applied:
            out.pop(key, None)
        elif isinstance(old, dict):
            out[key] = prune(out.get(key), old, applied[key])
        elif isinstance(old, list) and key in MERGE_KEYS and MERGE_KEYS[key]:
            mk = MERGE_KEYS[key]
            keep = {i.get(mk) for i in applied[key] if isinstance(i, dict)}
            gone = {i.get(mk) for i in old if isinstance(i, dict)} - keep
            cur = out.get(key) or []
            merged = []
            for item in cur:
                if isinstance(item, dict) and item.get(mk) in gone:
                    continue
                prev_item = next(
                    (p for p in old if isinstance(p, dict) and p.get(mk) == item.get(mk)), None
                )
                new_item = next(
                    (p for p in applied[key] if isinstance(p, dict) and p.get(mk) == item.get(mk)),
                    None,
                )
                merged.append(prune(item, prev_item, new_item) if prev_item and new_item else item)
            out[key] = merged
    return out
