"""The "pipeline-bot / analysis" check run: created in progress, completed with the analysis."""

from __future__ import annotations

from typing import Any

from pipeline_bot.app.context import CHECK_NAME, EventContext
from pipeline_bot.core import checkrun
from pipeline_bot.core.plan import MAX_PARALLEL_DEFAULT
from pipeline_bot.core.plan_render import plan_markdown
from pipeline_bot.errors import ConfigError, PipelineBotError
from pipeline_bot.models import Analysis
from pipeline_bot.tools.plans import plan_for


def analyse_pull_request(
    ctx: EventContext, *, number: int, base_sha: str, head_sha: str, changed_files: int | None
) -> str:
    """Run the analysis as a check run on `head_sha`; returns the outcome for the delivery log."""
    gh, repo = ctx.gh, ctx.repo
    key = f"check_run_id:{head_sha}"
    check_id = ctx.state.get(key)
    if check_id is None:
        check_id = gh.create_check_run(
            repo,
            {
                "name": CHECK_NAME,
                "head_sha": head_sha,
                "status": "in_progress",
                "external_id": ctx.delivery.id,
                "output": {
                    "title": "Analysing the change",
                    "summary": f"Reading the change of #{number} from GitHub.",
                },
            },
        )
        ctx.save(**{key: check_id})
    try:
        config = ctx.config()
    except ConfigError as exc:
        problems = "\n".join(f"- {p.render(exc.source)}" for p in exc.problems)
        _complete(ctx, check_id, "failure", "The configuration is invalid", problems)
        return "config-error"
    source, truncated = gh.compare(repo, base_sha, head_sha)
    notes = []
    listed = len(source.changes.files)
    if truncated or (changed_files is not None and listed < changed_files):
        notes.append(
            f"This pull request is too large for GitHub's compare API: {listed} of "
            f"{changed_files if changed_files is not None else 'more'} changed files were "
            "analysed. Run `pipeline-bot analyze` in CI (the Action) for the whole change."
        )
    arguments: dict[str, Any] = {"repository": repo, "base": base_sha, "head": head_sha}
    tool = "analyze_changes"
    if config.ai and ctx.services.llm is not None:  # the repository asked for the AI review
        tool = "review_change"
        arguments["pr_body"] = (ctx.payload.get("pull_request") or {}).get("body")
    try:
        result = ctx.services.registry.call(tool, arguments, ctx.tools(config, source))
    except PipelineBotError as exc:
        _complete(ctx, check_id, "failure", "The analysis failed", exc.message)
        return "analysis-error"
    if not isinstance(result, Analysis):  # the registry checked it; this narrows the type
        raise TypeError("expected Analysis")
    found, left_out = checkrun.annotations_for(result.findings)
    if left_out:
        notes.append(
            f"{left_out} more findings were not annotated (GitHub shows the first "
            f"{checkrun.MAX_ANNOTATIONS})."
        )
    output = {"title": checkrun.title(result), "summary": checkrun.summary(result, notes)}
    if len(config.services) > 1:  # the plan `/deploy ENV` would run, before anyone runs it
        plan = plan_for(config, None, MAX_PARALLEL_DEFAULT)
        output["text"] = plan_markdown(plan)[: checkrun.SUMMARY_LIMIT]
    parts = checkrun.batches(found)
    for part in parts[:-1]:
        gh.update_check_run(repo, check_id, {"output": {**output, "annotations": part}})
    ordered = sorted(config.environments, key=lambda e: e.order)
    envs = [e.name for e in ordered]
    # the first environment a promotion of this head would stop before, for the approve button
    approve = next((e.name for e in ordered if e.requires_approval and config.services), None)
    gh.update_check_run(
        repo,
        check_id,
        {
            "status": "completed",
            "conclusion": checkrun.conclusion(result, config.risk.fail_on),
            "output": {**output, "annotations": parts[-1]},
            "actions": checkrun.actions(envs, approve),
        },
    )
    return f"analysed: {result.risk.level} risk, {len(found)} annotations"


def _complete(ctx: EventContext, check_id: int, conclusion: str, title: str, text: str) -> None:
    body: dict[str, Any] = {
        "status": "completed",
        "conclusion": conclusion,
        "output": {"title": title, "summary": text[: checkrun.SUMMARY_LIMIT]},
    }
    ctx.gh.update_check_run(ctx.repo, check_id, body)
