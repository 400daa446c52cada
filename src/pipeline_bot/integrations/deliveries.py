"""The App's durable webhook queue, its installations and its GitHub-side bookkeeping, in SQL.

`accept()` writes a delivery under its X-GitHub-Delivery id before the App answers 2xx; a
redelivery finds the row and is not queued again. Workers `claim_many()` due rows in batches
(no two of one lane; `claim()` takes one), and `finish_many()` them as done, failed or
retry-later, several outcomes in one transaction (`finish()` one). A claim is a lease held by
this store's `owner` until `lease_until`, which the worker renews (`renew()`) while it works:
on PostgreSQL, where several replicas of the App share the queue, a replica that dies loses its
claims when their leases run out and another one takes them (queue_claims.py says how, and how
lanes keep their order). SQLite is served by one process: rows it left `running` go back to
`pending` on start.

SQLite runs in WAL mode with automatic checkpoints off: a checkpoint costs milliseconds, and it
must never run on the server's event loop, so the worker thread calls `checkpoint()` instead. The
log stays bounded: `checkpoint()` truncates it (TRUNCATE) once it is over WAL_LIMIT or a minute
after the last truncation, journal_size_limit trims it whenever it restarts, and when a writer
finds it over the limit while nobody checkpoints (the worker busy with a long deploy), a thread of
the store's own checkpoints it. The database, its WAL and shared memory, the body segments and
their folder are created private to the App's user (0600, 0700); existing ones are made so.
On SQLite a delivery's body goes to an append-only segment file beside the database (mode 0600),
and the row holds where it is: through the WAL every body byte would be written twice, and that
copy was the intake's largest cost. A body is in the OS's cache before its row commits, so both
outlive a killed process; `prune()` deletes segments no row names any more.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from pipeline_bot.errors import IntegrationError
from pipeline_bot.integrations.queue_claims import (
    CLAIM_MANY,
    FINISH_MANY,
    RENEW,
    migrate_postgresql,
    migrate_sqlite,
)
from pipeline_bot.integrations.store import open_engine, reason

STATUSES = ("pending", "running", "done", "failed", "ignored")
SEGMENT_BYTES = 64 * 1024 * 1024
WAL_LIMIT = 16 * 1024 * 1024  # past this the log is truncated, not only checkpointed
TRUNCATE_EVERY = 60.0  # seconds; a passive checkpoint never shrinks the file
_meta = MetaData()
deliveries = Table(
    "app_deliveries",
    _meta,
    Column("id", String(64), primary_key=True),
    Column("event", String(64), nullable=False),
    Column("action", String(64)),
    Column("installation_id", Integer),
    Column("repository", String(256)),
    # the body: here, or (SQLite) `length` bytes at `offset` of a segment file beside the database
    Column("payload", LargeBinary, nullable=False),
    Column("body_segment", String(64)),
    Column("body_offset", Integer),
    Column("body_length", Integer),  # zlib: a ninth of the bytes to write
    Column("status", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("error", Text, nullable=False, default=""),
    Column("state", Text, nullable=False, default="{}"),
    # deliveries in one lane (a pull request, a repository's pushes) are worked one at a time,
    # in order; different lanes in parallel
    Column("lane", String(300), index=True),
    # the claim: who holds it and until when (seconds since the epoch; on PostgreSQL by the
    # database's clock, which every replica shares)
    Column("claimed_by", String(160)),
    Column("lease_until", Float),
)
installations = Table(
    "app_installations",
    _meta,
    Column("id", Integer, primary_key=True),
    Column("account", String(256)),
    Column("repositories", Text, nullable=False, default="[]"),
    Column("status", String(32), nullable=False),
    Column("updated_at", Float, nullable=False),
)
github_deployments = Table(
    "app_github_deployments",
    _meta,
    Column("deploy_id", String(64), primary_key=True),
    Column("repository", String(256), nullable=False, index=True),
    Column("environment", String(128), nullable=False),
    Column("github_id", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
)
status_comments = Table(
    "app_status_comments",
    _meta,
    Column("key", String(300), primary_key=True),  # "owner/name#number"
    Column("comment_id", Integer, nullable=False),
)


@dataclass(frozen=True)
class NewDelivery:
    """A delivery as it arrives at the intake."""

    id: str
    event: str
    action: str | None
    installation_id: int | None
    repository: str | None
    payload: bytes
    handled: bool
    lane: str | None = None


_COLUMNS = [c.name for c in deliveries.c]


@dataclass(frozen=True)
class Outcome:
    """How the work of a claimed delivery ended, for `finish_many`: its new status (`pending`
    to retry it at `retry_at`), the error or outcome to show, and the claim it was worked
    under (`held_by`: set only if that claim still holds it)."""

    id: str
    status: str
    error: str = ""
    retry_at: float | None = None
    held_by: str | None = None


@dataclass(frozen=True)
class Delivery:
    id: str
    event: str
    action: str | None
    installation_id: int | None
    repository: str | None
    status: str
    attempts: int
    received_at: float
    updated_at: float
    error: str
    state: dict[str, Any]
    payload: bytes = b""
    claimed_by: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event,
            "action": self.action,
            "installation_id": self.installation_id,
            "repository": self.repository,
            "status": self.status,
            "attempts": self.attempts,
            "received_at": self.received_at,
            "updated_at": self.updated_at,
            "error": self.error,
        }


def replica_id() -> str:
    """Who holds a claim: this host (a pod's name), this process, and a random part, so a new
    process never passes for one that died."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}:{secrets.token_hex(4)}"


class DeliveryStore:
    def __init__(self, url: str, *, lease_seconds: float = 60.0, owner: str | None = None) -> None:
        path = url.removeprefix("sqlite:///")
        local = url.startswith("sqlite:///") and path != ":memory:"
        if local:
            _private(Path(path))
        # synchronous=NORMAL in WAL mode: a commit is durable across a process kill; the
        # worker thread checkpoints instead of whichever commit crosses the threshold
        self.engine: Engine = open_engine(
            url,
            _meta,
            pragmas=(
                "synchronous=NORMAL",
                "wal_autocheckpoint=0",
                f"journal_size_limit={WAL_LIMIT}",
            ),
        )
        self.sqlite = self.engine.dialect.name == "sqlite"
        self.lease = lease_seconds
        self.owner = owner or replica_id()
        with self._begin() as conn:
            (migrate_sqlite if self.sqlite else migrate_postgresql)(conn)
        self._insert = (postgresql if not self.sqlite else sqlite).insert(deliveries)
        self._raw: Any = None  # the intake writer thread's own DBAPI connection
        self._local = threading.local()  # PostgreSQL: each thread's connection for the queue
        self._queues: list[Any] = []
        self._queues_lock = threading.Lock()
        # SQLite: bodies go to append-only segment files, not through the WAL, where every byte
        # would be written twice (once to the log, once by the checkpoint)
        self.segments: Path | None = Path(f"{path}.payloads") if self.sqlite and local else None
        self._segment: tuple[str, int, int] | None = None  # name, fd, size
        self._wal: Path | None = Path(f"{path}-wal") if self.sqlite and local else None
        self._truncated = time.monotonic()
        self._checkpointing = threading.Lock()
        self._overdue: _Checkpointer | None = None

    def _append(self, payload: bytes) -> tuple[str, int, int]:
        """Write a body to the current segment: (segment, offset, length). The bytes are in the
        OS's cache when this returns, so they outlive a kill of this process."""
        assert self.segments is not None  # noqa: S101 - only called for SQLite files
        if self._segment is None or self._segment[2] > SEGMENT_BYTES:
            if self._segment is not None:
                os.close(self._segment[1])
            self.segments.mkdir(mode=0o700, parents=True, exist_ok=True)
            name = f"{time.time_ns()}-{os.getpid()}.seg"
            fd = os.open(self.segments / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._segment = (name, fd, 0)
        name, fd, size = self._segment
        written = 0
        while written < len(payload):
            written += os.write(fd, payload[written:])
        self._segment = (name, fd, size + len(payload))
        return name, size, len(payload)

    def _read(self, segment: str, offset: int, length: int) -> bytes:
        assert self.segments is not None  # noqa: S101 - rows name segments only on SQLite
        with (self.segments / segment).open("rb") as f:
            f.seek(offset)
            return f.read(length)

    def accept_many(self, items: list[NewDelivery]) -> list[bool]:
        """Store a batch in one transaction (the intake's group commit); for each, False when
        it was stored before. Called from one thread only: it keeps its own connection."""
        if self._raw is None:
            self._raw = self.engine.raw_connection()
        raw = self._raw
        now = time.time()
        try:
            cursor = raw.cursor()
            rows = [tuple(self._values(d, now).values()) for d in items]
            # the common case, all new, costs one statement; a redelivery in the batch makes
            # it count row by row (ON CONFLICT DO NOTHING leaves the stored one untouched)
            cursor.executemany(self._insert_sql(), rows)
            if cursor.rowcount == len(rows):
                fresh = [True] * len(rows)
            else:
                raw.rollback()
                fresh = []
                for row in rows:
                    cursor.execute(self._insert_sql(), row)
                    fresh.append(cursor.rowcount == 1)
            raw.commit()
            self._watch_wal()
        except self.engine.dialect.loaded_dbapi.Error as exc:
            with contextlib.suppress(Exception):
                raw.rollback()
            self._raw = None
            with contextlib.suppress(Exception):
                raw.close()
            raise IntegrationError(
                f"database error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                service="store",
            ) from None
        return fresh

    def accept(self, d: NewDelivery) -> bool:
        """Store one delivery from any thread (the REST API's jobs); False when it exists."""
        now = time.time()
        stmt = self._insert.values(
            id=d.id,
            event=d.event,
            action=d.action,
            installation_id=d.installation_id,
            repository=d.repository,
            payload=d.payload,
            status="pending" if d.handled else "ignored",
            attempts=0,
            next_attempt_at=now,
            received_at=now,
            updated_at=now,
            error="",
            state="{}",
            lane=d.lane,
        ).on_conflict_do_nothing(index_elements=["id"])
        with self._begin() as conn:
            return bool(conn.execute(stmt).rowcount)

    def _values(self, d: NewDelivery, now: float) -> dict[str, Any]:
        """A new row, its columns in table order; the body in a segment file when there is one."""
        segment: tuple[str, int, int] | tuple[None, None, None] = (None, None, None)
        if self.segments is not None:
            try:
                segment = self._append(d.payload)
            except OSError as exc:
                raise IntegrationError(
                    f"cannot write the delivery's body: {exc.strerror}", service="store"
                ) from None
        values = {
            "id": d.id,
            "event": d.event,
            "action": d.action,
            "installation_id": d.installation_id,
            "repository": d.repository,
            "payload": b"" if segment[0] else d.payload,
            "body_segment": segment[0],
            "body_offset": segment[1],
            "body_length": segment[2],
            "status": "pending" if d.handled else "ignored",
            "attempts": 0,
            "next_attempt_at": now,
            "received_at": now,
            "updated_at": now,
            "error": "",
            "state": "{}",
            "lane": d.lane,
            "claimed_by": None,
            "lease_until": None,
        }
        assert list(values) == _COLUMNS  # noqa: S101 - the raw INSERT relies on this order
        return values

    def _mark(self) -> str:
        return "?" if self.sqlite else "%s"

    def _insert_sql(self) -> str:
        columns = ", ".join(_COLUMNS)
        marks = ", ".join([self._mark()] * len(_COLUMNS))
        return (
            f"INSERT INTO {deliveries.name} ({columns}) VALUES ({marks}) "  # noqa: S608 - no input
            "ON CONFLICT (id) DO NOTHING"
        )

    # ------------------------------------------------------------------ work

    def recover(self) -> int:
        """Rows a stopped process left running are pending again; returns how many. SQLite:
        every running row (one process serves the file). PostgreSQL: this store's own claims
        and those whose lease ran out; other replicas' live claims are theirs."""
        release = update(deliveries).where(deliveries.c.status == "running")
        if not self.sqlite:
            release = release.where(
                (deliveries.c.claimed_by == self.owner)
                | (func.coalesce(deliveries.c.lease_until, 0) < _db_now())
            )
        with self._begin() as conn:
            result = conn.execute(
                release.values(
                    status="pending", claimed_by=None, lease_until=None, updated_at=time.time()
                )
            )
            return int(result.rowcount)

    def claim(self, now: float | None = None) -> Delivery | None:
        """The oldest due delivery whose lane is free, now running under a lease this store
        holds, or None: `claim_many(1)`."""
        claimed = self.claim_many(1, now=now)
        return claimed[0] if claimed else None

    def claim_many(self, limit: int, now: float | None = None) -> list[Delivery]:
        """Up to `limit` due deliveries, each the oldest due one of a lane that is free and no
        two of one lane, now running under leases this store holds; oldest first, claimed in
        one transaction (one round trip on PostgreSQL). Due: pending with its next attempt
        come, or running under a lease that ran out. `now`: the time to decide at (tests);
        default the database's clock on PostgreSQL, this machine's on SQLite."""
        if limit < 1:
            return []
        if self.sqlite:
            rows = self._claim_sqlite(time.time() if now is None else now, limit)
        else:
            rows = self._queue_call(CLAIM_MANY, (self.owner, self.lease, limit, now))
            rows.sort(key=lambda r: (r.received_at, r.id))  # oldest first
        claimed = []
        for full in rows:
            delivery = _delivery(full, with_payload=True)
            if full.body_segment:
                try:
                    body = self._read(full.body_segment, full.body_offset, full.body_length)
                except OSError as exc:
                    self.finish(delivery.id, "failed", error=f"its body is gone: {exc.strerror}")
                    continue
                delivery = dataclasses.replace(delivery, payload=body)
            claimed.append(delivery)
        return claimed

    def _queue_call(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """One statement, its own transaction, on this thread's own connection (PostgreSQL):
        claims and finishes are the queue's hot path, and a connection taken from the pool
        and given back costs round trips of its own (isolation level, reset) and several
        times the statement's time in Python."""
        from psycopg.rows import namedtuple_row  # the driver a PostgreSQL URL runs on

        raw = getattr(self._local, "queue", None)
        if raw is None:
            raw = self.engine.raw_connection()
            raw.driver_connection.autocommit = True  # type: ignore[union-attr]
            self._local.queue = raw
            with self._queues_lock:
                self._queues.append(raw)
        try:
            driver: Any = raw.driver_connection
            cursor = driver.cursor(row_factory=namedtuple_row)
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        except self.engine.dialect.loaded_dbapi.Error as exc:
            self._local.queue = None
            with self._queues_lock:
                self._queues.remove(raw)
            with contextlib.suppress(Exception):
                raw.invalidate()
            raise IntegrationError(
                f"database error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                service="store",
            ) from None

    def _claim_sqlite(self, now: float, limit: int) -> list[Any]:
        """One process, several threads: conditional updates only one of them wins, each of
        which checks the lane in the same statement (SQLite runs one writer at a time)."""
        due = ((deliveries.c.status == "pending") & (deliveries.c.next_attempt_at <= now)) | (
            (deliveries.c.status == "running") & (func.coalesce(deliveries.c.lease_until, 0) < now)
        )
        held = (
            select(deliveries.c.lane)
            .where(
                deliveries.c.status == "running",
                deliveries.c.lane.is_not(None),
                func.coalesce(deliveries.c.lease_until, 0) >= now,
            )
            .scalar_subquery()
        )
        won: list[str] = []
        with self._begin() as conn:
            candidates = conn.execute(
                select(deliveries.c.id, deliveries.c.lane)
                .where(due)
                .order_by(deliveries.c.received_at, deliveries.c.id)
                .limit(2 * limit + 20)
            ).all()
            seen: set[str] = set()
            for row in candidates:
                if row.lane is not None and row.lane in seen:
                    continue  # an older due delivery of this lane waits: keep the order
                seen.add(row.lane)
                claim = update(deliveries).where(deliveries.c.id == row.id, due)
                if row.lane is not None:  # one statement: free lane and claim, atomically
                    claim = claim.where(~deliveries.c.lane.in_(held))
                if conn.execute(
                    claim.values(
                        status="running",
                        attempts=deliveries.c.attempts + 1,
                        claimed_by=self.owner,
                        lease_until=now + self.lease,
                        updated_at=now,
                    )
                ).rowcount:
                    won.append(row.id)
                    if len(won) >= limit:
                        break
            if not won:
                return []
            rows = {
                r.id: r for r in conn.execute(select(deliveries).where(deliveries.c.id.in_(won)))
            }
        return [rows[i] for i in won]

    def renew(self, ids: set[str] | list[str]) -> set[str]:
        """Extend the leases of these claims of this store's; returns those it still holds (a
        claim whose lease ran out may have been taken by another replica meanwhile)."""
        if not ids:
            return set()
        if self.sqlite:
            with self._begin() as conn:
                conn.execute(
                    update(deliveries)
                    .where(
                        deliveries.c.id.in_(list(ids)),
                        deliveries.c.claimed_by == self.owner,
                        deliveries.c.status == "running",
                    )
                    .values(lease_until=time.time() + self.lease)
                )
                kept = conn.execute(
                    select(deliveries.c.id).where(
                        deliveries.c.id.in_(list(ids)),
                        deliveries.c.claimed_by == self.owner,
                        deliveries.c.status == "running",
                    )
                )
                return {r.id for r in kept}
        with self._begin() as conn:
            rows = conn.execute(RENEW, {"lease": self.lease, "owner": self.owner, "ids": list(ids)})
            return {r.id for r in rows}

    def finish(
        self,
        delivery_id: str,
        status: str,
        *,
        error: str = "",
        retry_at: float | None = None,
        held_by: str | None = None,
    ) -> bool:
        """Set a delivery's outcome and end its claim. `held_by`: only if that claim still
        holds it (False when it was lost: its lease ran out and another replica took it)."""
        return self.finish_many([Outcome(delivery_id, status, error, retry_at, held_by)])[0]

    def finish_many(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Set several deliveries' outcomes and end their claims in one transaction, one
        durable commit for them all (a worker's group commit); for each, whether it was set.
        An outcome with `held_by` is set only if that claim still holds its delivery: a
        claim that was lost is refused, that row alone."""
        if not outcomes:
            return []
        now = time.time()
        if not self.sqlite:
            params = (
                now,
                [o.id for o in outcomes],
                [o.status for o in outcomes],
                [o.error[:2000] for o in outcomes],
                [o.retry_at for o in outcomes],
                [o.held_by for o in outcomes],
            )
            done = {r.id for r in self._queue_call(FINISH_MANY, params)}
            return [o.id in done for o in outcomes]
        results = []
        with self._begin() as conn:
            for o in outcomes:
                values: dict[str, Any] = {
                    "status": o.status,
                    "error": o.error[:2000],
                    "updated_at": now,
                    "claimed_by": None,
                    "lease_until": None,
                }
                if o.retry_at is not None:
                    values["next_attempt_at"] = o.retry_at
                stmt = update(deliveries).where(deliveries.c.id == o.id)
                if o.held_by is not None:
                    stmt = stmt.where(
                        deliveries.c.claimed_by == o.held_by, deliveries.c.status == "running"
                    )
                results.append(bool(conn.execute(stmt.values(**values)).rowcount))
        return results

    def save_state(self, delivery_id: str, state: dict[str, Any]) -> None:
        """What a handler has done so far, so a retry does not do it twice."""
        with self._begin() as conn:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(state=json.dumps(state), updated_at=time.time())
            )

    def retry(self, delivery_id: str) -> Delivery | None:
        """Queue a failed delivery again; None when there is no such delivery. Its state's
        `retried` goes up by one, so a handler tells a deliberate retry from a re-run after a
        restart (which must not repeat a deploy that failed)."""
        with self._begin() as conn:
            row = conn.execute(
                select(deliveries.c.state).where(
                    deliveries.c.id == delivery_id, deliveries.c.status == "failed"
                )
            ).first()
            if row is not None:
                state = json.loads(row.state or "{}")
                state["retried"] = int(state.get("retried", 0)) + 1
                conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id == delivery_id, deliveries.c.status == "failed")
                    .values(
                        status="pending",
                        next_attempt_at=time.time(),
                        error="",
                        attempts=0,
                        state=json.dumps(state),
                    )
                )
        return self.get(delivery_id)

    def get(self, delivery_id: str) -> Delivery | None:
        with self._begin() as conn:
            row = conn.execute(select(deliveries).where(deliveries.c.id == delivery_id)).first()
            return _delivery(row, with_payload=False) if row else None

    def recent(self, status: str | None = None, *, limit: int = 100) -> list[Delivery]:
        q = select(*[c for c in deliveries.c if c.name != "payload"])
        if status:
            q = q.where(deliveries.c.status == status)
        q = q.order_by(deliveries.c.received_at.desc()).limit(limit)
        with self._begin() as conn:
            return [_delivery(r, with_payload=False) for r in conn.execute(q)]

    def depth(self) -> int:
        with self._begin() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(deliveries)
                    .where(deliveries.c.status.in_(["pending", "running"]))
                ).scalar_one()
            )

    def next_due(self) -> float | None:
        """When the next delivery falls due: a pending one's next attempt, or the end of a
        running one's lease (its holder may be gone)."""
        with self._begin() as conn:
            pending = conn.execute(
                select(func.min(deliveries.c.next_attempt_at)).where(
                    deliveries.c.status == "pending"
                )
            ).scalar()
            leased = conn.execute(
                select(func.min(deliveries.c.lease_until)).where(
                    deliveries.c.status == "running", deliveries.c.claimed_by != self.owner
                )
            ).scalar()
        times = [float(v) for v in (pending, leased) if v is not None]
        return min(times) if times else None

    def prune(self, older_than: float) -> int:
        """Forget done and ignored deliveries received before `older_than` (a timestamp);
        failed ones stay until they are retried or pruned by hand."""
        with self._begin() as conn:
            result = conn.execute(
                deliveries.delete().where(
                    deliveries.c.status.in_(["done", "ignored"]),
                    deliveries.c.received_at < older_than,
                )
            )
            used = {
                s
                for (s,) in conn.execute(select(deliveries.c.body_segment).distinct())
                if s is not None
            }
        if self.segments is not None and self.segments.is_dir():
            current = self._segment[0] if self._segment else None
            for segment in self.segments.glob("*.seg"):
                # a segment no row names and older than the cutoff (a live writer's is new)
                if segment.name not in used and segment.name != current:
                    with contextlib.suppress(OSError):
                        if segment.stat().st_mtime < older_than:
                            segment.unlink()
        return int(result.rowcount)

    def checkpoint(self) -> None:
        """Copy the log into the database (PASSIVE: readers and writers go on); truncate it too
        when it is over WAL_LIMIT or was last truncated TRUNCATE_EVERY seconds ago. TRUNCATE
        waits for readers and holds writers off, but after the passive pass little is left."""
        if not self.sqlite:
            return
        with self._checkpointing, self.engine.connect() as conn:
            conn.execute(text("PRAGMA wal_checkpoint(PASSIVE)"))
            due = time.monotonic() - self._truncated >= TRUNCATE_EVERY
            if due or self._wal_size() > WAL_LIMIT:
                conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
                self._truncated = time.monotonic()

    def _wal_size(self) -> int:
        try:
            return self._wal.stat().st_size if self._wal is not None else 0
        except OSError:
            return 0

    def _watch_wal(self) -> None:
        """After a write: a log over the limit means nobody checkpointed it lately; the store's
        own thread does, off the writer's thread (which may be the event loop)."""
        if self._wal is None or self._wal_size() <= WAL_LIMIT:
            return
        if self._overdue is None:
            self._overdue = _Checkpointer(self)
        self._overdue.wake.set()

    # ------------------------------------------------------------------ App bookkeeping

    def record_installation(
        self, installation_id: int, account: str, repositories: list[str], status: str
    ) -> None:
        dialect = sqlite if self.sqlite else postgresql
        values = {
            "id": installation_id,
            "account": account,
            "repositories": json.dumps(sorted(set(repositories))),
            "status": status,
            "updated_at": time.time(),
        }
        stmt = dialect.insert(installations).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"], set_={k: v for k, v in values.items() if k != "id"}
        )
        with self._begin() as conn:
            conn.execute(stmt)

    def installation(self, installation_id: int) -> dict[str, Any] | None:
        with self._begin() as conn:
            row = conn.execute(
                select(installations).where(installations.c.id == installation_id)
            ).first()
        if row is None:
            return None
        return {
            "id": row.id,
            "account": row.account,
            "repositories": json.loads(row.repositories),
            "status": row.status,
        }

    def installation_for(self, repository: str) -> int | None:
        """The active installation that covers `repository`, from installation events."""
        with self._begin() as conn:
            rows = conn.execute(
                select(installations.c.id, installations.c.repositories).where(
                    installations.c.status == "active"
                )
            ).all()
        for row in rows:
            if repository in json.loads(row.repositories):
                return int(row.id)
        return None

    def remember_github_deployment(
        self, deploy_id: str, repository: str, environment: str, github_id: int
    ) -> None:
        with self._begin() as conn:
            conn.execute(
                github_deployments.insert().values(
                    deploy_id=deploy_id,
                    repository=repository,
                    environment=environment,
                    github_id=github_id,
                    created_at=time.time(),
                )
            )

    def latest_github_deployment(self, repository: str, environment: str) -> int | None:
        with self._begin() as conn:
            value = conn.execute(
                select(github_deployments.c.github_id)
                .where(
                    github_deployments.c.repository == repository,
                    github_deployments.c.environment == environment,
                )
                .order_by(github_deployments.c.created_at.desc())
                .limit(1)
            ).scalar()
        return int(value) if value is not None else None

    def status_comment(self, key: str) -> int | None:
        with self._begin() as conn:
            value = conn.execute(
                select(status_comments.c.comment_id).where(status_comments.c.key == key)
            ).scalar()
        return int(value) if value is not None else None

    def set_status_comment(self, key: str, comment_id: int) -> None:
        dialect = sqlite if self.sqlite else postgresql
        stmt = dialect.insert(status_comments).values(key=key, comment_id=comment_id)
        stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={"comment_id": comment_id})
        with self._begin() as conn:
            conn.execute(stmt)

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        if self._overdue is not None:
            self._overdue.stop()
            self._overdue = None
        if self._segment is not None:
            with contextlib.suppress(OSError):
                os.close(self._segment[1])
            self._segment = None
        if self._raw is not None:
            with contextlib.suppress(Exception):
                self._raw.close()
            self._raw = None
        with self._queues_lock:
            queues, self._queues = self._queues, []
        for raw in queues:
            with contextlib.suppress(Exception):
                raw.close()
        self._local = threading.local()
        self.engine.dispose()

    def _begin(self) -> Any:
        return _Guard(self.engine)


class _Checkpointer:
    """A thread that checkpoints the store when a writer finds the log overdue."""

    def __init__(self, store: DeliveryStore) -> None:
        self.store = store
        self.wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name="pipeline-bot-checkpoint", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            if self._stopping:
                return
            with contextlib.suppress(SQLAlchemyError):  # busy: the next write wakes it again
                self.store.checkpoint()

    def stop(self) -> None:
        self._stopping = True
        self.wake.set()
        self._thread.join(10)


def _private(path: Path) -> None:
    """The database file and its folder, created for the App's user alone, before SQLite
    creates them with the umask's permissions (SQLite gives its -wal and -shm files the
    database's). Existing ones that others may read are made private."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.payloads")):
        with contextlib.suppress(OSError):
            mode = name.stat().st_mode
            if mode & 0o077:
                name.chmod(0o700 if name.is_dir() else 0o600)


class _Guard:
    """engine.begin() that turns database errors into IntegrationError."""

    def __init__(self, engine: Engine) -> None:
        self._cm = engine.begin()

    def __enter__(self) -> Any:
        try:
            return self._cm.__enter__()
        except SQLAlchemyError as exc:
            raise IntegrationError(f"database error: {reason(exc)}", service="store") from None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        try:
            self._cm.__exit__(kind, exc, tb)
        except SQLAlchemyError as err:
            raise IntegrationError(f"database error: {reason(err)}", service="store") from None
        if isinstance(exc, SQLAlchemyError):
            raise IntegrationError(f"database error: {reason(exc)}", service="store") from None


def _delivery(row: Any, *, with_payload: bool) -> Delivery:
    return Delivery(
        id=row.id,
        event=row.event,
        action=row.action,
        installation_id=row.installation_id,
        repository=row.repository,
        status=row.status,
        attempts=row.attempts,
        received_at=row.received_at,
        updated_at=row.updated_at,
        error=row.error,
        state=json.loads(row.state or "{}"),
        payload=bytes(row.payload) if with_payload else b"",
        claimed_by=row.claimed_by,
    )


def _db_now() -> Any:
    """PostgreSQL's clock in seconds since the epoch: leases are read and written by it."""
    return func.extract("epoch", func.clock_timestamp())
