"""The `pipeline-bot` command line: a front end that translates arguments and renders results."""

from __future__ import annotations

import contextlib
import gc
import json
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipeline_bot import (
    __version__,
    cli_ai,
    cli_app,
    cli_deploy,
    cli_image,
    cli_pipeline,
    cli_plan,
)
from pipeline_bot.errors import ConfigError, PipelineBotError
from pipeline_bot.exit_codes import Exit, for_error
from pipeline_bot.models import SEVERITY_ORDER, AIReview, Analysis

app = typer.Typer(
    name="pipeline-bot",
    help="Take a change from commit to production safely.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # tracebacks with locals could print secrets
    # plain help, as wide as the terminal (up to 120 columns): rich's boxes cut text at 80
    # columns and printed a metavar such as <bool> on every flag
    rich_markup_mode=None,
    context_settings={"max_content_width": 120, "help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(help="Check or describe .github/pipeline-bot.yml.", no_args_is_help=True)
app.add_typer(config_app, name="config")

LEVEL_STYLE = {"low": "green", "medium": "yellow", "high": "dark_orange", "critical": "bold red"}


class OutputFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


class Level(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


def _fail(exc: PipelineBotError) -> NoReturn:
    typer.echo(f"error: {exc.message}", err=True)
    raise typer.Exit(for_error(exc))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pipeline-bot {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Take a change from commit to production safely."""


@app.command()
def analyze(
    repo: Annotated[Path, typer.Option(help="A folder in the git repository to analyse.")] = Path(),
    base: Annotated[
        str | None,
        typer.Option(
            help="Base ref, exclusive: the change is what head did since it forked from base. "
            "Default: merge-base with the default branch, else HEAD~1."
        ),
    ] = None,
    head: Annotated[str, typer.Option(help="Head ref, inclusive.")] = "HEAD",
    config: Annotated[
        Path | None,
        typer.Option(
            help="Configuration file. Default: the repository's .github/pipeline-bot.yml."
        ),
    ] = None,
    environment: Annotated[
        str | None,
        typer.Option(
            help="Environment to fit the strategy to. Default: the last in promotion order."
        ),
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="Output format.")
    ] = OutputFormat.text,
    fail_on: Annotated[
        Level | None, typer.Option(help="Exit 1 when the risk level is this or worse.")
    ] = None,
    prometheus_url: Annotated[
        str | None,
        typer.Option(
            help="Add trend warnings (memory, disk, error rate) from this Prometheus. "
            "Default: $PIPELINE_BOT_PROMETHEUS_URL; none: no warnings."
        ),
    ] = None,
    llm: Annotated[
        bool,
        typer.Option(
            "--llm",
            help="Add an AI review from PIPELINE_BOT_LLM_MODEL (any OpenAI-compatible "
            "endpoint); it can only add caution. No model configured: ai.status off.",
        ),
    ] = False,
) -> None:
    """Analyse a range of commits: risk, findings, affected services and a deploy strategy."""
    from pipeline_bot.settings import get_settings
    from pipeline_bot.tools import build_registry
    from pipeline_bot.wiring import tool_context

    arguments = {
        "repository": str(repo),
        "base": base,
        "head": head,
        "config": str(config) if config else None,
        "environment": environment,
    }
    try:
        ctx = tool_context(
            get_settings(),
            progress=_progress,
            prometheus_url=prometheus_url,
            deploys=False,
            registries=llm,  # the review may offer the model resolve_image; an analysis, none
        )
        # --llm: the same analysis, then the model's review (ai.status off without a model)
        with _collector_paused():
            result = build_registry().call(
                "review_change" if llm else "analyze_changes", arguments, ctx
            )
    except PipelineBotError as exc:
        _fail(exc)
    assert isinstance(result, Analysis)  # noqa: S101 - the registry checks the output model
    _render(result, output)
    if fail_on and SEVERITY_ORDER[result.risk.level] >= SEVERITY_ORDER[fail_on.value]:
        typer.echo(
            f"risk level {result.risk.level} is at or above --fail-on {fail_on.value}", err=True
        )
        raise typer.Exit(Exit.FAILED)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """A large change makes hundreds of thousands of objects that live until the analysis is
    done and form no cycles; the cyclic garbage collector walked them all several times (a
    sixth of the CPU of a 20,000-file analysis, bench/analyze.py). It is off meanwhile."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _progress(message: str) -> None:
    typer.echo(message, err=True)


def _render(result: Analysis, output: OutputFormat) -> None:
    if output is OutputFormat.json:
        exclude = {"ai"} if result.ai is None else None
        sys.stdout.write(result.model_dump_json(indent=2, exclude=exclude) + "\n")
    elif output is OutputFormat.markdown:
        from pipeline_bot.core.report import analysis_markdown

        sys.stdout.write(analysis_markdown(result))
    else:
        # piped output (CI logs) is read in wide windows: do not wrap it at 80 columns
        width = None if sys.stdout.isatty() else 160
        _render_text(_terminal_safe(result), Console(highlight=False, soft_wrap=True, width=width))


def _terminal_safe(result: Analysis) -> Analysis:
    """The analysis with every string one terminal line: a file name or commit message with a
    line break or an escape sequence cannot start a new line (a workflow command in a CI log,
    `::error ...`) or act on the terminal."""
    from pipeline_bot.core.escape import terminal

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return terminal(value)
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return Analysis.model_validate(clean(result.model_dump(mode="json")))


def _render_text(a: Analysis, console: Console) -> None:
    from pipeline_bot.core.report import (
        MAX_FACTORS,
        factor_points,
        location,
        model_summary,
        risk_summary,
        short,
        strategy_plan,
    )

    s, r, st = a.stats, a.risk, a.strategy
    console.print(
        Text.assemble(
            ("pipeline-bot analysis ", "bold"),
            f"{short(a.base)}..{short(a.head)}  ",
            f"{s.commits} commit(s), {s.files} file(s), +{s.additions} -{s.deletions}",
            f", {s.excluded_files} excluded" if s.excluded_files else "",
        )
    )
    console.print(
        Text.assemble(
            "Risk: ",
            (f"{r.level.upper()} {r.score}/100", LEVEL_STYLE[r.level]),
            f"  ({risk_summary(r)})",
        )
    )
    console.print(Text(f"  {model_summary(r)}"))
    shown = [f for f in r.factors if abs(f.points) >= 0.5][:MAX_FACTORS]
    for factor in shown:
        paths = ", ".join(factor.paths[:3]) + (
            f" (+{factor.count - 3} more)" if factor.count > 3 and factor.paths else ""
        )
        console.print(
            Text(
                f"  {factor_points(factor.points):<4} {factor.reason}"
                + (f": {paths}" if paths else "")
            )
        )
    if len(r.factors) > len(shown):
        console.print(
            Text(f"       and {len(r.factors) - len(shown)} smaller factors (--format json)")
        )
    console.print(Text.assemble("Strategy for ", (st.environment, "bold"), ": ", (st.name, "bold")))
    for reason in st.reasons:
        console.print(Text(f"  - {reason}"))
    if st.name != "none":
        console.print(Text(f"  plan: {strategy_plan(st)}"))
    if a.affected_services:
        console.print(Text("Affected services: " + ", ".join(a.affected_services)))
    if a.findings:
        table = Table(
            "severity",
            "where",
            "rule",
            "message",
            title=f"Findings ({len(a.findings)})",
            title_justify="left",
            show_edge=False,
            box=None,
            pad_edge=False,
        )
        for f in a.findings[:40]:
            table.add_row(
                Text(f.severity, LEVEL_STYLE.get(f.severity, "")),
                Text(location(f)),
                Text(f.rule),
                Text(f.message),
            )
        console.print(table)
        if len(a.findings) > 40:
            console.print(Text(f"... and {len(a.findings) - 40} more (use --format json)"))
    else:
        console.print("Findings: none")
    if a.ai is not None:
        _render_ai(a.ai, console)


def _render_ai(ai: AIReview, console: Console) -> None:
    console.print(Text("AI review: ", "bold") + Text(ai.status))
    if ai.status == "fallback":
        console.print(Text(f"  not available: {ai.error}; the rule-based result stands"))
    if ai.summary:
        console.print(Text(f"  {ai.summary}"))
    for risk in ai.risks:
        where = ", ".join(e.file for e in risk.evidence)
        console.print(Text(f"  [{risk.severity}] {risk.title}" + (f" ({where})" if where else "")))
    if ai.strategy:
        console.print(Text(f"  proposed strategy: {ai.strategy.name}: {ai.strategy.reason}"))
    for c in ai.checkpoints:
        console.print(Text(f"  checkpoint: {c.metric} {c.condition} ({c.when})"))
    for r in ai.refused:
        console.print(Text(f"  refused: {r.action}: {r.reason}"))


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of .github/pipeline-bot.yml (for editors and CI checks)."""
    from pipeline_bot.repo_config import config_json_schema

    sys.stdout.write(json.dumps(config_json_schema(), indent=2) + "\n")


@config_app.command("validate")
def config_validate(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="File to check. Default: .github/pipeline-bot.yml of the repository in --repo."
        ),
    ] = None,
    repo: Annotated[Path, typer.Option(help="Repository whose config to check.")] = Path(),
) -> None:
    """Check a configuration file and report every problem with its field and line."""
    from pipeline_bot.repo_config import find_config_file, load_repo_config

    path = file or find_config_file(repo)
    if path is None:
        typer.echo(
            f"error: no .github/pipeline-bot.yml in {repo}; without one, pipeline-bot "
            "uses its defaults (`pipeline-bot config schema` shows the format)",
            err=True,
        )
        raise typer.Exit(Exit.BAD_INPUT)
    try:
        cfg = load_repo_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(problem.render(str(path)), err=True)
        typer.echo(f"{path}: {len(exc.problems)} problem(s)", err=True)
        raise typer.Exit(Exit.BAD_INPUT) from None
    typer.echo(
        f"{path}: valid ({len(cfg.environments)} environment(s), "
        f"{len(cfg.services)} service(s), {len(cfg.risk.rules)} risk rule(s))"
    )


cli_deploy.register(app)
cli_app.register(app)
cli_ai.register(app)
cli_ai.register_audit(app)
cli_plan.register(app)
cli_pipeline.register(app)
cli_image.register(app)


def main() -> None:
    app()
