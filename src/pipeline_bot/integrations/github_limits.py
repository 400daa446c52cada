"""GitHub's rate limits as the App meets them: when to try again, and not before.

GitHub answers a request over a limit with 403 or 429. Its headers say when to try again:
`Retry-After` (seconds; secondary limits), else `x-ratelimit-remaining: 0` with
`x-ratelimit-reset` (epoch seconds; the primary limit of the installation). A secondary limit
without either header means "wait at least a minute" (GitHub's REST guide). A 403 that is none
of these is a permission error, not a limit.

The limits are per installation, so every replica of the App meets the same ones. Each replica
remembers, per installation, until when GitHub asked it to wait, and sends nothing for that
installation before then (`Backoff`); the holds are also written to the App's database
(github_holds.py), which every replica reads before sending, so one replica's limit holds the
others back too; a delivery that met a limit goes back to the shared queue
due at that time (the worker reads `RateLimited.retry_at`), so whichever replica claims it next
waits too, rather than spending the installation's requests on retries.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from typing import Protocol

from pipeline_bot.errors import IntegrationError

SECONDARY_WAIT = 60.0  # seconds: GitHub's advice when a secondary limit names no time
MAX_WAIT = 3600.0  # a reset further away than the primary limit's hour is a clock problem


class RateLimited(IntegrationError):
    """GitHub asked to wait until `retry_at` (epoch seconds) before the next request."""

    def __init__(self, what: str, retry_at: float, now: float) -> None:
        wait = max(0, round(retry_at - now))
        super().__init__(
            f"GitHub's rate limit was reached {what}; trying again in {wait} s",
            service="github",
            status=429,
        )
        self.retry_at = retry_at


def retry_at(status: int, headers: Mapping[str, str], message: str, now: float) -> float | None:
    """When GitHub allows the next request after this answer; None when it is no limit."""
    if status not in (403, 429):
        return None
    after = _number(headers.get("retry-after"))
    if after is not None:
        return now + min(max(after, 0.0), MAX_WAIT)
    if headers.get("x-ratelimit-remaining") == "0":
        reset = _number(headers.get("x-ratelimit-reset"))
        if reset is not None:
            return min(max(reset, now), now + MAX_WAIT)
    if status == 429 or "rate limit" in message.lower():
        return now + SECONDARY_WAIT
    return None


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class SharedHolds(Protocol):
    """Where every replica keeps the holds (github_holds.SqlHolds: the App's database)."""

    def get(self, key: str) -> float: ...

    def hold(self, key: str, until: float) -> None: ...


SHARED_READ_SECONDS = 1.0
"""How stale a replica's view of the other replicas' holds may be: one read a second at most."""


class Backoff:
    """Until when one installation (or the App's own JWT) must not send; shared by its threads,
    and with `shared`, by every replica (key: the installation)."""

    def __init__(self, shared: SharedHolds | None = None, key: str = "") -> None:
        self._until = 0.0
        self._lock = threading.Lock()
        self._shared = shared
        self._key = key
        self._read = float("-inf")

    def check(self, what: str) -> None:
        """Raise RateLimited, sending nothing, while GitHub's last limit holds (as this replica
        or, read at most once a second, another replica met it)."""
        now = time.time()
        with self._lock:
            read = self._shared is not None and time.monotonic() - self._read >= SHARED_READ_SECONDS
            if read:
                self._read = time.monotonic()
        if read and self._shared is not None:
            try:
                others = self._shared.get(self._key)
            except IntegrationError:  # the database is down: this replica's own view still holds
                others = 0.0
            with self._lock:
                self._until = max(self._until, others)
        with self._lock:
            until = self._until
        if now < until:
            raise RateLimited(what, until, now)

    def hold(self, until: float) -> None:
        with self._lock:
            self._until = max(self._until, until)
        if self._shared is not None:  # unwritten, the others find out from GitHub instead
            with contextlib.suppress(IntegrationError):
                self._shared.hold(self._key, until)
