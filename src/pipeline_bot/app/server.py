"""The App's FastAPI app factory and `serve`: intake, REST API, /metrics, /mcp, the worker.

`create_app()` takes its collaborators (tests hand in their own); `services_from_settings()`
builds them from the environment, refusing to start without a webhook secret, App id and key.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from pipeline_bot import __version__
from pipeline_bot.app import api
from pipeline_bot.app.context import AppServices
from pipeline_bot.app.intake import IntakeWriter, LoopWriter, WebhookIntake
from pipeline_bot.app.worker import Worker
from pipeline_bot.errors import ConfigError, ConfigProblem, PipelineBotError
from pipeline_bot.mcp_server.http import (
    Guard,
    HttpOptions,
    answer,
    check_token,
    transport_security,
)
from pipeline_bot.repo_config import RepoConfig
from pipeline_bot.settings import Settings

log = logging.getLogger("pipeline_bot.app")


def _required(settings: Settings) -> tuple[str, str, bytes]:
    """App id, private key and webhook secret, or one error naming everything that is missing
    or unusable (a first start should not take one run per setting)."""
    problems: list[str] = []
    secret = settings.github_webhook_secret
    if secret is None or not secret.get_secret_value():
        problems.append(
            "GITHUB_WEBHOOK_SECRET is not set: the App verifies every delivery with it and will "
            "not start without one"
        )
    if not settings.github_app_id:
        problems.append(
            "GITHUB_APP_ID is not set (the App's id, from its settings page or "
            "`pipeline-bot app setup`)"
        )
    key = ""
    if settings.github_app_private_key is not None:
        key = settings.github_app_private_key.get_secret_value()
    elif settings.github_app_private_key_path:
        try:
            key = Path(settings.github_app_private_key_path).expanduser().read_text()
        except OSError as exc:
            problems.append(
                f"cannot read GITHUB_APP_PRIVATE_KEY_PATH ({settings.github_app_private_key_path}):"
                f" {exc.strerror}"
            )
            key = "unread"
    else:
        problems.append("GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_PATH must be set")
    if key and key != "unread" and "PRIVATE KEY-----" not in key:
        problems.append("the App's private key is not a PEM key (-----BEGIN ... PRIVATE KEY-----)")
    token = settings.api_token.get_secret_value() if settings.api_token else None
    try:
        check_token("PIPELINE_BOT_API_TOKEN", token)
    except PipelineBotError as exc:
        problems.append(exc.message)
    if problems:
        raise ConfigError("environment", [ConfigProblem("", p) for p in problems])
    app_id = settings.github_app_id or ""
    webhook_secret = secret.get_secret_value() if secret is not None else ""
    return app_id, key, webhook_secret.encode()


def wiring_context() -> Any:
    """The /mcp tool context: the one every front end builds (wiring), from the settings."""
    from pipeline_bot.settings import get_settings
    from pipeline_bot.wiring import tool_context

    return tool_context(get_settings(), front_end="mcp", actor="the App's /mcp client")


def services_from_settings(settings: Settings) -> tuple[AppServices, bytes]:
    """The App's collaborators from settings, built as every front end builds them (wiring)."""
    from pipeline_bot import wiring
    from pipeline_bot.integrations.deliveries import DeliveryStore
    from pipeline_bot.integrations.github_app import GitHubApp
    from pipeline_bot.integrations.github_holds import SqlHolds
    from pipeline_bot.integrations.mirror import Mirrors
    from pipeline_bot.integrations.store import default_database_url
    from pipeline_bot.tools import AILimits

    app_id, key, secret = _required(settings)
    services = AppServices(
        deliveries=DeliveryStore(
            settings.database_url or default_database_url(),
            lease_seconds=settings.queue_lease_seconds,
        ),
        github=GitHubApp(
            app_id,
            key,
            api_url=settings.github_api_url,
            holds=SqlHolds(settings.database_url or default_database_url()),
        ),
        store=wiring.store(settings),
        stores=(
            wiring.stores(settings, wiring.cluster(settings))
            if settings.store == "cluster"
            else None
        ),
        lock_lease_seconds=settings.lock_lease_seconds,
        cluster=wiring.cluster(settings),
        metrics=wiring.metrics(settings),
        llm=wiring.llm(settings),
        ai=AILimits(settings.llm_max_steps, settings.llm_max_prompt_tokens),
        risk=wiring.risk_port(settings),
        audit=wiring.audit(settings),
        images=wiring.images(settings),
        pin_digest=settings.pin_digest,
        mirrors=Mirrors(
            wiring.cache_dir(settings) / "mirrors", server_url=settings.github_server_url
        ),
    )
    return services, secret


