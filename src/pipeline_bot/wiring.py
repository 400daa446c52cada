"""Settings -> the collaborators tools are handed: the one place every front end builds them.

The CLI, the Action, the App and the MCP server all call `tool_context` (or the builders it is
made of), so a setting means the same everywhere: the Action maps its inputs onto Settings first
(action/main.py), the App reads them from its environment. Every SDK is imported inside the
builder that needs it, so a front end that does not use one never pays for importing it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline_bot.errors import ConfigError, ConfigProblem
from pipeline_bot.settings import Settings

if TYPE_CHECKING:
    from pipeline_bot.integrations.ports import (
        AuditPort,
        ClusterPort,
        ImagePort,
        LLMPort,
        MetricsPort,
        RiskPort,
        SourcePort,
        StorePort,
        WorkflowsPort,
    )
    from pipeline_bot.repo_config import Environment, RepoConfig
    from pipeline_bot.tools import ToolContext

Progress = Callable[[str], None]


def cache_dir(settings: Settings) -> Path:
    """PIPELINE_BOT_CACHE_DIR, else $XDG_CACHE_HOME/pipeline-bot, else ~/.cache/pipeline-bot."""
    if settings.cache_dir:
        return Path(settings.cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pipeline-bot"


def risk_port(settings: Settings, progress: Progress | None = None) -> RiskPort | None:
    """The risk model's history reader and fitter; None when the fixed rule weights are asked
    for (PIPELINE_BOT_RISK_MODEL=rules)."""
    if settings.risk_model == "rules":
        return None
    from pipeline_bot.integrations.riskfit import HistoryRisk

    return HistoryRisk(
        cache_dir(settings),
        window=settings.history_commits,
        horizon_days=settings.risk_horizon_days,
        learn=settings.risk_model == "auto",
        refit_every=settings.risk_refit_every,
        git=settings.git_binary,
        progress=progress or (lambda _: None),
    )


def metrics(settings: Settings, url: str | None = None) -> MetricsPort | None:
    """The Prometheus to query: `url`, else PIPELINE_BOT_PROMETHEUS_URL, with its auth settings
    (token, basic auth, headers, TLS); None when there is none."""
    url = url or settings.prometheus_url
    if not url:
        return None
    from pipeline_bot.integrations.prometheus import PrometheusMetrics

    s = settings
    basic = (
        (s.prometheus_username, s.prometheus_password.get_secret_value())
        if s.prometheus_username and s.prometheus_password
        else None
    )
    token = s.prometheus_token.get_secret_value() if s.prometheus_token else None
    headers = _headers(s.prometheus_headers.get_secret_value()) if s.prometheus_headers else None
    return PrometheusMetrics(
        url,
        token=token,
        basic_auth=basic,
        headers=headers,
        verify_tls=not s.prometheus_insecure,
        ca_file=s.prometheus_ca_file,
    )


def _headers(text: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        # the value may hold credentials: say what is wrong, never what it is
        raise ConfigError(
            "PIPELINE_BOT_PROMETHEUS_HEADERS",
            [ConfigProblem("", "must be a JSON object of strings")],
        )
    return {str(k): v for k, v in data.items()}


def cluster(
    settings: Settings, *, kubeconfig: str | None = None, context: str | None = None
) -> Callable[[Environment], ClusterPort]:
    """Connects to an environment's cluster when a tool needs it: a kubeconfig file, else
    PIPELINE_BOT_KUBECONFIG_CONTENT, else the pod's service account (PIPELINE_BOT_IN_CLUSTER),
    else the default kubeconfig; the environment's kube_context unless `context` is given."""

    def connect(env: Environment) -> ClusterPort:
        from pipeline_bot.integrations.kubernetes import KubernetesCluster

        content = settings.kubeconfig_content
        return KubernetesCluster.connect(
            kubeconfig=kubeconfig,
            kubeconfig_content=content.get_secret_value() if content else None,
            context=context or env.kube_context,
            in_cluster=settings.in_cluster,
        )

    return connect


