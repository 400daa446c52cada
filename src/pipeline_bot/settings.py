"""Process settings from the environment (`PIPELINE_BOT_*`), read at call time, never at import."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PIPELINE_BOT_", extra="ignore")

    git_binary: str = Field("git", description="git executable to run.")
    history_commits: int = Field(
        5000,
        ge=0,
        description="Mainline commits of history the risk model learns from and the change's "
        "history metrics are read from; 0 turns history off (the prior alone scores).",
    )
    risk_model: Literal["auto", "prior", "rules"] = Field(
        "auto",
        description="auto: learn from the repository's history pooled with the public prior; "
        "prior: the public prior only; rules: the fixed rule weights (no model).",
    )
    risk_refit_every: int = Field(
        50,
        ge=1,
        le=10_000,
        description="The risk model is refitted about every this many "
        "mainline commits (at commits whose sha is a multiple of it).",
    )
    risk_horizon_days: int = Field(
        30, ge=1, le=365, description="A commit counts as fine only after this many days."
    )
    cache_dir: str | None = Field(
        None,
        description="Where mined history and fitted risk models are kept; default: "
        "$XDG_CACHE_HOME/pipeline-bot (~/.cache/pipeline-bot).",
    )
    store: Literal["cluster", "sql"] = Field(
        "cluster",
        description="Where deploy records and environment locks live: cluster (a Lease and one "
        "Secret per deploy in each environment's namespace, seen by every job and front end) "
        "or sql (PIPELINE_BOT_DATABASE_URL).",
    )
    audit_log: str | None = Field(
        None,
        description="The audit trail of every tool call (JSON lines); default: "
        "~/.local/state/pipeline-bot/audit.jsonl.",
    )
    audit_retention_days: float = Field(
        90, gt=0, description="Audit entries older than this are dropped."
    )
    history_keep: int = Field(
        20, ge=1, le=1000, description="Deploy records kept per app in the cluster store."
    )
    lock_lease_seconds: float = Field(
        60, ge=5, le=3600, description="An environment lock's lease; renewed while a deploy runs."
    )
    database_url: str | None = Field(
        None, description="Deploy records and locks; default: a SQLite file in ~/.local/state."
    )
    kubeconfig_content: SecretStr | None = Field(
        None, description="A whole kubeconfig (from a secret) instead of a file."
    )
    in_cluster: bool = Field(False, description="Use the pod's service account.")
    pin_digest: bool = Field(
        True,
        description="Deploy an image by the digest its tag names now (repo@sha256:...), the tag "
        "kept in an annotation; false deploys the tag as given.",
    )
    registry_username: str | None = Field(
        None,
        description="User for image registries that $DOCKER_CONFIG/config.json has no login for.",
    )
    registry_password: SecretStr | None = Field(
        None, description="Password or token for registry_username (on GHCR: a GITHUB_TOKEN)."
    )
    insecure_registries: str | None = Field(
        None,
        description="Comma-separated registries (host:port) spoken to over plain HTTP; loopback "
        "ones always are.",
    )
    prometheus_url: str | None = Field(None, description="Prometheus query API for gates.")
    prometheus_token: SecretStr | None = Field(None, description="Bearer token for Prometheus.")
    prometheus_username: str | None = None
    prometheus_password: SecretStr | None = None
    prometheus_insecure: bool = Field(False, description="Skip TLS verification.")
    prometheus_ca_file: str | None = Field(None, description="CA bundle to verify Prometheus.")
    prometheus_headers: SecretStr | None = Field(
        None, description='Extra request headers as JSON, e.g. {"X-Scope-OrgID": "team-a"}.'
    )
    github_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("PIPELINE_BOT_GITHUB_TOKEN", "GITHUB_TOKEN"),
        description="Token for GitHub's API (workflow runs).",
    )
    github_repository: str | None = Field(
        None,
        validation_alias=AliasChoices("PIPELINE_BOT_GITHUB_REPOSITORY", "GITHUB_REPOSITORY"),
        description="owner/name of the repository on GitHub.",
    )
    github_api_url: str | None = Field(
        None,
        validation_alias=AliasChoices("PIPELINE_BOT_GITHUB_API_URL", "GITHUB_API_URL"),
        description="GitHub Enterprise Server's API URL; default: github.com's.",
    )
    github_server_url: str = Field(
        "https://github.com",
        validation_alias=AliasChoices("PIPELINE_BOT_GITHUB_SERVER_URL", "GITHUB_SERVER_URL"),
        description="Where the App fetches repositories' history from (GitHub Enterprise "
        "Server: its URL).",
    )
    github_app_id: str | None = Field(
        None,
        validation_alias=AliasChoices("PIPELINE_BOT_GITHUB_APP_ID", "GITHUB_APP_ID"),
        description="The GitHub App's id (`pipeline-bot serve`).",
    )
    github_app_private_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices(
            "PIPELINE_BOT_GITHUB_APP_PRIVATE_KEY", "GITHUB_APP_PRIVATE_KEY"
        ),
        description="The App's private key (PEM text).",
    )
    github_app_private_key_path: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "PIPELINE_BOT_GITHUB_APP_PRIVATE_KEY_PATH", "GITHUB_APP_PRIVATE_KEY_PATH"
        ),
        description="File holding the App's private key.",
    )
    github_webhook_secret: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices(
            "PIPELINE_BOT_GITHUB_WEBHOOK_SECRET", "GITHUB_WEBHOOK_SECRET"
        ),
        description="Secret GitHub signs webhook deliveries with; `serve` refuses to start "
        "without it.",
    )
    app_workers: int = Field(
        4, ge=1, le=64, description="Threads the App works deliveries with (deploys run there)."
    )
    queue_claim_batch: int = Field(
        0,
        ge=0,
        le=64,
        description="Most deliveries the App's worker claims from the queue in one call (their "
        "outcomes are written in one commit too); 0: as many as it has free threads.",
    )
    delivery_retention_days: float = Field(
        14, gt=0, description="The App keeps done and ignored deliveries this long."
    )
    queue_lease_seconds: float = Field(
        60,
        ge=1,
        le=3600,
        description="A claimed delivery's lease, renewed while it is worked; a replica that "
        "dies loses its claims to the others this long after.",
    )
    api_token: SecretStr | None = Field(
        None, description="Bearer token for the App's REST API, /deliveries and /mcp."
    )
    llm_model: str | None = Field(
        None, description="Model for the AI review and investigations; unset: AI off."
    )
    llm_timeout: float = Field(60, gt=0, description="Seconds to wait for one model answer.")
    llm_retries: int = Field(2, ge=0, le=10, description="Retries of a failed model request.")
    llm_max_steps: int = Field(6, ge=1, le=50, description="Model requests per review.")
    llm_max_prompt_tokens: int = Field(
        8000, ge=2000, description="Token budget of the prompt (estimated offline)."
    )
    openai_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("OPENAI_API_KEY", "PIPELINE_BOT_OPENAI_API_KEY"),
        description="Key for the OpenAI-compatible endpoint (local servers need none).",
    )
    openai_base_url: str | None = Field(
        None,
        validation_alias=AliasChoices("OPENAI_BASE_URL", "PIPELINE_BOT_OPENAI_BASE_URL"),
        description="OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 (Ollama).",
    )
    mcp_token: SecretStr | None = Field(
        None, description="Bearer token the MCP HTTP server requires (always, once set)."
    )
    public_url: str | None = Field(
        None,
        description="The App's public address as clients reach it (https://bot.example.com); "
        "its host and origin are allowed on /mcp.",
    )
    mcp_allowed_hosts: str | None = Field(
        None,
        description="Comma-separated Host values the MCP HTTP transport accepts besides "
        "loopback (name: any port; name:port; name:*), e.g. mcp.example.com.",
    )
    mcp_allowed_origins: str | None = Field(
        None,
        description="Comma-separated Origin values accepted besides those of the allowed hosts, "
        "e.g. https://assistant.example.com.",
    )
    mcp_session_idle_timeout: float = Field(
        600, gt=0, description="Seconds an idle MCP HTTP session lives before it is closed."
    )
    mcp_max_sessions: int = Field(
        200, ge=1, description="Open MCP HTTP sessions at most; one more is answered 503."
    )
    http_max_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Largest request body of the REST API and MCP over HTTP (webhooks: 25 MB).",
    )
    http_body_timeout: float = Field(
        10, gt=0, description="Seconds a request's body may take to arrive (then 408)."
    )
    webhook_buffer_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024 * 1024,
        description="Webhook bytes held at once before their signatures are verified; beyond "
        "it a delivery is answered 503 (one is always admitted when none is held).",
    )
    metrics_pushgateway: str | None = Field(
        None, description="Push pipeline-bot's own metrics to this Pushgateway after a command."
    )
    metrics_textfile: str | None = Field(
        None, description="Write pipeline-bot's own metrics here after a command (textfile format)."
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    settings = load_settings()
    register_secrets(settings)
    return settings


def load_settings() -> Settings:
    """The settings from the environment, or one ConfigError naming every variable that is
    wrong and why (never its value: it may be a secret), instead of pydantic's traceback."""
    from pydantic import ValidationError

    from pipeline_bot.errors import ConfigError, ConfigProblem

    try:
        return Settings()
    except ValidationError as exc:
        problems = [
            ConfigProblem(_variable(str(e["loc"][0]) if e["loc"] else ""), e["msg"])
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise ConfigError("environment", problems) from None


def _variable(field: str) -> str:
    """The environment variable a setting is read from (its first name, where it has several)."""
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    choices = getattr(alias, "choices", None)
    if choices:
        return str(choices[0])
    if isinstance(alias, str):
        return alias
    return f"PIPELINE_BOT_{field.upper()}"


def register_secrets(settings: Settings) -> None:
    """Every secret setting, and the credentials inside URL settings, for redaction by value."""
    from pydantic import SecretStr

    from pipeline_bot import redaction

    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            redaction.register(value.get_secret_value())
        elif isinstance(value, str) and "://" in value and "@" in value:
            redaction.register(value)
