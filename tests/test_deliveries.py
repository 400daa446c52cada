"""The App's delivery queue on SQLite and PostgreSQL, and the intake on a server database (where
writes go through the writer thread)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from pipeline_bot.app.context import AppServices
from pipeline_bot.app.server import create_app
from pipeline_bot.integrations.deliveries import DeliveryStore, NewDelivery
from pipeline_bot.integrations.github_app import GitHubApp
from pipeline_bot.integrations.store import SqlStore
from tests.app_harness import SECRET, private_key, signed


def _new(delivery_id: str, lane: str | None = None, handled: bool = True) -> NewDelivery:
    return NewDelivery(delivery_id, "pull_request", "opened", 1, "o/r", b'{"a": 1}', handled, lane)


def test_a_batch_stores_new_deliveries_and_knows_redeliveries(database_url):
    store = DeliveryStore(database_url)
    assert store.accept_many([_new("a"), _new("b", handled=False)]) == [True, True]
    assert store.accept_many([_new("c"), _new("a"), _new("c")]) == [True, False, False]
    assert store.get("b").status == "ignored"
    claimed = store.claim()
    assert claimed.id == "a"
    assert claimed.payload == b'{"a": 1}'
    assert claimed.attempts == 1
    store.close()


def test_lanes_keep_one_pull_requests_order(database_url):
    store = DeliveryStore(database_url)
    store.accept_many([_new("1", "o/r#1"), _new("2", "o/r#1"), _new("3", "o/r#2")])
    assert [store.claim().id, store.claim().id] == ["1", "3"]
    assert store.claim() is None
    store.finish("1", "done")
    assert store.claim().id == "2"
    assert store.recover() == 2  # "2" and "3" were running: a restart takes them up again
    store.close()


def test_the_intake_on_a_server_database_answers_after_the_writer_thread_stored_it(database_url):
    services = AppServices(
        deliveries=DeliveryStore(database_url),
        github=GitHubApp("1", private_key()),
        store=SqlStore(database_url),
    )
    application = create_app(services, SECRET, mcp=False, start_worker=False)
    with TestClient(application) as client:
        body, headers = signed("ping", {"zen": "z", "installation": {"id": 1}}, "ping-1")
        first = client.post("/webhooks", content=body, headers=headers)
        again = client.post("/webhooks", content=body, headers=headers)
    assert (first.status_code, first.json()["status"]) == (202, "queued")
    assert again.json()["status"] == "duplicate"
    assert services.deliveries.get("ping-1").status == "pending"
    services.deliveries.close()
    services.store.close()


def test_on_sqlite_bodies_live_in_segment_files_until_pruned(tmp_path):
    import time

    store = DeliveryStore(f"sqlite:///{tmp_path / 'app.db'}")
    store.accept_many([_new("a"), _new("b", handled=False)])
    segments = list((tmp_path / "app.db.payloads").glob("*.seg"))
    assert len(segments) == 1
    assert segments[0].stat().st_mode & 0o777 == 0o600
    assert store.claim().payload == b'{"a": 1}'
    store.finish("a", "done")
    store.close()  # a new process's store writes a new segment; the old one can go
    later = DeliveryStore(f"sqlite:///{tmp_path / 'app.db'}")
    assert later.prune(time.time() + 1) == 2
    assert list((tmp_path / "app.db.payloads").glob("*.seg")) == []
    later.close()
