"""Which delivery a claim takes, decided the same way on SQLite and on PostgreSQL (where replicas
of the App share the queue): a table of queue states and the delivery each must hand out; leases
renewed, lost and recovered; and many claimers on PostgreSQL keeping each lane to one delivery at
a time, in order, each delivery claimed once."""

from __future__ import annotations

import multiprocessing
import threading
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import create_engine, insert, text

from pipeline_bot.integrations.deliveries import (
    DeliveryStore,
    NewDelivery,
    Outcome,
    deliveries,
)

NOW = 1_900_000_000.0  # every row's times are set relative to this claim time


@dataclass(frozen=True)
class Row:
    id: str
    status: str = "pending"
    lane: str | None = None
    due_in: float = -1.0  # next attempt, seconds after NOW
    lease_in: float | None = None  # a running row's lease end, seconds after NOW
    age: int = 0  # received this many seconds before NOW (older first)


CASES: list[tuple[str, list[Row], str | None]] = [
    ("the oldest due delivery first", [Row("new", age=1), Row("old", age=2)], "old"),
    ("a delivery not yet due waits", [Row("later", due_in=30, age=2), Row("now", age=1)], "now"),
    ("nothing due: none", [Row("later", due_in=30)], None),
    ("a claim whose lease ran out is taken", [Row("lost", "running", lease_in=-1)], "lost"),
    ("a claim under a live lease is left alone", [Row("held", "running", lease_in=30)], None),
    (
        "a lane held under a live lease holds its later deliveries",
        [Row("held", "running", "o/r#1", lease_in=30, age=3), Row("next", lane="o/r#1", age=2)],
        None,
    ),
    (
        "other lanes go on meanwhile",
        [
            Row("held", "running", "o/r#1", lease_in=30, age=3),
            Row("next", lane="o/r#1", age=2),
            Row("other", lane="o/r#2", age=1),
        ],
        "other",
    ),
    (
        "a lane's oldest due delivery goes first",
        [Row("second", lane="o/r#1", age=1), Row("first", lane="o/r#1", age=2)],
        "first",
    ),
    (
        "a lane's lost claim is taken before its later deliveries",
        [Row("lost", "running", "o/r#1", lease_in=-1, age=3), Row("next", lane="o/r#1", age=2)],
        "lost",
    ),
    (
        "a retry waiting for its time does not hold its lane (as in one process)",
        [Row("retry", lane="o/r#1", due_in=30, age=3), Row("next", lane="o/r#1", age=2)],
        "next",
    ),
    (
        "deliveries without a lane run side by side",
        [Row("held", "running", lease_in=30, age=2), Row("free", age=1)],
        "free",
    ),
    (
        "done, failed and ignored deliveries are never claimed",
        [Row("a", "done"), Row("b", "failed"), Row("c", "ignored")],
        None,
    ),
]


def _load(store: DeliveryStore, rows: list[Row]) -> None:
    with store.engine.begin() as conn:
        for r in rows:
            conn.execute(
                insert(deliveries).values(
                    id=r.id,
                    event="pull_request",
                    action="opened",
                    installation_id=1,
                    repository="o/r",
                    payload=b"{}",
                    status=r.status,
                    attempts=1 if r.status == "running" else 0,
                    next_attempt_at=NOW + r.due_in,
                    received_at=NOW - r.age,
                    updated_at=NOW - r.age,
                    error="",
                    state="{}",
                    lane=r.lane,
                    claimed_by="replica-gone" if r.status == "running" else None,
                    lease_until=NOW + r.lease_in if r.lease_in is not None else None,
                )
            )


@pytest.mark.parametrize(("case", "rows", "expected"), CASES, ids=[c[0] for c in CASES])
def test_the_claim_decision(database_url, case, rows, expected):
    store = DeliveryStore(database_url, lease_seconds=60, owner="replica-here")
    try:
        _load(store, rows)
        claimed = store.claim(now=NOW)
        assert (claimed.id if claimed else None) == expected, case
        if claimed is not None:
            row = store.get(claimed.id)
            assert (row.status, row.attempts) == ("running", 2 if expected == "lost" else 1)
            assert claimed.claimed_by == "replica-here"
    finally:
        store.close()


def _lease(store: DeliveryStore, delivery_id: str) -> tuple[str | None, float | None]:
    with store.engine.connect() as conn:
        row = conn.execute(
            text("SELECT claimed_by, lease_until FROM app_deliveries WHERE id = :id"),
            {"id": delivery_id},
        ).one()
    return row.claimed_by, row.lease_until


def _new(delivery_id: str, lane: str | None = None) -> NewDelivery:
    return NewDelivery(delivery_id, "pull_request", "opened", 1, "o/r", b"{}", True, lane)


