"""Deploy records and environment locks in a real SQLite database file."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from pipeline_bot.errors import LockedError
from pipeline_bot.integrations.store import SqlStore
from pipeline_bot.models import DeployRecord


@pytest.fixture
def store(database_url):
    store = SqlStore(database_url)
    yield store
    store.close()


def _record(i: int, status: str = "succeeded", **kw) -> DeployRecord:
    return DeployRecord(
        id=f"d{i}",
        environment="prod",
        app="api",
        namespace="shop",
        image=f"api:{i}",
        strategy="rolling",
        status=status,
        started_at=datetime.fromtimestamp(1_700_000_000 + i, tz=UTC),
        **kw,
    )


def test_records_round_trip_and_history_is_newest_first(store):
    store.save(_record(1, state={"template": {"spec": {"containers": [{"image": "api:1"}]}}}))
    store.save(_record(2, status="failed", reason="ImagePullBackOff"))
    store.save(_record(3, status="running"))
    assert [r.id for r in store.history("prod", "api")] == ["d3", "d2", "d1"]
    assert store.get("d1").state["template"]["spec"]["containers"][0]["image"] == "api:1"
    assert store.get("d2").reason == "ImagePullBackOff"
    assert store.last_successful("prod", "api").id == "d1"
    assert store.last_successful("prod", "api", before="d1") is None


def test_saving_again_updates_the_record(store):
    store.save(_record(1, status="running"))
    store.save(_record(1, status="succeeded", step="done"))
    assert (store.get("d1").status, store.get("d1").step) == ("succeeded", "done")
    assert len(store.history("prod")) == 1


def test_a_second_owner_is_refused_with_the_holder_named(store):
    store.acquire("prod", "deploy-1", "deploy api:1", ttl=60)
    with pytest.raises(LockedError, match="locked by deploy-1 \\(deploy api:1\\)"):
        store.acquire("prod", "deploy-2", "deploy api:2", ttl=60)
    assert store.lock("prod").owner == "deploy-1"
    assert store.acquire("prod", "deploy-1", "again", ttl=60).owner == "deploy-1"


def test_an_expired_lock_can_be_taken(store):
    store.acquire("prod", "deploy-1", "crashed", ttl=0.05)
    time.sleep(0.1)  # the lock's own expiry is what is under test
    assert store.acquire("prod", "deploy-2", "next", ttl=60).owner == "deploy-2"


def test_a_waiting_deploy_gets_the_lock_when_it_is_released(store, database_url):
    store.acquire("prod", "deploy-1", "first", ttl=60)
    other = SqlStore(database_url)
    request_close = other.close
    got: list[str] = []
    waiter = threading.Thread(
        target=lambda: got.append(other.acquire("prod", "deploy-2", "second", ttl=60, wait=5).owner)
    )
    waiter.start()
    store.release("prod", "deploy-1")
    waiter.join(timeout=10)
    request_close()
    assert got == ["deploy-2"]


def test_only_one_of_many_racing_owners_gets_the_lock(database_url):
    url = database_url
    SqlStore(url).close()
    winners: list[str] = []
    errors: list[str] = []

    def grab(i: int) -> None:
        store = SqlStore(url)
        try:
            winners.append(store.acquire("prod", f"o{i}", "race", ttl=60).owner)
        except LockedError:
            errors.append(f"o{i}")
        finally:
            store.close()

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert len(errors) == 7
