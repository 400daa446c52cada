"""A deploy plan (and how it ran) as text, a Mermaid graph and a markdown table."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline_bot.core.escape import md_cell, md_code, md_text
from pipeline_bot.core.plan import DeployPlan, PlanResult

_MERMAID_CLASSES = {
    "succeeded": "fill:#d4edda,stroke:#1e7e34",
    "planned": "fill:#d4edda,stroke:#1e7e34",
    "failed": "fill:#f8d7da,stroke:#c82333",
    "rolled_back": "fill:#f8d7da,stroke:#c82333",
    "skipped": "fill:#e2e3e5,stroke:#6c757d,stroke-dasharray:4",
    "paused": "fill:#fff3cd,stroke:#d39e00",
    "running": "fill:#cce5ff,stroke:#004085",
}


def plan_text(plan: DeployPlan) -> str:
    where = f" to {plan.environment}" if plan.environment else ""
    lines = [
        f"Deploy plan{where}: {len(plan.services)} service(s) in {len(plan.stages)} stage(s), "
        f"at most {plan.max_parallel} at once"
    ]
    for n, names in enumerate(plan.stages, 1):
        lines.append(f"  stage {n}:")
        for name in names:
            s = plan.service(name)
            after = f"  (after {', '.join(s.depends_on)})" if s.depends_on else ""
            image = f"  image {s.image}" if s.image else ""
            lines.append(f"    {name}{image}{after}")
    return "\n".join(lines)


def plan_mermaid(plan: DeployPlan, status: Mapping[str, str] | None = None) -> str:
    """`graph LR` with an edge from each dependency to its dependent; with `status`, each node
    is coloured by how its deploy went. Node ids are indexes: names may hold '.' and '-'."""
    ids = {s.name: f"s{i}" for i, s in enumerate(plan.services)}
    lines = ["graph LR"]
    for s in plan.services:
        label = s.name + (f" ({status[s.name]})" if status and s.name in status else "")
        lines.append(f'  {ids[s.name]}["{label}"]')
    for s in plan.services:
        lines += [f"  {ids[d]} --> {ids[s.name]}" for d in s.depends_on]
    if status:
        used = sorted({status[n] for n in ids if n in status} & _MERMAID_CLASSES.keys())
        lines += [f"  classDef {k} {_MERMAID_CLASSES[k]}" for k in used]
        lines += [f"  class {ids[n]} {status[n]}" for n in ids if status.get(n) in used]
    return "\n".join(lines)


def plan_markdown(plan: DeployPlan) -> str:
    """The plan before it runs, for a check run: its graph and a table of its stages."""
    where = f" to {md_text(plan.environment)}" if plan.environment else ""
    rows = [
        f"| {n} | {md_code(name)} | {md_cell(', '.join(plan.service(name).depends_on) or '-')} "
        f"| {md_cell(plan.service(name).image or 'its manifests')} |"
        for n, names in enumerate(plan.stages, 1)
        for name in names
    ]
    return "\n".join(
        [
            f"### Deploy plan{where}: {len(plan.services)} services in {len(plan.stages)} stages",
            "",
            "```mermaid",
            plan_mermaid(plan),
            "```",
            "",
            "| stage | service | after | image |",
            "|---|---|---|---|",
            *rows,
        ]
    )


def result_text(result: PlanResult) -> str:
    lines = [f"{result.status.upper()}: {result.message} ({result.seconds:.1f}s)"]
    for o in result.services:
        why = f": {o.message}" if o.message else ""
        deploy = f" [{o.deploy_id}]" if o.deploy_id else ""
        lines.append(f"  stage {o.stage + 1} {o.name:<20} {o.status}{deploy}{why}")
    return "\n".join(lines)


def result_markdown(plan: DeployPlan, result: PlanResult) -> str:
    """A Mermaid graph and a table, for a job summary or a check run."""
    status = {o.name: o.status for o in result.services}
    rows = [
        f"| {o.stage + 1} | {md_code(o.name)} | {o.status.replace('_', ' ')} "
        f"| {md_cell(o.message)} |"
        for o in result.services
    ]
    return "\n".join(
        [
            f"### Deploy plan to {md_text(result.environment)}: {result.status}",
            "",
            md_text(result.message),
            "",
            "```mermaid",
            plan_mermaid(plan, status),
            "```",
            "",
            "| Stage | Service | Status | Message |",
            "| --- | --- | --- | --- |",
            *rows,
        ]
    )