def create_app(
    services: AppServices,
    secret: bytes,
    *,
    api_token: str | None = None,
    repository: str | None = None,
    mcp: bool = True,
    start_worker: bool = True,
    retention_days: float = 14,
    workers: int = 4,
    claim_batch: int = 0,
    http: HttpOptions | None = None,
    webhook_buffer: int = 64 * 1024 * 1024,
) -> Any:
    """The App as an ASGI app. /mcp holds every call to `repository`'s (owner/name, the App's
    installation repository) config on its default branch; without one it refuses them.
    `http`: body limits and the hosts /mcp serves besides loopback (default: none).
    `claim_batch`: the most deliveries the worker claims in one call (0: its free threads)."""
    http = http or HttpOptions()
    mcp_app: Any = None
    mcp_server: Any = None
    if mcp:
        from pipeline_bot.mcp_server.server import build_server
        from pipeline_bot.mcp_server.trust import installation_policy

        def load(repo: str) -> RepoConfig:
            gh = services.github.installation_for(repo)
            return services.configs.load(gh, repo, gh.default_branch(repo))

        mcp_server = build_server(
            services.registry,
            lambda: wiring_context(),
            policy=installation_policy(repository, load),
        )
        security = transport_security(http.allowed_hosts, http.allowed_origins)
        inner = mcp_server.streamable_http_app(  # serves /mcp
            transport_security=security,
            max_request_body_size=http.max_body,
            session_idle_timeout=http.session_idle_timeout,
            max_sessions=http.max_sessions,
        )
        mcp_app = Guard(inner, http, token=api_token, security=security) if api_token else _Refuse()

    worker = Worker(services, retention_days=retention_days, threads=workers, batch=claim_batch)
    writer: IntakeWriter | LoopWriter = (
        LoopWriter(services.deliveries, worker.wake.set)
        if services.deliveries.sqlite
        else IntakeWriter(services.deliveries, worker.wake.set)
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if start_worker:
            worker.start()
        async with contextlib.AsyncExitStack() as stack:
            if mcp_server is not None:
                await stack.enter_async_context(mcp_server.session_manager.run())
            yield
        if start_worker:
            worker.stop()
        writer.stop()
        services.deliveries.close()  # its connections; the next use opens new ones

    app = FastAPI(
        title="pipeline-bot",
        version=__version__,
        description="pipeline-bot's GitHub App: webhooks, deploys and pipelines, and MCP at /mcp.",
        lifespan=lifespan,
    )
    app.state.deliveries = services.deliveries
    app.state.store = services.store
    app.state.worker = worker
    app.state.services = services
    app.state.api_token = api_token
    app.include_router(api.router())
    intake = WebhookIntake(
        secret, writer, body_timeout=http.body_timeout, buffer_bytes=webhook_buffer
    )
    # the token before any body; a body capped in size and time (FastAPI reads it before the
    # route's dependencies, the token check among them)
    guarded = Guard(app, http, token=api_token, fail_closed=True, public=api.public)
    return _Routes(app, guarded, intake, mcp_app)


class _Refuse:
    """/mcp without PIPELINE_BOT_API_TOKEN: closed, and says why."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await answer(send, 401, "set PIPELINE_BOT_API_TOKEN to use /mcp on the App server")


class _Routes:
    """ASGI: /webhooks to the intake, /mcp to the MCP transport (behind the API token), the
    rest (REST API, /health, /metrics, /docs) to FastAPI behind its guard; FastAPI also runs
    the lifespan."""

    def __init__(self, app: FastAPI, guarded: Guard, intake: WebhookIntake, mcp_app: Any) -> None:
        self.app = app
        self.guarded = guarded
        self.intake = intake
        self.mcp_app = mcp_app
        self.state = app.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path == "/webhooks":
            await self.intake(scope, receive, send)
        elif self.mcp_app is not None and (path == "/mcp" or path.startswith("/mcp/")):
            await self.mcp_app(scope, receive, send)
        else:
            await self.guarded(scope, receive, send)


def serve(host: str, port: int, settings: Settings) -> None:
    """Run the App on uvicorn (uvloop and httptools when installed)."""
    import importlib.util

    import uvicorn

    token = settings.api_token.get_secret_value() if settings.api_token else None
    options = HttpOptions.from_settings(settings)
    services, secret = services_from_settings(settings)  # every missing setting named at once
    app = create_app(
        services,
        secret,
        api_token=token,
        repository=settings.github_repository,
        retention_days=settings.delivery_retention_days,
        workers=settings.app_workers,
        claim_batch=settings.queue_claim_batch,
        http=options,
        webhook_buffer=settings.webhook_buffer_bytes,
    )
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    log.info(
        "pipeline-bot %s serving on http://%s:%d (loop %s, http %s)",
        __version__,
        host,
        port,
        loop,
        http,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop=loop,
        http=http,
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # nothing here uses the client's address
    )
