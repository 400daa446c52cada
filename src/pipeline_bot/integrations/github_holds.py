"""GitHub's rate-limit holds shared by every replica of the App, in the App's database.

A replica that meets a limit writes, per installation (and for the App's own JWT requests),
until when GitHub asked it to wait; every replica reads it before it sends (at most once a
second, `github_limits.Backoff`), so a limit one replica met stops the others too, instead of each
spending a request to find out. The upsert keeps the later time when two replicas write at once.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, MetaData, String, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from pipeline_bot.errors import IntegrationError
from pipeline_bot.integrations.store import open_engine, reason

_METADATA = MetaData()
HOLDS = Table(
    "app_github_holds",
    _METADATA,
    Column("key", String(64), primary_key=True),
    Column("until", Float, nullable=False),
)


class SqlHolds:
    """`get(key)` and `hold(key, until)` over one table; SQLite or PostgreSQL."""

    def __init__(self, url: str) -> None:
        self._engine: Engine = open_engine(url, _METADATA)

    def get(self, key: str) -> float:
        try:
            with self._engine.connect() as conn:
                until = conn.execute(select(HOLDS.c.until).where(HOLDS.c.key == key)).scalar()
        except SQLAlchemyError as exc:
            raise IntegrationError(
                f"the shared rate-limit holds could not be read: {reason(exc)}", service="database"
            ) from None
        return float(until or 0.0)

    def hold(self, key: str, until: float) -> None:
        dialect = self._engine.dialect.name
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(HOLDS)
        later = func.greatest if dialect == "postgresql" else func.max
        statement = insert.values(key=key, until=until).on_conflict_do_update(
            index_elements=[HOLDS.c.key],
            set_={"until": later(HOLDS.c.until, insert.excluded.until)},
        )
        try:
            with self._engine.begin() as conn:
                conn.execute(statement)
        except SQLAlchemyError as exc:
            raise IntegrationError(
                f"the shared rate-limit hold could not be written: {reason(exc)}",
                service="database",
            ) from None

    def close(self) -> None:
        self._engine.dispose()
