"""What GitHub's runner hands a container action, and how it wants answers (stdlib only).

Inputs arrive as INPUT_<NAME> (upper case, spaces to underscores, hyphens kept); outputs and the
job summary go to the files GITHUB_OUTPUT and GITHUB_STEP_SUMMARY name; annotations, masks and log
groups are workflow commands on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pipeline_bot.redaction import kubeconfig_parts, redact, register, url_parts

SECRET_INPUTS = ("kubeconfig", "github-token", "openai-api-key", "registry-password")
URL_INPUTS = ("prometheus-url", "openai-base-url")
SECRET_SETTINGS = (
    "PIPELINE_BOT_KUBECONFIG_CONTENT",
    "PIPELINE_BOT_PROMETHEUS_TOKEN",
    "PIPELINE_BOT_PROMETHEUS_PASSWORD",
    "PIPELINE_BOT_PROMETHEUS_HEADERS",
    "PIPELINE_BOT_GITHUB_TOKEN",
    "OPENAI_API_KEY",
    "PIPELINE_BOT_OPENAI_API_KEY",
    "PIPELINE_BOT_API_TOKEN",
    "PIPELINE_BOT_MCP_TOKEN",
    "GITHUB_APP_PRIVATE_KEY",
    "GITHUB_WEBHOOK_SECRET",
)
URL_SETTINGS = ("PIPELINE_BOT_PROMETHEUS_URL", "PIPELINE_BOT_DATABASE_URL", "OPENAI_BASE_URL")
ANNOTATION_CAP = 50  # GitHub shows at most 10 per level per step in the UI; 50 in the API


def input_value(name: str, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get(f"INPUT_{name.replace(' ', '_').upper()}", "").strip()


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str = "", **props: object) -> str:
    if name != "add-mask":
        message = redact(message)
        props = {k: redact(str(v)) if v is not None else None for k, v in props.items()}
    rendered = ",".join(f"{k}={escape_property(str(v))}" for k, v in props.items() if v is not None)
    return f"::{name}{' ' + rendered if rendered else ''}::{escape_data(message)}"


def mask_secrets(env: Mapping[str, str] | None = None, out: TextIO | None = None) -> None:
    """Every secret the step was given is masked before anything else, by value: each secret
    input whole and line by line, each token, key and certificate inside a kubeconfig, the
    credentials of a URL input, and the secret PIPELINE_BOT_* settings. Each is registered for
    the step's own redaction too (summary, outputs, annotations, errors)."""
    env = os.environ if env is None else env
    stream = out or sys.stdout
    found: set[str] = set()
    for name in SECRET_INPUTS:
        value = input_value(name, env)
        found.update({value, *value.splitlines(), *kubeconfig_parts(value)})
    for name in URL_INPUTS:
        found.update(url_parts(input_value(name, env)))
    for key in SECRET_SETTINGS:
        found.update({env.get(key, ""), *kubeconfig_parts(env.get(key, ""))})
    for key in URL_SETTINGS:
        found.update(url_parts(env.get(key, "")))
    for part in sorted(found):
        if len(part.strip()) >= 4:
            print(command("add-mask", part.strip()), file=stream)
    register(*found)


def set_outputs(values: Mapping[str, str], env: Mapping[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    target = env.get("GITHUB_OUTPUT")
    if not target:
        return
    with Path(target).open("a", encoding="utf-8") as f:
        for key, value in values.items():
            delimiter = f"ghadelimiter_{uuid.uuid4()}"
            f.write(f"{key}<<{delimiter}\n{redact(value)}\n{delimiter}\n")


def write_summary(markdown: str, env: Mapping[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    target = env.get("GITHUB_STEP_SUMMARY")
    if target:
        with Path(target).open("a", encoding="utf-8") as f:
            f.write(redact(markdown) + "\n")


@dataclass(frozen=True)
class Annotation:
    level: str  # notice | warning | error
    message: str
    title: str
    file: str | None = None
    line: int | None = None
    end_line: int | None = None


def annotate(annotations: Iterable[Annotation], out: TextIO | None = None) -> int:
    """Print annotations, deduplicated and capped per level; returns how many were left out."""
    stream = out or sys.stdout
    seen: set[tuple[object, ...]] = set()
    counts: dict[str, int] = {}
    left_out = 0
    for a in annotations:
        key = (a.level, a.file, a.line, a.title, a.message)
        if key in seen:
            continue
        seen.add(key)
        counts[a.level] = counts.get(a.level, 0) + 1
        if counts[a.level] > ANNOTATION_CAP:
            left_out += 1
            continue
        print(
            command(
                a.level,
                a.message,
                title=a.title,
                file=a.file,
                line=a.line,
                endLine=a.end_line,
            ),
            file=stream,
        )
    if left_out:
        print(
            command(
                "notice",
                f"{left_out} more findings are in the job summary and the JSON output",
                title="pipeline-bot: annotations capped",
            ),
            file=stream,
        )
    return left_out


@dataclass(frozen=True)
class ChangeRange:
    base: str | None
    head: str
    how: str


ZERO = "0" * 40


def _event_payload(path: str | None) -> dict[str, Any]:
    """The event file GitHub writes (GITHUB_EVENT_PATH): a JSON object; none, no payload."""
    from pipeline_bot.errors import PipelineBotError

    if not path or not Path(path).is_file():
        return {}
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise PipelineBotError(
            f"the event file GITHUB_EVENT_PATH ({path}) is unreadable: {exc}"
        ) from None
    if not isinstance(payload, dict):
        raise PipelineBotError(f"the event file GITHUB_EVENT_PATH ({path}) is not a JSON object")
    return payload


def _text(payload: Any, *keys: str) -> str | None:
    """payload[k1][k2]... as text, or None where the payload has another shape."""
    for key in keys:
        if not isinstance(payload, dict):
            return None
        payload = payload.get(key)
    return str(payload) if isinstance(payload, str | int) and payload != "" else None


def change_range(env: Mapping[str, str]) -> ChangeRange:
    """The commits the event is about: push before..after (a new branch: from where it forked),
    pull_request base..head, deployment's SHA, else GITHUB_SHA against its default base."""
    event_name = env.get("GITHUB_EVENT_NAME", "")
    sha = env.get("GITHUB_SHA", "HEAD") or "HEAD"
    payload = _event_payload(env.get("GITHUB_EVENT_PATH"))
    if event_name == "push":
        before, after = _text(payload, "before") or "", _text(payload, "after") or sha
        if before and before != ZERO:
            return ChangeRange(before, after, f"push {before[:7]}..{after[:7]}")
        return ChangeRange(None, after, f"push of a new branch at {after[:7]}")
    if event_name in ("pull_request", "pull_request_target"):
        base = _text(payload, "pull_request", "base", "sha")
        head = _text(payload, "pull_request", "head", "sha")
        if base and head:
            return ChangeRange(base, head, f"pull request {base[:7]}..{head[:7]}")
    if event_name == "deployment":
        dep_sha = _text(payload, "deployment", "sha")
        if dep_sha:
            return ChangeRange(None, dep_sha, f"deployment of {dep_sha[:7]}")
    return ChangeRange(None, sha, f"{event_name or 'run'} at {sha[:7]}")
