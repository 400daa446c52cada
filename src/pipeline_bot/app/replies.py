"""What the App says in its status comment. Bot text is product: it is all here."""

from __future__ import annotations

from pipeline_bot.core.commands import Command
from pipeline_bot.core.escape import md_cell, md_code, md_text
from pipeline_bot.core.promotion import Approval
from pipeline_bot.errors import ConfigError
from pipeline_bot.models import AIReview, DeploymentStatus, DeployResult

_ICON = {"succeeded": "✅", "paused": "⏸️", "failed": "❌", "rolled_back": "↩️", "planned": "📝"}


def _cmd(command: Command | None) -> str:
    if command is None:
        return "the command"
    return md_code(f"/{command.name}{' ' + command.environment if command.environment else ''}")


def syntax(actor: str, message: str) -> str:
    return f"@{actor}: I could not run that.\n\n{message}"


def refused(actor: str, command: Command, reason: str) -> str:
    return f"🚫 @{actor}: {_cmd(command)} was refused: {md_text(reason)}."


def failed(actor: str, command: Command | None, message: str) -> str:
    return f"❌ @{actor}: {_cmd(command)} failed: {md_text(message)}"


def config_error(exc: ConfigError) -> str:
    problems = "\n".join(f"- {md_text(p.render(exc.source))}" for p in exc.problems)
    return f"❌ The configuration on the default branch is invalid:\n\n{problems}"


def deploying(actor: str, env: str, app: str, sha: str) -> str:
    return f"🚀 @{actor}: deploying {md_code(app)} at `{sha[:12]}` to **{md_text(env)}**…"


def head_moved(actor: str, command: Command, accepted: str, current: str) -> str:
    return (
        f"🚫 @{actor}: {_cmd(command)} was not carried out: the pull request's head moved from "
        f"`{accepted[:12]}` (accepted) to `{current[:12]}`. Comment again to deploy the new head."
    )


def resumed(actor: str, command: Command, status: str) -> str:
    return f"@{actor}: {_cmd(command)} had already run (status: {status}); it was not repeated."


def not_repeated(actor: str, command: Command, reason: str) -> str:
    return f"🚫 @{actor}: {_cmd(command)} was not carried out again: {md_text(reason)}."


def locked(actor: str, env: str, reason: str) -> str:
    return (
        f"🔒 @{actor} locked **{md_text(env)}**: {md_text(reason)}. "
        f"{md_code('/unlock ' + env)} releases it."
    )


def approved(actor: str, a: Approval) -> str:
    return (
        f"✅ @{actor} approved plan {md_code(a.plan_digest)} of `{a.commit_sha[:12]}` into "
        f"**{md_text(a.environment)}**, until "
        f"{a.expires_at:%Y-%m-%d %H:%M} UTC. A promotion of this commit with this plan may now "
        "enter it; another commit, another image or a changed plan needs a new approval."
    )


def deploy_result(actor: str, command: Command, r: DeployResult) -> str:
    lines = [
        f"{_ICON.get(r.status, '')} @{actor}: {_cmd(command)}: **{r.status}**: "
        f"{md_text(r.message)}",
        "",
        f"{md_code(r.app)} → {md_code(r.environment)} (namespace {md_code(r.namespace)}), "
        f"image {md_code(r.image)}, strategy **{r.strategy}**, deploy {md_code(r.deploy_id)}",
    ]
    if r.reasons:
        lines += ["", "Why this strategy: " + "; ".join(md_text(x) for x in r.reasons)]
    if r.steps:
        lines += ["", "| Step | Status | Details |", "|---|---|---|"]
        for step in r.steps:
            lines.append(f"| {md_cell(step.name)} | {step.status} | {md_cell(step.message)} |")
            for d in step.details:
                lines.append(
                    f"| ↳ gate {md_cell(str(d.get('metric', '')))} | "
                    f"{'pass' if d.get('passed') else 'fail'} | "
                    f"{md_code(str(d.get('query', '')).replace('|', '/'))} = "
                    f"{md_cell(str(d.get('value')))} "
                    f"(threshold {md_cell(str(d.get('threshold')))}) |"
                )
    if r.rolled_back:
        lines += ["", f"↩️ Rolled back: {md_text(r.rollback_reason or '')}"]
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
        lock = f"🔒 {md_cell(s.lock.owner)}: {md_cell(s.lock.reason)}" if s.lock else ""
        lines.append(
            f"| {md_cell(s.environment)} | {md_cell(s.app)} | {md_cell(ready)} | "
            f"{md_cell(images)} | {latest} | {lock} |"
        )
    return "\n".join(lines)


def investigation(review: AIReview) -> str:
    found = review.investigation
    if found is None:
        return f"\n\nAI investigation not available: {md_text(review.error or 'no reason given')}"
    steps = "".join(f"\n- next: {md_text(s)}" for s in found.next_steps)
    return (
        f"\n\n**AI investigation** (confidence {found.confidence:.2f}): "
        f"{md_text(found.summary)}\n\nLikely cause: {md_text(found.likely_cause)}{steps}"
    )
