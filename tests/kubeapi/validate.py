"""What the API server checks of Leases, Secrets and every object's labels, with its own messages.

Two kinds of failure, as on a real server: a body that cannot be decoded into the typed object
(a MicroTime in the wrong format, `data` that is not base64) is 400 BadRequest, raised here; a
decoded object that breaks a validation rule is one cause of a 422 Invalid, returned as a list.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from tests.kubeapi.store import ApiError, Obj, Resource

Cause = dict[str, str]
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
MAX_SECRET_BYTES = 1024 * 1024  # corev1.MaxSecretSize
NAMES_CHECKED = frozenset({"Lease", "Secret", "ConfigMap"})


def decode(res: Resource, obj: Obj) -> Obj:
    """The body as the server decodes it: 400 for what cannot be decoded; a Secret's
    `stringData` folded into `data` (it is write-only) and its type defaulted."""
    if res.kind == "Lease":
        spec = obj.get("spec") or {}
        for key in ("acquireTime", "renewTime"):
            value = spec.get(key)
            if value is not None and not (isinstance(value, str) and MICRO_TIME.match(value)):
                raise _undecodable(
                    res,
                    f'parsing time "{value}" as "2006-01-02T15:04:05.000000Z07:00": '
                    "cannot parse it as a MicroTime",
                )
    if res.kind == "Secret":
        data = dict(obj.get("data") or {})
        for key, value in data.items():
            try:
                base64.b64decode(str(value), validate=True)
            except (binascii.Error, ValueError):
                raise _undecodable(res, f"illegal base64 data in data[{key!r}]") from None
        for key, value in (obj.pop("stringData", None) or {}).items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        if data:
            obj["data"] = data
        obj["type"] = obj.get("type") or "Opaque"
    return obj


def problems(res: Resource, obj: Obj, current: Obj | None) -> list[Cause]:
    """Validation causes for a decoded object (`current`: the stored one, on an update)."""
    meta = obj.get("metadata") or {}
    causes = _label_problems(meta.get("labels") or {})
    name = meta.get("name") or ""
    if res.kind in NAMES_CHECKED and name and (len(name) > 253 or not SUBDOMAIN.match(name)):
        causes.append(
            {
                "field": "metadata.name",
                "message": f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must '
                "consist of lower case alphanumeric characters, '-' or '.', and must start and "
                "end with an alphanumeric character",
            }
        )
    if res.kind == "Lease":
        causes += _lease_problems(obj.get("spec") or {})
    if res.kind == "Secret":
        causes += _secret_problems(obj, current)
    return causes


def _lease_problems(spec: Obj) -> list[Cause]:
    out = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and (not isinstance(duration, int) or duration <= 0):
        out.append(
            {
                "field": "spec.leaseDurationSeconds",
                "message": f"Invalid value: {duration}: must be greater than 0",
            }
        )
    transitions = spec.get("leaseTransitions")
    if transitions is not None and (not isinstance(transitions, int) or transitions < 0):
        out.append(
            {
                "field": "spec.leaseTransitions",
                "message": f"Invalid value: {transitions}: must be greater than or equal to 0",
            }
        )
    return out


def _secret_problems(obj: Obj, current: Obj | None) -> list[Cause]:
    out = []
    data: dict[str, Any] = obj.get("data") or {}
    size = 0
    for key, value in data.items():
        if not SECRET_KEY.match(key):
            out.append(
                {
                    "field": f"data[{key}]",
                    "message": f'Invalid value: "{key}": a valid config key must consist of '
                    "alphanumeric characters, '-', '_' or '.'",
                }
            )
        size += len(base64.b64decode(str(value)))
    if size > MAX_SECRET_BYTES:
        out.append(
            {"field": "data", "message": f"Too long: must have at most {MAX_SECRET_BYTES} bytes"}
        )
    if current is not None and current.get("type") != obj.get("type"):
        out.append(
            {"field": "type", "message": f'Invalid value: "{obj.get("type")}": field is immutable'}
        )
    return out


def _label_problems(labels: dict[str, Any]) -> list[Cause]:
    out = []
    for key, value in labels.items():
        prefix, _, name = str(key).rpartition("/")
        if len(name) > 63 or not LABEL_NAME.match(name) or (prefix and not SUBDOMAIN.match(prefix)):
            out.append(
                {
                    "field": "metadata.labels",
                    "message": f'Invalid value: "{key}": name part must consist of alphanumeric '
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    "character",
                }
            )
        text = str(value)
        if len(text) > 63:
            out.append(
                {
                    "field": "metadata.labels",
                    "message": f'Invalid value: "{text}": must be no more than 63 characters',
                }
            )
        elif not LABEL_VALUE.match(text):
            out.append(
                {
                    "field": "metadata.labels",
                    "message": f'Invalid value: "{text}": a valid label must be an empty string '
                    "or consist of alphanumeric characters, '-', '_' or '.', and must start and "
                    "end with an alphanumeric character",
                }
            )
    return out


def _undecodable(res: Resource, why: str) -> ApiError:
    return ApiError(
        400,
        "BadRequest",
        f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}: {why}',
    )
