"""GitHub's rate limits: when GitHub's answer says to try again (a table), an installation that
sends nothing more until then, and a delivery that met a limit going back to the shared queue
due at GitHub's time, through the App's GitHub test double."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import respx

from pipeline_bot.integrations.github_app import GitHubApp
from pipeline_bot.integrations.github_limits import SECONDARY_WAIT, RateLimited, retry_at
from tests.app_harness import (  # noqa: F401 - the fixtures, for pytest to find
    API,
    app_fixture,
    gh_fixture,
    private_key,
    pull_request_payload,
)
from tests.conftest import webhook_example

NOW = 1_900_000_000.0
LIMIT_MESSAGE = "You have exceeded a secondary rate limit. Please wait a few minutes."

CASES: list[tuple[str, int, dict[str, str], str, float | None]] = [
    ("Retry-After on a 429", 429, {"retry-after": "30"}, "", NOW + 30),
    ("Retry-After on a 403 (secondary limit)", 403, {"retry-after": "7"}, LIMIT_MESSAGE, NOW + 7),
    (
        "the primary limit spent: its reset time",
        403,
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW + 600))},
        "API rate limit exceeded for installation ID 1.",
        NOW + 600,
    ),
    ("a secondary limit naming no time: a minute", 403, {}, LIMIT_MESSAGE, NOW + SECONDARY_WAIT),
    ("a bare 429: a minute", 429, {}, "", NOW + SECONDARY_WAIT),
    (
        "a 403 with requests left is a permission error",
        403,
        {"x-ratelimit-remaining": "4999", "x-ratelimit-reset": str(int(NOW + 600))},
        "Resource not accessible by integration",
        None,
    ),
    (
        "a reset in the past: now",
        403,
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "5"},
        "",
        NOW,
    ),
    ("a Retry-After past an hour is cut to one", 429, {"retry-after": "86400"}, "", NOW + 3600),
    ("a 500 is no limit", 500, {"retry-after": "30"}, "", None),
    ("a malformed Retry-After falls back", 429, {"retry-after": "soon"}, "", NOW + SECONDARY_WAIT),
]


@pytest.mark.parametrize(
    ("case", "status", "headers", "message", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_when_github_allows_the_next_request(case, status, headers, message, expected):
    assert retry_at(status, headers, message, NOW) == expected, case


def _limited_once(gh: Any, path_part: str, status: int, headers: dict[str, str]) -> list[str]:
    """GitHub's double, answering the first request whose path holds `path_part` over a limit."""
    seen: list[str] = []

    def side_effect(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if path_part in request.url.path and not any(path_part in p for p in seen[:-1]):
            return httpx.Response(status, headers=headers, json={"message": LIMIT_MESSAGE})
        return gh.respx_side_effect(request)

    return seen, side_effect  # type: ignore[return-value]


def test_an_installation_over_a_limit_sends_nothing_until_githubs_time(gh):
    app = GitHubApp("1", private_key(), api_url=API)
    seen, side_effect = _limited_once(gh, "/check-runs", 429, {"retry-after": "120"})
    with respx.mock(assert_all_called=False) as mock:
        mock.route(url__startswith=API).mock(side_effect=side_effect)
        installation = app.installation(1)
        before = time.time()
        with pytest.raises(RateLimited) as limited:
            installation.create_check_run("Codertocat/Hello-World", {"head_sha": "a" * 40})
        assert before + 120 <= limited.value.retry_at <= time.time() + 120
        assert "rate limit" in limited.value.message
        sent = len(seen)
        with pytest.raises(RateLimited):  # held back here: GitHub is not asked again
            installation.repository("Codertocat/Hello-World")
        assert len(seen) == sent
        # another installation's limits are its own
        assert app.installation(2).repository("Codertocat/Hello-World")["full_name"]


def test_a_delivery_that_met_a_limit_is_due_again_at_githubs_time(app, gh):
    answer = gh.answer
    limited: list[str] = []

    def secondary_limit_once(method: str, path: str, query: Any, body: Any) -> tuple[int, Any]:
        if path.endswith("/check-runs") and not limited:
            limited.append(path)
            return 403, {"message": LIMIT_MESSAGE}
        return answer(method, path, query, body)

    gh.answer = secondary_limit_once
    payload = pull_request_payload(webhook_example("pull_request", action="opened"))
    before = time.time()
    assert app.deliver("pull_request", payload, "limited-1").status_code == 202
    app.work()
    row = app.services.deliveries.get("limited-1")
    assert (row.status, row.attempts) == ("pending", 1)
    assert "rate limit" in row.error
    # not the worker's own backoff of seconds: due when GitHub allows, for whichever replica
    assert before + SECONDARY_WAIT <= app.services.deliveries.next_due() <= time.time() + 60


def test_a_limit_one_replica_met_holds_the_other_replicas_back(gh, database_url, monkeypatch):
    """Two replicas of the App (two GitHubApp objects, as two processes have) sharing the App's
    database: the second sends nothing for that installation once the first met the limit."""
    from pipeline_bot.integrations import github_limits
    from pipeline_bot.integrations.github_holds import SqlHolds

    monkeypatch.setattr(github_limits, "SHARED_READ_SECONDS", 0.0)  # no staleness in a test
    holds = [SqlHolds(database_url), SqlHolds(database_url)]
    first = GitHubApp("1", private_key(), api_url=API, holds=holds[0])
    second = GitHubApp("1", private_key(), api_url=API, holds=holds[1])
    seen, side_effect = _limited_once(gh, "/check-runs", 403, {"retry-after": "90"})
    try:
        _two_replicas(gh, first, second, seen, side_effect)
    finally:  # the engines' pooled connections, closed here rather than by the collector
        for h in holds:
            h.close()


def _two_replicas(gh, first, second, seen, side_effect):  # type: ignore[no-untyped-def]
    with respx.mock(assert_all_called=False) as mock:
        mock.route(url__startswith=API).mock(side_effect=side_effect)
        assert second.installation(1).repository("Codertocat/Hello-World")  # before: it sends
        with pytest.raises(RateLimited) as limited:
            first.installation(1).create_check_run("Codertocat/Hello-World", {"head_sha": "a" * 40})
        sent = len(seen)
        with pytest.raises(RateLimited) as held:  # held back by the first replica's limit
            second.installation(1).repository("Codertocat/Hello-World")
        assert len(seen) == sent
        assert held.value.retry_at == pytest.approx(limited.value.retry_at)
        # another installation's limits are its own, on every replica
        assert second.installation(2).repository("Codertocat/Hello-World")["full_name"]


@pytest.mark.parametrize(
    ("writes", "expected"),
    [
        ([100.0], 100.0),
        ([100.0, 50.0], 100.0),  # a shorter hold never shortens a longer one
        ([50.0, 100.0], 100.0),
    ],
)
def test_shared_holds_keep_the_later_time(database_url, writes, expected):
    from pipeline_bot.integrations.github_holds import SqlHolds

    holds = SqlHolds(database_url)
    assert holds.get("installation:1") == 0.0
    for until in writes:
        holds.hold("installation:1", until)
    assert holds.get("installation:1") == expected
    assert holds.get("installation:2") == 0.0
    holds.close()
