"""Failures a real API server produces within minutes, switched on per test (all off by default).

  gone_at_start         "http": a watch from compacted history gets HTTP 410 Expired before any
                        event; "event": 200, then one ERROR event holding that Status (both happen
                        on real clusters, the second from the watch cache)
  compact_every_events  after every N watch events the server delivers (all watches together), the
                        history is compacted: every open watch behind it gets an ERROR 410 event
                        and ends, and watching from before it gets 410 (as above)
  compact_on_close      compact the history whenever a fault below closes a watch, so resuming
                        from the last version seen gets 410
  watch_close_events    drop a watch's connection after it delivered N events (no chunked
                        terminator: a broken connection, as a restarted API server leaves)
  watch_close_seconds   end every watch after N seconds, as the server's own timeout does (with a
                        BOOKMARK first when the client allowed bookmarks)
  throttle_every        answer every Nth request for a resource with 429 TooManyRequests and
                        Retry-After: `retry_after` seconds (discovery and /__control are spared)

Compaction itself is always available: POST /__control/compact.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any

from tests.kubeapi.store import ApiError

Obj = dict[str, Any]
STATS = ("gone_http", "gone_events", "closed", "throttled", "compactions", "bookmarks")


@dataclass
class Faults:
    gone_at_start: str = "http"
    compact_every_events: int = 0
    compact_on_close: bool = False
    watch_close_events: int = 0
    watch_close_seconds: float = 0.0
    throttle_every: int = 0
    retry_after: int = 1
    stats: Counter[str] = field(default_factory=Counter)
    _delivered: int = 0
    _requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def configure(self, body: Obj) -> None:
        """Set the faults named in `body`, reset the rest and every counter."""
        known = {f.name for f in fields(self) if not f.name.startswith("_") and f.name != "stats"}
        unknown = set(body) - known
        if unknown:
            raise ApiError(400, "BadRequest", f"unknown faults: {', '.join(sorted(unknown))}")
        if body.get("gone_at_start", "http") not in ("http", "event"):
            raise ApiError(400, "BadRequest", 'gone_at_start must be "http" or "event"')
        with self._lock:
            fresh = Faults()
            for name in known:
                value = body.get(name, getattr(fresh, name))
                setattr(self, name, type(getattr(fresh, name))(value))
            self.stats.clear()
            self._delivered = self._requests = 0

    def describe(self) -> Obj:
        settings = {f.name: getattr(self, f.name) for f in fields(self) if f.name[0] != "_"}
        settings["stats"] = {name: self.stats[name] for name in STATS}
        return settings

    def count(self, what: str) -> None:
        with self._lock:
            self.stats[what] += 1

    def throttled(self) -> int | None:
        """Seconds to ask the client to wait when this request is to be refused with 429."""
        if not self.throttle_every:
            return None
        with self._lock:
            self._requests += 1
            if self._requests % self.throttle_every:
                return None
            self.stats["throttled"] += 1
            return self.retry_after

    def compact_now(self) -> bool:
        """Count one delivered watch event; True when the history is to be compacted now."""
        if not self.compact_every_events:
            return False
        with self._lock:
            self._delivered += 1
            return self._delivered % self.compact_every_events == 0


def too_many_requests(seconds: int) -> ApiError:
    return ApiError(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.",
        {"retryAfterSeconds": seconds},
    )
