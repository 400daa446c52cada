"""Deploy records and environment locks in SQL (SQLite by default, PostgreSQL by URL).

A lock is one row per environment, taken with a single atomic upsert that only succeeds when the
row is absent, expired, or already ours: two processes can never both hold it. Taking a lock one
holds already renews it (a new expiry, the same acquired_at).

The cluster keeps the same state where every job sees it (pipeline_bot.deploy.cluster_store);
this store is for one machine or a shared database.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Float, MetaData, String, Text, case, create_engine, event, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from pipeline_bot.errors import IntegrationError, LockedError
from pipeline_bot.models import DeployRecord, EnvironmentLock


class _Base(DeclarativeBase):
    pass


class _Deployment(_Base):
    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    environment: Mapped[str] = mapped_column(String(128), index=True)
    app: Mapped[str] = mapped_column(String(128), index=True)
    namespace: Mapped[str] = mapped_column(String(128))
    image: Mapped[str] = mapped_column(Text)
    commit_sha: Mapped[str | None] = mapped_column(String(64))
    strategy: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32), index=True)
    step: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[float] = mapped_column(Float, index=True)
    finished_at: Mapped[float | None] = mapped_column(Float)
    state: Mapped[str] = mapped_column(Text, default="{}")


class _Lock(_Base):
    __tablename__ = "locks"

    environment: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    acquired_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)


def default_database_url() -> str:
    home = Path.home() / ".local" / "state" / "pipeline-bot"
    return f"sqlite:///{home / 'pipeline-bot.db'}"


def open_engine(url: str, metadata: MetaData, pragmas: tuple[str, ...] = ()) -> Engine:
    """An engine with `metadata`'s tables created; SQLite in WAL mode with a busy timeout and
    any further `pragmas`, its folder made first."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(url)
        if engine.dialect.name == "sqlite":

            def on_connect(conn: Any, _record: Any) -> None:
                cursor = conn.cursor()
                for pragma in ("journal_mode=WAL", "busy_timeout=5000", *pragmas):
                    cursor.execute(f"PRAGMA {pragma}")
                cursor.close()

            event.listen(engine, "connect", on_connect)
        if engine.dialect.name == "postgresql":  # replicas starting together race to create
            with engine.begin() as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(1885954913, 0)"))
                metadata.create_all(conn)
        else:
            metadata.create_all(engine)
    except SQLAlchemyError as exc:
        raise IntegrationError(
            f"cannot open the database: {reason(exc)}", service="store"
        ) from None
    return engine


