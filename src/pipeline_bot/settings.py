"""Process settings from the environment (`PIPELINE_BOT_*`), read at call time, never at import."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PIPELINE_BOT_", extra="ignore")

    git_binary: str = Field("git", description="git executable to run.")
    history_commits: int = Field(
        1000, ge=0, description="Commits of history read for the change metrics; 0 turns it off."
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