def store(settings: Settings) -> StorePort:
    """The SQL store: PIPELINE_BOT_DATABASE_URL, else a SQLite file of this user's (the App's
    own bookkeeping, and deploy state with PIPELINE_BOT_STORE=sql)."""
    from pipeline_bot.errors import require_extra

    require_extra("the SQL store (PIPELINE_BOT_STORE=sql)", "app", "sqlalchemy")
    from pipeline_bot.integrations.store import SqlStore, default_database_url

    return SqlStore(settings.database_url or default_database_url())


def stores(
    settings: Settings, connect: Callable[[Environment], ClusterPort]
) -> Callable[[RepoConfig], StorePort]:
    """Deploy records and locks in the cluster (PIPELINE_BOT_STORE=cluster, the default): for a
    repository's config, a Lease and the records in each environment's namespace."""
    from pipeline_bot.deploy.cluster_store import ClusterStore

    return lambda config: ClusterStore.for_config(config, connect, keep=settings.history_keep)


def workflows(settings: Settings) -> WorkflowsPort | None:
    if settings.github_token is None:
        return None
    from pipeline_bot.integrations.github import GitHubActions

    return GitHubActions(settings.github_token.get_secret_value(), api_url=settings.github_api_url)


def llm(settings: Settings) -> LLMPort | None:
    """The model for AI reviews and investigations; None without PIPELINE_BOT_LLM_MODEL."""
    if not settings.llm_model:
        return None
    from pipeline_bot.integrations.llm import llm_from_settings

    return llm_from_settings(settings)


def audit(settings: Settings) -> AuditPort:
    """The audit trail: PIPELINE_BOT_AUDIT_LOG, else this user's state folder."""
    from pipeline_bot.integrations.audit import AuditLog

    path = settings.audit_log or str(
        Path.home() / ".local" / "state" / "pipeline-bot" / "audit.jsonl"
    )
    return AuditLog(Path(path).expanduser(), retention_days=settings.audit_retention_days)


def source(settings: Settings) -> SourcePort:
    from pipeline_bot.integrations.git import GitSource

    return GitSource(git=settings.git_binary)


def images(settings: Settings) -> ImagePort:
    """Registries with Docker's saved logins first, then the registry_* settings."""
    from pipeline_bot.integrations.images import (
        Credentials,
        RegistryImages,
        docker_config_credentials,
    )

    password = settings.registry_password
    fallback = (
        Credentials(settings.registry_username, password.get_secret_value())
        if settings.registry_username and password
        else None
    )

    def credentials(registry: str) -> Credentials | None:
        return docker_config_credentials(registry) or fallback

    insecure = frozenset(
        h.strip() for h in (settings.insecure_registries or "").split(",") if h.strip()
    )
    return RegistryImages(credentials, insecure=insecure)


def tool_context(
    settings: Settings,
    *,
    progress: Progress | None = None,
    kubeconfig: str | None = None,
    context: str | None = None,
    prometheus_url: str | None = None,
    deploys: bool = True,
    registries: bool = True,
    front_end: str = "cli",
    actor: str | None = None,
) -> ToolContext:
    """Everything a tool may use, from settings. `deploys=False` leaves out the store and the
    cluster (an analysis needs neither, and opening the store creates its file);
    `registries=False` the image registries (an analysis resolves no image, and does not import
    their HTTP client)."""
    from pipeline_bot.tools import AILimits, ToolContext

    connect = cluster(settings, kubeconfig=kubeconfig, context=context)
    in_sql = deploys and settings.store == "sql"
    return ToolContext(
        source=source(settings),
        cluster=connect if deploys else None,
        store=store(settings) if in_sql else None,
        stores=stores(settings, connect) if deploys and not in_sql else None,
        lock_lease_seconds=settings.lock_lease_seconds,
        progress=progress,
        metrics=metrics(settings, prometheus_url),
        risk=risk_port(settings, progress),
        workflows=workflows(settings),
        llm=llm(settings),
        ai=AILimits(max_steps=settings.llm_max_steps, prompt_tokens=settings.llm_max_prompt_tokens),
        github_repository=settings.github_repository,
        audit=audit(settings),
        images=images(settings) if registries else None,
        pin_digest=settings.pin_digest,
        front_end=front_end,
        actor=actor or default_actor(),
    )


def default_actor() -> str:
    """Who runs this process: GitHub's actor in a workflow, else the login user."""
    actor = os.environ.get("GITHUB_ACTOR")
    if actor:
        return actor
    try:
        import getpass

        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"