class SqlStore:
    """StorePort over SQLAlchemy."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = open_engine(url, _Base.metadata)

    # ------------------------------------------------------------------ records

    def save(self, record: DeployRecord) -> None:
        row = _Deployment(
            id=record.id,
            environment=record.environment,
            app=record.app,
            namespace=record.namespace,
            image=record.image,
            commit_sha=record.commit_sha,
            strategy=record.strategy,
            status=record.status,
            step=record.step,
            reason=record.reason,
            actor=record.actor,
            started_at=record.started_at.timestamp(),
            finished_at=record.finished_at.timestamp() if record.finished_at else None,
            state=json.dumps(_state_document(record)),
        )
        with self._session() as s:
            s.merge(row)

    def get(self, deploy_id: str) -> DeployRecord | None:
        with self._session() as s:
            row = s.get(_Deployment, deploy_id)
            return _record(row) if row else None

    def history(
        self,
        environment: str,
        app: str | None = None,
        *,
        limit: int = 20,
        status: str | None = None,
    ) -> list[DeployRecord]:
        """Newest first."""
        q = select(_Deployment).where(_Deployment.environment == environment)
        if app:
            q = q.where(_Deployment.app == app)
        if status:
            q = q.where(_Deployment.status == status)
        q = q.order_by(_Deployment.started_at.desc()).limit(limit)
        with self._session() as s:
            return [_record(r) for r in s.scalars(q)]

    def last_successful(
        self, environment: str, app: str, *, before: str | None = None
    ) -> DeployRecord | None:
        for record in self.history(environment, app, limit=50, status="succeeded"):
            if record.id != before:
                return record
        return None

    # ------------------------------------------------------------------ locks

    def acquire(
        self, environment: str, owner: str, reason: str, *, ttl: float, wait: float = 0.0
    ) -> EnvironmentLock:
        """Take the environment's lock, waiting up to `wait` seconds for its holder."""
        deadline = time.monotonic() + wait
        while True:
            lock = self._try_lock(environment, owner, reason, ttl)
            if lock.owner == owner:
                return lock
            if time.monotonic() >= deadline:
                raise LockedError(
                    environment,
                    lock.owner,
                    lock.reason,
                    lock.expires_at.strftime("%Y-%m-%d %H:%M:%SZ"),
                )
            time.sleep(min(0.25, max(0.01, deadline - time.monotonic())))

    def _try_lock(self, environment: str, owner: str, reason: str, ttl: float) -> EnvironmentLock:
        now = time.time()
        values = {
            "environment": environment,
            "owner": owner,
            "reason": reason,
            "acquired_at": now,
            "expires_at": now + ttl,
        }
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(_Lock).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[_Lock.environment],
            set_={
                **{k: v for k, v in values.items() if k != "environment"},
                # the holder taking its lock again renews it: it has held it since it took it
                "acquired_at": case((_Lock.owner == owner, _Lock.acquired_at), else_=now),
            },
            where=(_Lock.expires_at < now) | (_Lock.owner == owner),
        )
        with self._session() as s:
            s.execute(stmt)
            row = s.get(_Lock, environment)
            assert row is not None  # noqa: S101 - the upsert above guarantees a row
            return _lock(row)

    def release(self, environment: str, owner: str) -> bool:
        with self._session() as s:
            row = s.get(_Lock, environment)
            if row is None or row.owner != owner:
                return False
            s.delete(row)
            return True

    def lock(self, environment: str) -> EnvironmentLock | None:
        with self._session() as s:
            row = s.get(_Lock, environment)
            return _lock(row) if row and row.expires_at > time.time() else None

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()

    def _session(self) -> Any:
        return _Transaction(self.engine)


class _Transaction:
    """A session that commits on success and turns database errors into IntegrationError."""

    def __init__(self, engine: Engine) -> None:
        self.session = Session(engine, expire_on_commit=False)

    def __enter__(self) -> Session:
        return self.session

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        try:
            if kind is None:
                self.session.commit()
            else:
                self.session.rollback()
        except SQLAlchemyError as err:
            raise IntegrationError(f"database error: {reason(err)}", service="store") from None
        finally:
            self.session.close()
        if isinstance(exc, SQLAlchemyError):
            raise IntegrationError(f"database error: {reason(exc)}", service="store") from None


def reason(exc: SQLAlchemyError) -> str:
    """The first line of the driver's own message."""
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def _ts(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=UTC) if value is not None else None


def _record(row: _Deployment) -> DeployRecord:
    return DeployRecord(
        id=row.id,
        environment=row.environment,
        app=row.app,
        namespace=row.namespace,
        image=row.image,
        commit_sha=row.commit_sha,
        strategy=row.strategy,
        status=row.status,
        step=row.step,
        reason=row.reason,
        actor=row.actor,
        started_at=datetime.fromtimestamp(row.started_at, tz=UTC),
        finished_at=_ts(row.finished_at),
        **_from_state_document(json.loads(row.state or "{}")),
    )


_STATE_VERSION = 2  # 1: the strategy's state as keys of one dictionary (read still)


def _state_document(record: DeployRecord) -> dict[str, Any]:
    """The `state` column: the typed strategy state, what was rolled back, and notes."""
    return {
        "version": _STATE_VERSION,
        "strategy_state": (
            record.strategy_state.model_dump(mode="json") if record.strategy_state else None
        ),
        "rollback_of": record.rollback_of,
        "notes": record.state,
    }


def _from_state_document(doc: dict[str, Any]) -> dict[str, Any]:
    if doc.get("version") != _STATE_VERSION:
        return {"state": doc}  # an older row: DeployRecord reads its keys into typed state
    return {
        "strategy_state": doc.get("strategy_state"),
        "rollback_of": doc.get("rollback_of"),
        "state": doc.get("notes") or {},
    }


def _lock(row: _Lock) -> EnvironmentLock:
    return EnvironmentLock(
        environment=row.environment,
        owner=row.owner,
        reason=row.reason,
        acquired_at=datetime.fromtimestamp(row.acquired_at, tz=UTC),
        expires_at=datetime.fromtimestamp(row.expires_at, tz=UTC),
    )