def test_a_holder_renews_its_lease_and_a_lost_claim_is_not_finished_over_the_new_holder(
    database_url,
):
    first = DeliveryStore(database_url, lease_seconds=30, owner="first")
    second = DeliveryStore(database_url, lease_seconds=30, owner="second")
    try:
        first.accept(_new("d1"))
        claimed = first.claim()
        _, until = _lease(first, "d1")
        assert first.renew({"d1"}) == {"d1"}
        assert _lease(first, "d1")[1] >= until
        assert second.renew({"d1"}) == set()  # not its claim
        # the first holder stalls past its lease: the second takes the delivery over
        with first.engine.begin() as conn:
            conn.execute(text("UPDATE app_deliveries SET lease_until = 0 WHERE id = 'd1'"))
        taken = second.claim()
        assert (taken.id, taken.attempts, taken.claimed_by) == ("d1", 2, "second")
        assert first.renew({"d1"}) == set()
        assert not first.finish("d1", "done", held_by=claimed.claimed_by)
        assert first.get("d1").status == "running"
        assert second.finish("d1", "done", held_by=taken.claimed_by)
        assert (first.get("d1").status, _lease(first, "d1")) == ("done", (None, None))
    finally:
        first.close()
        second.close()


def test_recover_releases_this_stores_claims_and_on_a_server_database_no_live_others(
    database_url,
):
    mine = DeliveryStore(database_url, owner="mine")
    other = DeliveryStore(database_url, owner="other")
    try:
        mine.accept_many([_new("a"), _new("b")])
        assert mine.claim().id == "a"
        assert other.claim().id == "b"
        released = mine.recover()
        # SQLite: one process serves the file, every running row was left by it
        assert released == (2 if mine.sqlite else 1)
        assert mine.get("a").status == "pending"
        assert mine.get("b").status == ("pending" if mine.sqlite else "running")
    finally:
        mine.close()
        other.close()


