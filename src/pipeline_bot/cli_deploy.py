"""`pipeline-bot deploy | promote | abort | rollback | status`: the deploy engine from a shell."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline_bot.errors import NotARepositoryError, PipelineBotError
from pipeline_bot.exit_codes import Exit, for_error
from pipeline_bot.models import DeploymentStatus, DeployResult


class StrategyChoice(StrEnum):
    auto = "auto"
    rolling = "rolling"
    blue_green = "blue-green"
    canary = "canary"


class DryRun(StrEnum):
    none = "none"
    client = "client"
    server = "server"


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


Env = Annotated[str, typer.Option("--environment", "-e", help="Environment to act on.")]
App = Annotated[
    str | None,
    typer.Option("--app", help="App (Deployment) name. Default: the only service in the config."),
]
Repo = Annotated[Path, typer.Option("--repo", help="Repository with .github/pipeline-bot.yml.")]
Kubeconfig = Annotated[
    str | None, typer.Option(help="kubeconfig file. Default: $KUBECONFIG, then ~/.kube/config.")
]
Context = Annotated[
    str | None, typer.Option(help="kubeconfig context. Default: the environment's kube_context.")
]
Timeout = Annotated[str, typer.Option(help="How long to wait for a rollout: 90s, 5m, 1h.")]
Format = Annotated[OutputFormat, typer.Option("--format", help="Output format.")]
GatesFile = Annotated[
    Path | None,
    typer.Option("--gates", help="YAML file with a list of gates, instead of the config's."),
]
PromUrl = Annotated[
    str | None,
    typer.Option(
        "--prometheus-url",
        help="Gate canaries and blue-green switches on this Prometheus. "
        "Default: $PIPELINE_BOT_PROMETHEUS_URL; none: steps only pause.",
    ),
]


def parse_duration(text: str) -> float:
    from pipeline_bot.core.durations import parse_duration as seconds

    try:
        return seconds(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def metrics_for(url: str | None) -> Any:
    """The Prometheus to gate on: --prometheus-url, else PIPELINE_BOT_PROMETHEUS_URL, else none."""
    from pipeline_bot.settings import get_settings
    from pipeline_bot.wiring import metrics

    try:
        return metrics(get_settings(), url)
    except PipelineBotError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(for_error(exc)) from None


def tool_context(
    kubeconfig: str | None,
    context: str | None,
    prometheus_url: str | None = None,
    *,
    front_end: str = "cli",
) -> Any:
    """The ToolContext of a command (wiring.tool_context, with progress on stderr)."""
    from pipeline_bot.settings import get_settings
    from pipeline_bot.wiring import tool_context as build

    def progress(message: str) -> None:
        typer.echo(f"  {message}", err=True)

    try:
        return build(
            get_settings(),
            progress=progress,
            kubeconfig=kubeconfig,
            context=context,
            prometheus_url=prometheus_url,
            front_end=front_end,
        )
    except PipelineBotError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(for_error(exc)) from None


def _call(tool: str, arguments: dict[str, Any], ctx: Any) -> Any:
    from pipeline_bot.tools import build_registry

    try:
        return build_registry().call(tool, arguments, ctx)
    except PipelineBotError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(for_error(exc)) from None


def _app(app: str | None, repo: Path) -> str:
    """The app a command acts on when the tool cannot tell itself (status, investigate): the
    rule every front end shares (tools.deploy.choose_app)."""
    from pipeline_bot.repo_config import load_repo_config
    from pipeline_bot.tools.deploy import choose_app

    try:
        return choose_app(app, load_repo_config(None, repo_root=repo), str(repo))
    except PipelineBotError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(for_error(exc)) from None


def _gates(path: Path | None) -> list[dict[str, Any]] | None:
    if path is None:
        return None
    from pipeline_bot.repo_config import load_gates_file

    try:
        return [g.model_dump() for g in load_gates_file(path)]
    except PipelineBotError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(for_error(exc)) from None


def _write_metrics() -> None:
    from pipeline_bot.settings import get_settings

    settings = get_settings()
    if settings.metrics_textfile or settings.metrics_pushgateway:
        from pipeline_bot.observability import push, write_textfile

        if settings.metrics_textfile:
            write_textfile(Path(settings.metrics_textfile))
        if settings.metrics_pushgateway:
            push(settings.metrics_pushgateway)


def _report(result: DeployResult, output: str, *, done: tuple[str, ...] = ()) -> None:
    """Print a deploy's result; exit 1 when it failed or was rolled back, unless `done` says
    that status is what was asked (an abort ends rolled back)."""
    _write_metrics()
    if output == "json":
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        typer.echo(
            f"{result.status.upper()}: {result.app} {result.image} -> {result.environment} "
            f"({result.namespace}) with {result.strategy} in {result.seconds:.1f}s"
        )
        for reason in result.reasons:
            typer.echo(f"  why: {reason}")
        for step in result.steps:
            typer.echo(f"  [{step.status}] {step.name}: {step.message}")
        typer.echo(result.message)
        if result.status == "planned":
            import yaml

            sys.stdout.write(yaml.safe_dump_all(result.objects, sort_keys=False))
    if result.status in ("failed", "rolled_back") and result.status not in done:
        raise typer.Exit(Exit.FAILED)


def register(app: typer.Typer) -> None:
    app.add_typer(gates_app, name="gates")
    register_mcp(app)

    @app.command()
    def deploy(
        environment: Env,
        image: Annotated[str, typer.Option(help="Image to deploy (repo:tag or repo@digest).")],
        app_name: App = None,
        manifests: Annotated[
            list[str] | None,
            typer.Option(
                "--manifests",
                help="Manifest file, folder or glob (repeatable). Default: render a "
                "Deployment and a Service.",
            ),
        ] = None,
        strategy: Annotated[
            StrategyChoice, typer.Option(help="auto fits it to the change's risk.")
        ] = StrategyChoice.auto,
        namespace: Annotated[
            str | None, typer.Option(help="Namespace. Default: the environment's.")
        ] = None,
        dry_run: Annotated[
            DryRun, typer.Option("--dry-run", help="client renders only (no cluster needed).")
        ] = DryRun.none,
        timeout: Timeout = "5m",
        replicas: Annotated[
            int | None, typer.Option(help="Replicas. Default: the environment's.")
        ] = None,
        port: Annotated[int, typer.Option(help="Container port (rendered objects).")] = 8080,
        cpu_request: Annotated[str | None, typer.Option(help="e.g. 250m (rendered).")] = None,
        cpu_limit: Annotated[str | None, typer.Option(help="e.g. 1 (rendered).")] = None,
        memory_request: Annotated[str | None, typer.Option(help="e.g. 256Mi (rendered).")] = None,
        memory_limit: Annotated[str | None, typer.Option(help="e.g. 512Mi (rendered).")] = None,
        readiness_path: Annotated[
            str | None, typer.Option(help="HTTP readiness probe path (rendered).")
        ] = None,
        steps: Annotated[str | None, typer.Option(help="Canary weights, e.g. 10,25,50.")] = None,
        pause: Annotated[str | None, typer.Option(help="Pause after each canary step.")] = None,
        no_rollback: Annotated[
            bool, typer.Option("--no-rollback", help="Leave a failed rollout as it is.")
        ] = False,
        supersede: Annotated[
            bool,
            typer.Option(
                "--supersede",
                help="Abort a paused deploy of the app first (otherwise refused, exit 5).",
            ),
        ] = False,
        commit: Annotated[str | None, typer.Option(help="Commit SHA to record.")] = None,
        no_digest: Annotated[
            bool,
            typer.Option(
                "--no-digest",
                help="Deploy the tag as given, not pinned to the digest it names now.",
            ),
        ] = False,
        repo: Repo = Path(),
        kubeconfig: Kubeconfig = None,
        context: Context = None,
        prometheus_url: PromUrl = None,
        gates: GatesFile = None,
        output: Format = OutputFormat.text,
        plan: Annotated[
            bool,
            typer.Option(
                "--plan",
                help="Deploy every service of the config in dependency order (see `plan`); "
                "--image is then the tag each service's image gets.",
            ),
        ] = False,
        max_parallel: Annotated[
            int, typer.Option(min=1, max=32, help="With --plan: services deployed at once.")
        ] = 4,
    ) -> None:
        """Deploy an image, watch the rollout, roll back on failure."""
        try:
            weights = [int(w) for w in steps.split(",")] if steps else None
        except ValueError:
            raise typer.BadParameter(
                f"--steps {steps!r}: expected percentages like 10,25,50"
            ) from None
        config = {
            "replicas": replicas,
            "port": port,
            "gates": _gates(gates),
            "cpu_request": cpu_request,
            "cpu_limit": cpu_limit,
            "memory_request": memory_request,
            "memory_limit": memory_limit,
            "readiness_path": readiness_path,
            "manifests": manifests or [],
            "timeout_seconds": parse_duration(timeout),
            "auto_rollback": not no_rollback,
            "supersede": supersede,
            "dry_run": dry_run.value,
            "canary_steps": weights,
            "commit_sha": commit,
            "pause_seconds": int(parse_duration(pause)) if pause else None,
            "pin_digest": False if no_digest else None,
        }
        arguments = {
            "app_name": app_name,
            "environment": environment,
            "image_tag": image,
            "config": config,
            "strategy": strategy.value,
            "namespace": namespace,
            "repository": str(repo),
        }
        ctx = tool_context(kubeconfig, context, prometheus_url)
        if plan:
            from pipeline_bot.cli_plan import deploy_plan

            return deploy_plan(arguments, ctx, output=output.value, max_parallel=max_parallel)
        result = _call("deploy_application", arguments, ctx)
        from pipeline_bot.cli_ai import after_rollback

        try:
            _report(result, output)
        finally:
            after_rollback(ctx, result, repo, output)

    for verb, tool, doc in (
        ("promote", "promote_deployment", "Promote a paused canary or blue-green deploy."),
        ("abort", "abort_deployment", "Abort a paused canary or blue-green deploy."),
        ("rollback", "rollback_deployment", "Roll back to the last successful deploy."),
    ):
        app.command(name=verb, help=doc)(_app_command(tool))

    @app.command()
    def status(
        environment: Env,
        app_name: App = None,
        repo: Repo = Path(),
        namespace: Annotated[str | None, typer.Option()] = None,
        kubeconfig: Kubeconfig = None,
        context: Context = None,
        output: Format = OutputFormat.text,
        plan: Annotated[
            bool, typer.Option("--plan", help="Every service of the deploy plan, as a table.")
        ] = False,
    ) -> None:
        """What runs for an app in an environment, and its recent deploys."""
        if plan:
            from pipeline_bot.cli_plan import plan_status

            where = {"environment": environment, "repository": str(repo)}
            ctx = tool_context(kubeconfig, context)
            plan_status(_call("get_plan_status", where, ctx), output.value)
            return
        arguments = {
            "app_name": app_name,
            "environment": environment,
            "repository": str(repo),
            "namespace": namespace,
        }
        result = _call("get_deployment_status", arguments, tool_context(kubeconfig, context))
        _status(result, output)


def _app_command(tool: str) -> Any:
    def command(
        environment: Env,
        app_name: App = None,
        repo: Repo = Path(),
        timeout: Timeout = "5m",
        kubeconfig: Kubeconfig = None,
        context: Context = None,
        output: Format = OutputFormat.text,
    ) -> None:
        arguments: dict[str, Any] = {
            "app_name": app_name,
            "environment": environment,
            "repository": str(repo),
        }
        if tool != "abort_deployment":
            arguments["timeout_seconds"] = parse_duration(timeout)
        # an abort that ends rolled back did what was asked
        done = ("rolled_back",) if tool == "abort_deployment" else ()
        _report(_call(tool, arguments, tool_context(kubeconfig, context)), output, done=done)

    return command


def _status(s: DeploymentStatus, output: str) -> None:
    if output == "json":
        sys.stdout.write(s.model_dump_json(indent=2) + "\n")
        return
    typer.echo(
        f"{s.app} in {s.environment} (namespace {s.namespace})"
        + (f", live colour: {s.live_color}" if s.live_color else "")
    )
    if not s.workloads:
        typer.echo("  no Deployments of this app in the cluster")
    for w in s.workloads:
        typer.echo(
            f"  {w.name}: {', '.join(w.images)}  ready {w.ready}/{w.replicas}, "
            f"updated {w.updated}, available {w.available}, revision {w.revision or '-'}"
        )
    if s.lock:
        typer.echo(
            f"  locked by {s.lock.owner} ({s.lock.reason}) until {s.lock.expires_at:%H:%M:%S}Z"
        )
    for r in s.history:
        typer.echo(
            f"  {r.started_at:%Y-%m-%d %H:%M}Z {r.id} {r.status:<11} {r.strategy:<10} "
            f"{r.image}" + (f"  ({r.reason})" if r.reason else "")
        )
        found = (r.state.get("investigation") or {}).get("investigation")
        if found:
            typer.echo(f"    AI investigation: {found.get('likely_cause', '')}")


gates_app = typer.Typer(help="Check metric gates against Prometheus.", no_args_is_help=True)


@gates_app.command("evaluate")
def gates_evaluate(
    environment: Env,
    app_name: App = None,
    prometheus_url: PromUrl = None,
    gates: GatesFile = None,
    config: Annotated[
        Path | None,
        typer.Option(help="Config file. Default: the repository's .github/pipeline-bot.yml."),
    ] = None,
    repo: Repo = Path(),
    canary: Annotated[
        str | None, typer.Option(help="Canary Deployment. Default: <app>-canary.")
    ] = None,
    stable: Annotated[str | None, typer.Option(help="Stable Deployment. Default: <app>.")] = None,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Measure on the gates' schedule "
            "(initial_delay, count x interval) instead of once now.",
        ),
    ] = False,
    output: Format = OutputFormat.text,
) -> None:
    """Measure the gates now and print the verdict with every query, value and threshold.
    Exit 0: pass, 1: fail, 3: inconclusive, 2: bad input (a query Prometheus rejects),
    4: Prometheus cannot be reached."""
    from pipeline_bot.core.canary import DEFAULT_GATES
    from pipeline_bot.deploy.gates import PrometheusGate
    from pipeline_bot.repo_config import load_gates_file, load_repo_config

    app = _app(app_name, repo)
    try:
        cfg = load_repo_config(config, repo_root=repo)
        env = cfg.environment(environment)
        metrics = metrics_for(prometheus_url)
        if metrics is None:
            raise typer.BadParameter("give --prometheus-url (or set PIPELINE_BOT_PROMETHEUS_URL)")
        chosen = load_gates_file(gates) if gates else cfg.gates
        gate = PrometheusGate(metrics, chosen or DEFAULT_GATES)
        # as before a deploy: a query Prometheus rejects, or no Prometheus, is bad input (exit 2)
        # and never an inconclusive verdict
        gate.prepare(env.namespace or env.name, app)
        decision, reason, results = gate.check(
            namespace=env.namespace or env.name,
            app=app,
            canary=canary or f"{app}-canary",
            stable=stable or app,
            last_step=True,
            once=not full,
        )
    except PipelineBotError as exc:
        typer.echo(f"error: {' '.join(exc.message.split())}", err=True)
        raise typer.Exit(for_error(exc)) from None
    _write_metrics()
    passed = decision in ("promote", "continue")
    verdict = "pass" if passed else ("fail" if decision == "rollback" else "inconclusive")
    rows = [m.as_dict() for r in results for m in r.measurements]
    if output == "json":
        import json

        sys.stdout.write(
            json.dumps(
                {
                    "verdict": verdict,
                    "reason": reason,
                    "measurements": rows,
                    "gates": [
                        {"gate": r.gate, "outcome": r.outcome, "reason": r.reason} for r in results
                    ],
                },
                indent=2,
            )
            + "\n"
        )
    else:
        typer.echo(f"{verdict.upper()}: {reason}")
        for m in rows:
            mark = {True: "ok  ", False: "FAIL", None: "??  "}[m["passed"]]  # type: ignore[index]
            typer.echo(f"  [{mark}] {m['metric']}: {m['reason']} (threshold {m['threshold']})")
            typer.echo(f"         {m['query']}")
    if not passed:
        raise typer.Exit(Exit.FAILED if verdict == "fail" else Exit.INCONCLUSIVE)


def register_mcp(app: typer.Typer) -> None:
    @app.command("mcp")
    def mcp_command(
        transport: Annotated[
            str, typer.Option(help="stdio, or http (streamable HTTP at /mcp).")
        ] = "stdio",
        host: Annotated[str, typer.Option(help="HTTP: address to bind.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="HTTP: port.")] = 8765,
        read_only: Annotated[
            bool, typer.Option("--read-only", help="Serve only read-only tools.")
        ] = False,
        tools: Annotated[str | None, typer.Option(help="Serve only these tools (a,b,c).")] = None,
        exclude_tools: Annotated[str | None, typer.Option(help="Leave these tools out.")] = None,
        kubeconfig: Kubeconfig = None,
        context: Context = None,
        prometheus_url: PromUrl = None,
        repo: Annotated[
            Path | None,
            typer.Option(
                "--repo",
                help="The repository whose .github/pipeline-bot.yml is the policy, read once at "
                "start. Default: the working directory's (pass it when the client cannot set one).",
            ),
        ] = None,
        config: Annotated[
            Path | None,
            typer.Option(
                "--config", help="The policy's config file, instead of the repository's own."
            ),
        ] = None,
    ) -> None:
        """Serve the tools over the Model Context Protocol (stdio or streamable HTTP)."""
        import functools

        from pipeline_bot.mcp_server.server import build_server
        from pipeline_bot.mcp_server.trust import TrustedPolicy
        from pipeline_bot.tools import build_registry

        if transport not in ("stdio", "http"):
            raise typer.BadParameter(f"--transport {transport!r}: use stdio or http")
        # collaborators are built on the first tool call: starting has no side effects
        ctx = functools.cache(
            lambda: tool_context(kubeconfig, context, prometheus_url, front_end="mcp")
        )
        try:
            # the policy comes from the command line, never from a tool call's arguments
            where = repo.expanduser() if repo is not None else None
            policy = TrustedPolicy.from_repository(
                where, config.expanduser() if config is not None else None
            )
            if where is not None and not (policy.root or where).joinpath(".git").exists():
                raise NotARepositoryError(
                    f"--repo {str(where)!r} is not in a git repository (no .git in it or above it)",
                    repo=str(where),
                )
            server = build_server(
                build_registry(),
                ctx,
                policy=policy,
                read_only=read_only,
                include=tools.split(",") if tools else None,
                exclude=exclude_tools.split(",") if exclude_tools else None,
            )
            if transport == "stdio":
                server.run("stdio")
                return
            from pipeline_bot.mcp_server.http import serve
            from pipeline_bot.settings import get_settings

            token = get_settings().mcp_token
            serve(server, host=host, port=port, token=token.get_secret_value() if token else None)
        except PipelineBotError as exc:
            # one line, whatever a YAML parser put in the message
            typer.echo(f"error: {' '.join(exc.message.split())}", err=True)
            raise typer.Exit(for_error(exc)) from None
