"""Several `pipeline-bot serve` processes sharing one PostgreSQL behind a round-robin front on
loopback: the same signed load is worked exactly once, whichever replica took each delivery in;
a replica killed with claimed work in hand loses it to the others once its leases run out."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.app_harness import API_TOKEN, BASE, SECRET, private_key, pull_request_payload, signed
from tests.conftest import github_examples, webhook_example
from tests.fakes.github_api import GitHubApiDouble
from tests.replicas import RoundRobin, replicas

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]
LEASE = 3  # seconds: the kill test waits this long for the dead replica's claims


@pytest.fixture
def stand_in():
    double = GitHubApiDouble(github_examples())
    url, server = double.serve()
    yield double, url
    server.shutdown()
    server.server_close()


def _env(database_url: str, github_url: str, tmp_path: Any, workers: int = 8) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "PIPELINE_BOT_"))}
    env.update(
        GITHUB_API_URL=github_url,
        GITHUB_APP_ID="1",
        GITHUB_APP_PRIVATE_KEY=private_key(),
        GITHUB_WEBHOOK_SECRET=SECRET.decode(),
        PIPELINE_BOT_API_TOKEN=API_TOKEN,
        PIPELINE_BOT_DATABASE_URL=database_url,
        PIPELINE_BOT_QUEUE_LEASE_SECONDS=str(LEASE),
        PIPELINE_BOT_APP_WORKERS=str(workers),
        PIPELINE_BOT_CACHE_DIR=str(tmp_path / "cache"),
        PIPELINE_BOT_RISK_MODEL="rules",  # no history to mine: the queue is under test
    )
    return env


def _load(count: int, lanes: int) -> list[tuple[str, dict[str, Any]]]:
    """`count` pull_request deliveries over `lanes` pull requests, each with a head of its own."""
    example = webhook_example("pull_request", action="opened")
    out = []
    for i in range(count):
        payload = pull_request_payload(json.loads(json.dumps(example)), number=1 + i % lanes)
        payload["pull_request"]["head"]["sha"] = f"{i + 1:040x}"
        payload["pull_request"]["base"]["sha"] = BASE
        out.append((f"load-{i:04d}", payload))
    return out


def _send(front: str, load: list[tuple[str, dict[str, Any]]]) -> None:
    def post(items: list[tuple[str, dict[str, Any]]]) -> None:
        for delivery, payload in items:
            body, headers = signed("pull_request", payload, delivery)
            request = urllib.request.Request(
                f"{front}/webhooks", data=body, headers=headers, method="POST"
            )
            with urllib.request.urlopen(request, timeout=60) as answer:
                assert answer.status == 202

    senders = [threading.Thread(target=post, args=(load[i::4],)) for i in range(4)]
    for s in senders:
        s.start()
    for s in senders:
        s.join()


def _rows(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, status, attempts, claimed_by, error FROM app_deliveries")
            ).all()
    finally:
        engine.dispose()
    return {r.id: r for r in rows}


def _until(condition: Any, what: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)  # polling other processes' database rows, with a deadline


def _hold_check_runs(double: GitHubApiDouble) -> threading.Event:
    """GitHub (the double) answers no check run creation until the returned event is set."""
    gate = threading.Event()
    answer = double.answer

    def held(method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if method == "POST" and path.endswith("/check-runs"):
            gate.wait(300)
        return answer(method, path, query, body)

    double.answer = held  # type: ignore[method-assign]
    return gate


@pytest.mark.parametrize("count", [2, 4])
def test_replicas_behind_a_round_robin_work_every_delivery_exactly_once(
    database_url, stand_in, tmp_path, count
):
    double, github_url = stand_in
    # GitHub answers no check run until a second replica has claimed work: a replica holds at
    # most its 4 workers' deliveries (one per lane of 8), so the rest wait for the others, and
    # the spread below holds on a loaded machine too (when GitHub answered at once, one replica
    # could finish the whole load before another woke: CI saw it at load ~15, and under xdist)
    gate = _hold_check_runs(double)
    load = _load(16, lanes=8)
    env = _env(database_url, github_url, tmp_path, workers=4)
    with replicas(count, env, tmp_path) as cluster:
        front = RoundRobin([r.url for r in cluster])
        try:
            _send(front.url, load)
            _until(
                lambda: (
                    len({r.claimed_by for r in _rows(database_url).values() if r.claimed_by}) >= 2
                ),
                "a second replica to claim deliveries while the first holds its share",
            )
            gate.set()
            _until(
                lambda: sum(r.status == "done" for r in _rows(database_url).values()) == len(load),
                "every delivery to be done",
            )
        finally:
            gate.set()
            front.close()
    rows = _rows(database_url)
    assert {r.status for r in rows.values()} == {"done"}
    assert {r.attempts for r in rows.values()} == {1}  # claimed once each
    # the work itself done once: one check run per delivery (its external_id)
    created = Counter(c.body["external_id"] for c in double.made("POST", r"/check-runs$"))
    assert created == Counter({delivery: 1 for delivery, _ in load})
    # and spread over the replicas: more than one worked some (each need not: any replica may
    # claim any delivery once the gate opens)
    logs = [(tmp_path / f"replica-{i}.log").read_text() for i in range(count)]
    assert sum("pull_request" in log for log in logs) >= 2
    assert all(SECRET.decode() not in log and API_TOKEN not in log for log in logs)


def test_a_replica_killed_with_claimed_work_loses_it_to_the_others_after_its_lease(
    database_url, stand_in, tmp_path
):
    double, github_url = stand_in
    gate = _hold_check_runs(double)
    load = _load(6, lanes=6)
    with replicas(3, _env(database_url, github_url, tmp_path), tmp_path) as cluster:
        front = RoundRobin([r.url for r in cluster])
        try:
            _send(front.url, load)
            _until(
                lambda: (
                    all(r.status == "running" for r in _rows(database_url).values())
                    and len(_rows(database_url)) == len(load)
                ),
                "every delivery to be claimed",
            )
            by_pid = Counter(int(r.claimed_by.split(":")[1]) for r in _rows(database_url).values())
            victim = next(r for r in cluster if by_pid[r.pid] == max(by_pid.values()))
            held_by_victim = {
                d
                for d, r in _rows(database_url).items()
                if int(r.claimed_by.split(":")[1]) == victim.pid
            }
            victim.kill9()
            # its leases run out and the others take its deliveries (still held at GitHub's gate,
            # so the survivors' own claims outlive a lease too: renewed, never taken)
            _until(
                lambda: all(
                    _rows(database_url)[d].attempts == 2 and _rows(database_url)[d].claimed_by
                    for d in held_by_victim
                ),
                "the others to take the killed replica's deliveries",
            )
            gate.set()
            _until(
                lambda: all(r.status == "done" for r in _rows(database_url).values()),
                "every delivery to be done",
            )
        finally:
            gate.set()
            front.close()
    rows = _rows(database_url)
    assert {d: r.attempts for d, r in rows.items()} == {
        d: 2 if d in held_by_victim else 1 for d, _ in load
    }
    logs = "".join((tmp_path / f"replica-{i}.log").read_text() for i in range(3))
    assert "another replica took it" not in logs  # the survivors' own claims were never lost