def test_a_table_an_older_version_made_gets_the_lease_columns(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:  # app_deliveries as the version before leases made it
        conn.execute(
            text(
                "CREATE TABLE app_deliveries (id VARCHAR(64) PRIMARY KEY, event VARCHAR(64) NOT "
                "NULL, action VARCHAR(64), installation_id INTEGER, repository VARCHAR(256), "
                "payload BLOB NOT NULL, body_segment VARCHAR(64), body_offset INTEGER, "
                "body_length INTEGER, status VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL, "
                "next_attempt_at FLOAT NOT NULL, received_at FLOAT NOT NULL, updated_at FLOAT NOT "
                "NULL, error TEXT NOT NULL, state TEXT NOT NULL, lane VARCHAR(300))"
            )
        )
        conn.execute(
            text(
                "INSERT INTO app_deliveries VALUES ('old', 'ping', NULL, 1, NULL, X'7B7D', NULL, "
                "NULL, NULL, 'running', 1, 0, 0, 0, '', '{}', NULL)"
            )
        )
    engine.dispose()
    store = DeliveryStore(url, owner="new")
    try:
        assert store.recover() == 1
        assert store.claim().claimed_by == "new"
    finally:
        store.close()


def _claimer(url: str, owner: str, seen: dict[str, Any], lock: threading.Lock) -> None:
    """Claim and finish until told to stop. A lane is in flight from the moment its claim is
    noted until its finish has committed (both under `lock`, so a claim the finish freed is
    noted after it): two claims of one lane at once are both noted, whatever the interleaving."""
    store = DeliveryStore(url, owner=owner)
    try:
        while not seen["stop"].is_set():
            claimed = store.claim()
            if claimed is None:
                continue
            lane = claimed.payload.decode()
            with lock:
                if lane in seen["in_flight"]:
                    seen["overlaps"].append((lane, claimed.id))
                seen["in_flight"].add(lane)
                seen["order"].append(claimed.id)
                seen["claims"][claimed.id] = seen["claims"].get(claimed.id, 0) + 1
            with lock:
                store.finish(claimed.id, "done", held_by=claimed.claimed_by)
                seen["in_flight"].discard(lane)
                if len(seen["claims"]) == seen["total"]:
                    seen["stop"].set()
    finally:
        store.close()


@pytest.mark.integration
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_many_claimers_on_postgresql_keep_each_lane_in_order_and_claim_each_delivery_once(
    database_url,
):
    lanes, per_lane = 12, 15
    seed = DeliveryStore(database_url, owner="seed")
    items = [
        NewDelivery(
            f"{lane:02d}-{n:03d}", "ping", None, 1, "o/r", str(lane).encode(), True, f"o/r#{lane}"
        )
        for n in range(per_lane)
        for lane in range(lanes)
    ]
    for i in range(0, len(items), 20):  # batch after batch: received in this order
        seed.accept_many(items[i : i + 20])
    seed.close()
    seen: dict[str, Any] = {
        "in_flight": set(),
        "order": [],
        "claims": {},
        "overlaps": [],
        "total": len(items),
        "stop": threading.Event(),
    }
    lock = threading.Lock()
    threads = [
        threading.Thread(target=_claimer, args=(database_url, f"r{i}", seen, lock), daemon=True)
        for i in range(6)
    ]
    for t in threads:
        t.start()
    seen["stop"].wait(300)
    seen["stop"].set()
    for t in threads:
        t.join(30)
    assert seen["overlaps"] == []
    assert sorted(seen["claims"]) == sorted(d.id for d in items)
    assert set(seen["claims"].values()) == {1}
    for lane in range(lanes):
        mine = [d for d in seen["order"] if d.startswith(f"{lane:02d}-")]
        assert mine == sorted(mine)


# ---------------------------------------------------------------- claims and finishes in batches

BATCH_CASES: list[tuple[str, list[Row], int, list[str]]] = [
    (
        "a batch takes the oldest due delivery of each lane, never two of one lane",
        [
            Row("a1", lane="o/r#1", age=6),
            Row("a2", lane="o/r#1", age=5),
            Row("b1", lane="o/r#2", age=4),
            Row("a3", lane="o/r#1", age=3),
            Row("b2", lane="o/r#2", age=2),
        ],
        10,
        ["a1", "b1"],
    ),
    (
        "deliveries without a lane all go in one batch",
        [Row("x", age=3), Row("y", age=2), Row("z", age=1)],
        10,
        ["x", "y", "z"],
    ),
    (
        "the limit keeps the oldest",
        [Row("c", lane="o/r#3", age=1), Row("a", lane="o/r#1", age=3), Row("b", age=2)],
        2,
        ["a", "b"],
    ),
    (
        "a held lane gives nothing, the others go on",
        [
            Row("held", "running", "o/r#1", lease_in=30, age=4),
            Row("next", lane="o/r#1", age=3),
            Row("other", lane="o/r#2", age=2),
        ],
        10,
        ["other"],
    ),
    (
        "a lane's lost claim comes back before its later deliveries",
        [
            Row("lost", "running", "o/r#1", lease_in=-1, age=4),
            Row("next", lane="o/r#1", age=3),
            Row("free", age=2),
        ],
        10,
        ["lost", "free"],
    ),
    (
        "a retry waiting for its time neither goes nor holds its lane",
        [Row("retry", lane="o/r#1", due_in=30, age=3), Row("next", lane="o/r#1", age=2)],
        10,
        ["next"],
    ),
    (
        "a batch of one is the one-at-a-time claim",
        [Row("second", lane="o/r#1", age=1), Row("first", lane="o/r#2", age=2)],
        1,
        ["first"],
    ),
    (
        "nothing due: an empty batch",
        [Row("later", due_in=30), Row("done", "done"), Row("held", "running", lease_in=30)],
        10,
        [],
    ),
]


@pytest.mark.parametrize(
    ("case", "rows", "limit", "expected"), BATCH_CASES, ids=[c[0] for c in BATCH_CASES]
)
def test_the_batch_claim_decision(database_url, case, rows, limit, expected):
    store = DeliveryStore(database_url, lease_seconds=60, owner="replica-here")
    try:
        _load(store, rows)
        claimed = store.claim_many(limit, now=NOW)
        assert [d.id for d in claimed] == expected, case  # oldest first
        for d in claimed:
            assert d.claimed_by == "replica-here"
            assert d.payload == b"{}"
            assert store.get(d.id).status == "running"
            assert _lease(store, d.id) == ("replica-here", NOW + 60)
        lanes = {r.id: r.lane for r in rows}
        held = {lanes[d.id] for d in claimed} - {None}
        again = store.claim_many(10, now=NOW + 1)
        assert not held & {lanes[d.id] for d in again}, case  # held lanes give nothing more
    finally:
        store.close()


def test_a_batch_finish_refuses_only_the_rows_whose_lease_was_lost(database_url):
    first = DeliveryStore(database_url, lease_seconds=30, owner="first")
    second = DeliveryStore(database_url, lease_seconds=30, owner="second")
    try:
        first.accept_many([_new("ok"), _new("retry"), _new("fail"), _new("lost")])
        claimed = {d.id: d for d in first.claim_many(10)}
        assert sorted(claimed) == ["fail", "lost", "ok", "retry"]
        # the first holder stalls past the lease of one of them: the second takes it over
        with first.engine.begin() as conn:
            conn.execute(text("UPDATE app_deliveries SET lease_until = 0 WHERE id = 'lost'"))
        taken = second.claim_many(10)
        assert [(d.id, d.claimed_by) for d in taken] == [("lost", "second")]
        results = first.finish_many(
            [
                Outcome("ok", "done", error="fine", held_by=claimed["ok"].claimed_by),
                Outcome("retry", "pending", "502", retry_at=NOW, held_by="first"),
                Outcome("fail", "failed", error="x" * 3000, held_by="first"),
                Outcome("lost", "done", error="too late", held_by="first"),
            ]
        )
        assert results == [True, True, True, False]
        rows = {d.id: d for d in first.recent()}
        assert (rows["ok"].status, rows["ok"].error) == ("done", "fine")
        assert (rows["retry"].status, rows["retry"].error) == ("pending", "502")
        assert (rows["fail"].status, len(rows["fail"].error)) == ("failed", 2000)
        assert (rows["lost"].status, rows["lost"].error) == ("running", "")
        assert _lease(first, "lost")[0] == "second"
        for delivery_id in ("ok", "retry", "fail"):
            assert _lease(first, delivery_id) == (None, None)
        with first.engine.connect() as conn:
            due = conn.execute(
                text("SELECT next_attempt_at FROM app_deliveries WHERE id = 'retry'")
            ).scalar_one()
        assert due == NOW
        assert second.finish_many([Outcome("lost", "done", held_by="second")]) == [True]
        assert first.get("lost").status == "done"
        assert first.finish_many([]) == []
    finally:
        first.close()
        second.close()


def _batch_claimer(url: str, owner: str, shared: dict[str, Any]) -> None:
    """Claim batches and finish each batch together until every delivery was claimed. As in
    `_claimer`, a lane is in flight from its claim's note until its finish has committed (the
    finish under the shared lock), so two claims of one lane at once are both noted."""
    lock, in_flight, claims = shared["lock"], shared["in_flight"], shared["claims"]
    following = shared["following"]
    store = DeliveryStore(url, owner=owner)
    try:
        while shared["claimed"].value < len(claims):
            batch = store.claim_many(shared["batch"])
            with lock:
                for d in batch:
                    lane, n = (int(part) for part in d.id.split("-"))
                    if in_flight[lane]:
                        shared["overlaps"].value += 1
                    in_flight[lane] = 1
                    if following[lane] != n:  # oldest first: the lane's next one, none skipped
                        shared["disorder"].value += 1
                    following[lane] = n + 1
                    claims[lane * shared["per_lane"] + n] += 1
                    shared["claimed"].value += 1
            if not batch:
                continue
            with lock:
                store.finish_many([Outcome(d.id, "done", held_by=d.claimed_by) for d in batch])
                for d in batch:
                    in_flight[int(d.id.split("-")[0])] = 0
    finally:
        store.close()


@pytest.mark.integration
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_batch_claimers_in_several_processes_claim_each_delivery_once_lane_by_lane_in_order(
    database_url,
):
    lanes, per_lane, processes = 16, 12, 4
    seed = DeliveryStore(database_url, owner="seed")
    items = [
        NewDelivery(f"{lane:02d}-{n:03d}", "ping", None, 1, "o/r", b"{}", True, f"o/r#{lane}")
        for n in range(per_lane)
        for lane in range(lanes)
    ]
    items += [  # and deliveries of no lane, which a batch may take side by side
        NewDelivery(f"{lanes + k:02d}-000", "ping", None, 1, "o/r", b"{}", True, None)
        for k in range(8)
    ]
    for i in range(0, len(items), 16):  # batch after batch: received in this order
        seed.accept_many(items[i : i + 16])
    seed.close()
    context = multiprocessing.get_context("spawn")
    slots = (lanes + 8) * per_lane
    shared = {
        "lock": context.Lock(),
        "in_flight": context.RawArray("i", lanes + 8),
        "following": context.RawArray("i", lanes + 8),
        "claims": context.RawArray("i", slots),
        "claimed": context.RawValue("i", 0),
        "overlaps": context.RawValue("i", 0),
        "disorder": context.RawValue("i", 0),
        "per_lane": per_lane,
        "batch": 6,
    }
    # slots of deliveries that do not exist count as claimed already, so `claimed` reaches
    # len(claims) when every real one was
    shared["claimed"].value = slots - len(items)
    procs = [
        context.Process(target=_batch_claimer, args=(database_url, f"p{i}", shared))
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0] * processes
    assert shared["overlaps"].value == 0
    assert shared["disorder"].value == 0
    counts = {
        f"{slot // per_lane:02d}-{slot % per_lane:03d}": shared["claims"][slot]
        for slot in range(slots)
        if shared["claims"][slot]
    }
    assert sorted(counts) == sorted(d.id for d in items)
    assert set(counts.values()) == {1}
