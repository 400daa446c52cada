"""Analysis -> markdown (job summaries, PR comments, check runs) and plain-text pieces."""

from __future__ import annotations

from pipeline_bot.core.escape import md_cell, md_code
from pipeline_bot.models import AIReview, Analysis, Finding, Risk, Strategy

MARKDOWN_FINDINGS = 50
EMOJI = {"low": "🟢", "medium": "🟡", "high": "🟠", "critical": "🔴"}


def location(f: Finding) -> str:
    if not f.path:
        return "(commit message)" if f.rule.startswith("commit-") else "(cluster)"
    if f.start_line is None:
        return f.path
    if f.end_line is None or f.end_line == f.start_line:
        return f"{f.path}:{f.start_line}"
    return f"{f.path}:{f.start_line}-{f.end_line}"


def duration(seconds: int) -> str:
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def strategy_plan(strategy: Strategy) -> str:
    """One line describing how the rollout proceeds."""
    p = strategy.parameters
    if strategy.name == "canary":
        steps = " → ".join(f"{s.weight}% ({duration(s.pause_seconds)})" for s in p.steps)
        tail = "100% after a person promotes it" if p.manual_promotion else "100%"
        return f"{p.replicas} replicas; canary steps {steps} → {tail}"
    if strategy.name == "blue-green":
        keep = duration(p.keep_previous_seconds or 0)
        switch = "a person promotes" if p.manual_promotion else "checks pass"
        return f"{p.replicas} replicas; switch when {switch}; keep the old colour {keep}"
    if strategy.name == "rolling":
        return f"{p.replicas} replicas; maxSurge {p.max_surge}, maxUnavailable {p.max_unavailable}"
    return "nothing to deploy"


MAX_FACTORS = 8
"""Factors a report lists (the JSON keeps all of them)."""


def short(sha: str) -> str:
    return sha[:12]


def _cell(text: str) -> str:
    return md_cell(text)


def risk_summary(r: Risk) -> str:
    """One sentence: what the score means and where it comes from."""
    m = r.model
    if m is None or m.kind == "rules" or r.probability is None:
        return "score: the sum of the fixed weights of the rules that fired"
    typical = f"; a typical change here: {m.baseline:.0%}" if m.baseline is not None else ""
    return f"{r.probability:.0%} chance that this change is reverted or needs a fix{typical}"


def model_summary(r: Risk) -> str:
    """Which model scored, what it learned from and how well it did on held-out history."""
    m = r.model
    if m is None or m.kind == "rules":
        return "model: none (fixed rule weights)"
    if m.kind == "history":
        what = (
            f"learned from {m.commits:,} commits of this repository ({m.positives:,} went "
            f"wrong) and {m.prior_commits:,} of public repositories"
        )
        held_out = "on this repository's newer history"
    else:
        what = f"the public prior, learned from {m.prior_commits:,} commits of public repositories"
        held_out = "on repositories it never saw"
    auc = f"; AUC {m.cross_validated_auc:.2f} {held_out}" if m.cross_validated_auc else ""
    return f"model: {what}{auc}"


def factor_points(points: float) -> str:
    return f"{points:+.0f}" if abs(points) >= 1 else f"{points:+.1f}"


