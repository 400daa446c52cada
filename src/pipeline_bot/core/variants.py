"""The extra Deployments blue-green and canary deploys run beside the stable one.

blue-green: <app>-blue and <app>-green; the Service selects one colour at a time
canary:     <app> (stable) and <app>-canary; the Service selects both, so traffic follows the
            share of replicas
"""

from __future__ import annotations

import copy
import math
from typing import Any

Obj = dict[str, Any]
COLOR_LABEL = "pipeline-bot.dev/color"
TRACK_LABEL = "pipeline-bot.dev/track"
COLORS = ("blue", "green")


def other_color(color: str | None) -> str:
    return "green" if color == "blue" else "blue"


def with_name_and_label(deployment: Obj, name: str, label: str, value: str) -> Obj:
    """A copy of `deployment` named `name`, whose selector and pods also carry label=value."""
    out = copy.deepcopy(deployment)
    out["metadata"]["name"] = name
    out["metadata"].pop("resourceVersion", None)
    out["metadata"].pop("uid", None)
    out["metadata"].setdefault("labels", {})[label] = value
    spec = out["spec"]
    spec.setdefault("selector", {}).setdefault("matchLabels", {})[label] = value
    spec["template"].setdefault("metadata", {}).setdefault("labels", {})[label] = value
    return out


def color_variant(deployment: Obj, app: str, color: str) -> Obj:
    return with_name_and_label(deployment, f"{app}-{color}", COLOR_LABEL, color)


def canary_variant(deployment: Obj, app: str, replicas: int) -> Obj:
    out = with_name_and_label(deployment, f"{app}-canary", TRACK_LABEL, "canary")
    out["spec"]["replicas"] = replicas
    return out


def canary_split(total: int, weight: int) -> tuple[int, int]:
    """(canary, stable) replicas for `weight` percent of `total`; the canary gets at least one
    replica and the stable keeps at least one until promotion."""
    canary = max(1, math.ceil(total * weight / 100))
    if total > 1:
        canary = min(canary, total - 1)
    return canary, max(total - canary, 1)


def selector_of(deployment: Obj) -> dict[str, str]:
    return dict(((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})


def images_of(deployment: Obj) -> set[str]:
    spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    return {str(c.get("image")) for c in spec.get("containers") or []}
