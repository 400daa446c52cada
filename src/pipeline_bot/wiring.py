"""Turning Settings into the collaborators tools are handed (one place for every front end)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pipeline_bot.integrations.ports import RiskPort
from pipeline_bot.settings import Settings


def cache_dir(settings: Settings) -> Path:
    """PIPELINE_BOT_CACHE_DIR, else $XDG_CACHE_HOME/pipeline-bot, else ~/.cache/pipeline-bot."""
    if settings.cache_dir:
        return Path(settings.cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pipeline-bot"


def risk_port(settings: Settings, progress: Callable[[str], None] | None = None) -> RiskPort | None:
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