def analysis_markdown(a: Analysis) -> str:
    r, s = a.risk, a.stats
    lines = [
        f"## {EMOJI[r.level]} pipeline-bot: **{r.level}** risk ({r.score}/100)",
        "",
        f"`{short(a.base)}..{short(a.head)}` · {s.commits} commit{'s' * (s.commits != 1)} · "
        f"{s.files} file{'s' * (s.files != 1)} · +{s.additions} -{s.deletions}"
        + (f" · {s.excluded_files} excluded" if s.excluded_files else ""),
        "",
        "### Why this risk",
        "",
        f"{_cell(risk_summary(r)).capitalize()}; {_cell(model_summary(r))}."
        + (f" History read: {_cell(r.model.history)}." if r.model and r.model.history else ""),
    ]
    shown = [f for f in r.factors if abs(f.points) >= 0.5][:MAX_FACTORS]
    if shown:
        lines += ["", "| Points | Why |", "|---:|---|"]
        for f in shown:
            paths = ", ".join(md_code(p) for p in f.paths[:3])
            more = f" and {f.count - 3} more" if f.paths and f.count > 3 else ""
            detail = _cell(f.reason) + (f": {paths}{more}" if paths else "")
            lines.append(f"| {factor_points(f.points)} | {detail} |")
        if len(r.factors) > len(shown):
            lines.append(f"| | and {len(r.factors) - len(shown)} smaller factors |")
    else:
        lines += ["", "No risk factors: nothing in this change moved the score."]
    st = a.strategy
    lines += ["", f"### Strategy for {md_code(st.environment)}: **{st.name}**", ""]
    lines += [f"- {_cell(reason)}" for reason in st.reasons]
    if st.name != "none":
        lines += ["", f"Plan: {strategy_plan(st)}."]
        if st.parameters.checkpoints:
            lines += [
                "",
                "Checkpoints: "
                + "; ".join(
                    f"{md_code(c.metric)} {_cell(c.condition)} ({_cell(c.when)})"
                    for c in st.parameters.checkpoints
                ),
            ]
    if a.affected_services:
        lines += [
            "",
            "### Affected services",
            "",
            ", ".join(md_code(x) for x in a.affected_services),
        ]
    lines += _findings_markdown(a.findings)
    text = "\n".join(lines) + "\n"
    return text + ai_markdown(a.ai) if a.ai is not None else text


def _findings_markdown(findings: list[Finding]) -> list[str]:
    if not findings:
        return ["", "### Findings", "", "None."]
    out = [
        "",
        f"### Findings ({len(findings)})",
        "",
        "| Severity | Where | Rule | Message |",
        "|---|---|---|---|",
    ]
    for f in findings[:MARKDOWN_FINDINGS]:
        out.append(
            f"| {f.severity} | {md_code(location(f))} | {_cell(f.rule)} | {_cell(f.message)} |"
        )
    if len(findings) > MARKDOWN_FINDINGS:
        out += ["", f"…and {len(findings) - MARKDOWN_FINDINGS} more (see the JSON output)."]
    return out


def ai_markdown(ai: AIReview) -> str:
    """The "AI review" section (job summary, check run, `analyze --format markdown`)."""
    lines = ["", "### AI review", ""]
    if ai.status == "off":
        return "\n".join([*lines, "Off: no model is configured (PIPELINE_BOT_LLM_MODEL)."]) + "\n"
    if ai.status == "fallback":
        lines.append(
            f"Not available: {_cell(ai.error or 'no reason given')}. The rule-based "
            "result above stands unchanged."
        )
    else:
        lines.append(_cell(ai.summary or ""))
        if ai.confidence is not None:
            lines += ["", f"Confidence: {ai.confidence:.2f}"]
        if ai.risks:
            lines += ["", "| Severity | Risk | Evidence |", "|---|---|---|"]
            for r in ai.risks:
                where = ", ".join(
                    md_code(e.file) + (f":{e.start_line}" if e.start_line else "")
                    for e in r.evidence
                )
                lines.append(f"| {r.severity} | {_cell(r.title)} | {where} |")
        if ai.strategy:
            lines += ["", f"Proposed strategy: **{ai.strategy.name}**: {_cell(ai.strategy.reason)}"]
        if ai.checkpoints:
            lines += [
                "",
                "Checkpoints: "
                + "; ".join(
                    f"{md_code(c.metric)} {_cell(c.condition)} ({_cell(c.when)})"
                    for c in ai.checkpoints
                ),
            ]
    if ai.refused:
        lines += ["", "Refused by policy:"]
        lines += [f"- {_cell(r.action)}: {_cell(r.reason)}" for r in ai.refused]
    if ai.tool_calls:
        lines += [
            "",
            "Tools used: "
            + ", ".join(
                f"{c.name} ({'ok' if c.ok else 'refused or failed'})" for c in ai.tool_calls
            ),
        ]
    return "\n".join(lines) + "\n"
