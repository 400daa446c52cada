"""The App's worker talks to the queue in batches: one call claims as many deliveries as it has
free threads (no two of one lane), and the outcomes of work that ended are written together;
retries, the lease check and each lane's order hold as one delivery at a time had them."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import text

from pipeline_bot.app import worker as worker_module
from pipeline_bot.app.worker import Worker
from pipeline_bot.integrations.deliveries import DeliveryStore, NewDelivery, Outcome
from pipeline_bot.settings import Settings


class Spy(DeliveryStore):
    """The real store, noting what the worker asks of it."""

    def __init__(self, url: str, **kw: Any) -> None:
        super().__init__(url, **kw)
        self.claims: list[tuple[int, int]] = []  # (limit, claimed)
        self.finishes: list[list[str]] = []

    def claim_many(self, limit: int, now: float | None = None) -> Any:
        claimed = super().claim_many(limit, now)
        self.claims.append((limit, len(claimed)))
        return claimed

    def finish_many(self, outcomes: Any) -> list[bool]:
        self.finishes.append([o.id for o in outcomes])
        return super().finish_many(outcomes)


def _ping(delivery_id: str, lane: str | None) -> NewDelivery:
    return NewDelivery(delivery_id, "ping", None, 1, "o/r", b'{"zen": "z"}', True, lane)


@pytest.fixture
def recorded(monkeypatch):
    """`ping` handled by a recorder: the order each lane was worked in, lanes worked by two
    threads at once, and a first attempt that fails for deliveries named `flaky-*`."""
    seen: dict[str, Any] = {"order": [], "in_flight": set(), "overlaps": [], "tries": {}}
    lock = threading.Lock()

    def handle(ctx: Any) -> str:
        d = ctx.delivery
        lane = d.id.split("-")[0]
        with lock:
            if lane in seen["in_flight"]:
                seen["overlaps"].append(d.id)
            seen["in_flight"].add(lane)
            seen["order"].append(d.id)
            seen["tries"][d.id] = seen["tries"].get(d.id, 0) + 1
            first = seen["tries"][d.id] == 1
        time.sleep(0.005)  # some work, so the threads overlap
        with lock:
            seen["in_flight"].discard(lane)
        if d.id.startswith("flaky") and first:
            raise RuntimeError("GitHub answered 502")
        return "pong"

    monkeypatch.setitem(worker_module.HANDLERS, "ping", (None, handle))
    return seen


def test_run_once_claims_a_batch_of_free_lanes_and_writes_its_outcomes_together(
    database_url, recorded
):
    store = Spy(database_url, owner="here")
    try:
        store.accept_many(
            [
                _ping("a-1", "o/r#1"),
                _ping("a-2", "o/r#1"),
                _ping("b-1", "o/r#2"),
                _ping("c-1", None),
            ]
        )
        worker = Worker(SimpleNamespace(deliveries=store), threads=4)  # type: ignore[arg-type]
        assert worker.run_once()
        assert store.claims == [(4, 3)]  # a-2 waits for a-1: never two of one lane
        assert store.finishes == [["a-1", "b-1", "c-1"]]  # one transaction for the batch
        assert worker.run_once()
        assert store.finishes[-1] == ["a-2"]
        assert not worker.run_once()
        assert {d.id: d.status for d in store.recent()} == dict.fromkeys(
            ("a-1", "a-2", "b-1", "c-1"), "done"
        )
    finally:
        store.close()


def test_a_configured_batch_caps_the_claims_below_the_free_threads(database_url, recorded):
    store = Spy(database_url, owner="here")
    try:
        store.accept_many([_ping(f"{lane}-0", f"o/r#{lane}") for lane in "abc"])
        worker = Worker(SimpleNamespace(deliveries=store), threads=4, batch=2)  # type: ignore[arg-type]
        assert worker.run_once()
        assert worker.run_once()
        assert not worker.run_once()
        assert store.claims == [(2, 2), (2, 1), (2, 0)]
    finally:
        store.close()


def test_the_setting_names_the_batch(monkeypatch):
    monkeypatch.setenv("PIPELINE_BOT_QUEUE_CLAIM_BATCH", "8")
    assert Settings().queue_claim_batch == 8
    monkeypatch.delenv("PIPELINE_BOT_QUEUE_CLAIM_BATCH")
    assert Settings().queue_claim_batch == 0  # as many as the worker has free threads


def test_the_worker_threads_claim_up_to_their_free_slots_and_keep_retries_and_lane_order(
    database_url, recorded
):
    lanes, per_lane = 3, 5
    store = Spy(database_url, owner="here", lease_seconds=30)
    items = [_ping(f"{lane}-{n}", f"o/r#{lane}") for n in range(per_lane) for lane in "abc"[:lanes]]
    items += [_ping(f"flaky{k}-0", None) for k in range(3)] + [_ping("flaky-late", "o/r#a")]
    store.accept_many(items)
    worker = Worker(
        SimpleNamespace(deliveries=store),  # type: ignore[arg-type]
        threads=4,
        backoff=lambda attempts: 0.0,
    )
    worker.start()
    try:
        deadline = time.monotonic() + 120
        while any(d.status != "done" for d in store.recent()):
            assert time.monotonic() < deadline, "the worker did not finish the queue"
            time.sleep(0.05)  # polling the store, with a deadline
    finally:
        worker.stop()
    try:
        rows = {d.id: d for d in store.recent()}
        assert {d.status for d in rows.values()} == {"done"}
        # retried once after the failed first attempt, the others worked once
        assert {i: d.attempts for i, d in rows.items() if d.attempts != 1} == {
            "flaky0-0": 2,
            "flaky1-0": 2,
            "flaky2-0": 2,
            "flaky-late": 2,
        }
        assert recorded["overlaps"] == []
        for lane in "abc"[:lanes]:
            worked = [i for i in recorded["order"] if i.split("-")[0] == lane]
            assert worked == [f"{lane}-{n}" for n in range(per_lane)]
        # never more claimed than threads were free; the first call found all four free
        assert all(1 <= limit <= 4 and got <= limit for limit, got in store.claims)
        assert store.claims[0] == (4, 4)
        # every outcome written once, and only by a claim that still held its delivery
        written = [i for batch in store.finishes for i in batch]
        assert sorted(written) == sorted(
            [d.id for d in items] + [f"flaky{k}-0" for k in range(3)] + ["flaky-late"]
        )
    finally:
        store.close()


def test_an_outcome_whose_claim_was_lost_is_refused_and_the_rest_of_its_batch_written(
    database_url,
):
    store = DeliveryStore(database_url, owner="here", lease_seconds=30)
    other = DeliveryStore(database_url, owner="there", lease_seconds=30)
    try:
        store.accept_many([_ping("kept", None), _ping("lost", None)])
        claimed = {d.id: d for d in store.claim_many(2)}
        with store.engine.begin() as conn:  # this process stalled past one lease
            conn.execute(text("UPDATE app_deliveries SET lease_until = 0 WHERE id = 'lost'"))
        assert [d.id for d in other.claim_many(2)] == ["lost"]
        worker = Worker(SimpleNamespace(deliveries=store), threads=2)  # type: ignore[arg-type]
        worker._outcomes = [
            Outcome("kept", "done", "pong", held_by=claimed["kept"].claimed_by),
            Outcome("lost", "done", "pong", held_by=claimed["lost"].claimed_by),
        ]
        assert worker._write() == 2
        assert (store.get("kept").status, store.get("lost").status) == ("done", "running")
        assert store.get("lost").claimed_by == "there"  # the new holder's claim stands
    finally:
        store.close()
        other.close()
