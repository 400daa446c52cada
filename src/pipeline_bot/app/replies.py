"""What the App says in its status comment. Bot text is product: it is all here."""

from __future__ import annotations

from pipeline_bot.core.commands import Command
from pipeline_bot.errors import ConfigError
from pipeline_bot.models import AIReview, DeploymentStatus, DeployResult

_ICON = {"succeeded": "✅", "paused": "⏸️", "failed": "❌", "rolled_back": "↩️", "planned": "📝"}


def _cmd(command: Command | None) -> str:
    if command is None:
        return "the command"
    return f"`/{command.name}{' ' + command.environment if command.environment else ''}`"


def syntax(actor: str, message: str) -> str:
    return f"@{actor}: I could not run that.\n\n{message}"


def refused(actor: str, command: Command, reason: str) -> str:
    return f"🚫 @{actor}: {_cmd(command)} was refused: {reason}."


def failed(actor: str, command: Command | None, message: str) -> str:
    return f"❌ @{actor}: {_cmd(command)} failed: {message}"


def config_error(exc: ConfigError) -> str:
    problems = "\n".join(f"- {p.render(exc.source)}" for p in exc.problems)
    return f"❌ The configuration on the default branch is invalid:\n\n{problems}"


def deploying(actor: str, env: str, app: str, sha: str) -> str:
    return f"🚀 @{actor}: deploying `{app}` at `{sha[:12]}` to **{env}**…"


def head_moved(actor: str, command: Command, accepted: str, current: str) -> str:
    return (
        f"🚫 @{actor}: {_cmd(command)} was not carried out: the pull request's head moved from "
        f"`{accepted[:12]}` (accepted) to `{current[:12]}`. Comment again to deploy the new head."
    )


def resumed(actor: str, command: Command, status: str) -> str:
    return f"@{actor}: {_cmd(command)} had already run (status: {status}); it was not repeated."


def not_repeated(actor: str, command: Command, reason: str) -> str:
    return f"🚫 @{actor}: {_cmd(command)} was not carried out again: {reason}."


def locked(actor: str, env: str, reason: str) -> str:
    return f"🔒 @{actor} locked **{env}**: {reason}. `/unlock {env}` releases it."


def deploy_result(actor: str, command: Command, r: DeployResult) -> str:
    lines = [
        f"{_ICON.get(r.status, '')} @{actor}: {_cmd(command)}: **{r.status}**: {r.message}",
        "",
        f"`{r.app}` → `{r.environment}` (namespace `{r.namespace}`), image `{r.image}`, "
        f"strategy **{r.strategy}**, deploy `{r.deploy_id}`",
    ]
    if r.reasons:
        lines += ["", "Why this strategy: " + "; ".join(r.reasons)]
    if r.steps:
        lines += ["", "| Step | Status | Details |", "|---|---|---|"]
        for step in r.steps:
            message = step.message.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {step.name} | {step.status} | {message} |")
            for d in step.details:
                lines.append(
                    f"| ↳ gate {d.get('metric', '')} | "
                    f"{'pass' if d.get('passed') else 'fail'} | "
                    f"`{str(d.get('query', '')).replace('|', '/')}` = {d.get('value')} "
                    f"(threshold {d.get('threshold')}) |"
                )
    if r.rolled_back:
        lines += ["", f"↩️ Rolled back: {r.rollback_reason}"]
    return "\n".join(lines)


def status_table(statuses: list[DeploymentStatus]) -> str:
    lines = [
        "| Environment | App | Ready | Image | Latest deploy | Lock |",
        "|---|---|---|---|---|---|",
    ]
    for s in statuses:
        ready = ", ".join(f"{w.name} {w.ready}/{w.replicas}" for w in s.workloads) or "-"
        images = ", ".join(sorted({i for w in s.workloads for i in w.images})) or "-"
        latest = f"{s.latest.status} `{(s.latest.commit_sha or '')[:12]}`" if s.latest else "none"
        lock = f"🔒 {s.lock.owner}: {s.lock.reason}" if s.lock else ""
        lines.append(f"| {s.environment} | {s.app} | {ready} | {images} | {latest} | {lock} |")
    return "\n".join(lines)


def investigation(review: AIReview) -> str:
    found = review.investigation
    if found is None:
        return f"\n\nAI investigation not available: {review.error or 'no reason given'}"
    steps = "".join(f"\n- next: {s}" for s in found.next_steps)
    return (
        f"\n\n**AI investigation** (confidence {found.confidence:.2f}): {found.summary}\n\n"
        f"Likely cause: {found.likely_cause}{steps}"
    )
