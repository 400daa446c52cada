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

Injected faults, one rule at a time (POST /__control/faults/rules; `set` above clears them): the
next `times` requests (0: every one) whose method is `method` ("*": any) and whose path matches
the regex `path` (searched in the path, query left out; /__control is never matched), after the
first `skip` of them passed, and for `seconds` after the rule was added (0: for as long as it is
there: an outage of that length), get

  answer: 500 (any 4xx/5xx)  a Status body with that code; 429 and 503 carry Retry-After:
                        `retry_after` seconds when it is given
  hang: S               no answer for S seconds, then the connection is closed unanswered and the
                        request is not carried out (a timeout); with `then: "answer"` it is
                        carried out and answered after the S seconds (an answer the client may no
                        longer wait for: the write happened although the client saw a timeout)
  drop: true            a watch is answered, sends `events` events, then its connection is broken
                        (no chunked terminator); any other request's connection is closed unanswered
  lost: true            carried out, then the connection is closed before the answer: the write
                        happened and the client never hears of it (it retries)

`watch: true|false` narrows a rule to watch requests or to the others. POST
/__control/faults/drop-watches breaks every watch open now (what an API server restart does).
Each rule counts the requests it took (`hits`) in GET /__control/faults.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any

from tests.kubeapi.store import ApiError

Obj = dict[str, Any]
STATS = (
    "gone_http",
    "gone_events",
    "closed",
    "throttled",
    "compactions",
    "bookmarks",
    "injected",
    "dropped_watches",
)


@dataclass
class Rule:
    """One injected fault: which requests it takes, and what they get (module docstring)."""

    path: re.Pattern[str]
    method: str = "*"
    answer: int | None = None
    retry_after: int | None = None
    hang: float | None = None
    then: str = "close"
    drop: bool = False
    lost: bool = False
    events: int = 0
    watch: bool | None = None
    times: int = 1
    skip: int = 0
    seconds: float = 0.0
    added: float = field(default_factory=time.monotonic)
    seen: int = 0  # matching requests so far, skipped ones included
    hits: int = 0  # requests this rule took

    @classmethod
    def parse(cls, body: Obj) -> Rule:
        known = {
            "path",
            "method",
            "answer",
            "retry_after",
            "hang",
            "then",
            "drop",
            "lost",
            "events",
            "watch",
            "times",
            "skip",
            "seconds",
        }
        if not isinstance(body, dict) or set(body) - known:
            extra = sorted(set(body) - known) if isinstance(body, dict) else []
            raise ApiError(400, "BadRequest", f"unknown rule fields: {', '.join(extra)}")
        actions = [
            k for k in ("answer", "hang", "drop", "lost") if body.get(k) not in (None, False)
        ]
        if len(actions) != 1:
            raise ApiError(
                400, "BadRequest", "a rule needs exactly one of answer, hang, drop, lost"
            )
        answer = body.get("answer")
        if answer is not None and not 400 <= int(answer) <= 599:
            raise ApiError(400, "BadRequest", "answer must be an HTTP error code (4xx or 5xx)")
        if body.get("then", "close") not in ("close", "answer"):
            raise ApiError(400, "BadRequest", 'then must be "close" or "answer"')
        try:
            path = re.compile(str(body.get("path", "")))
        except re.error as exc:
            raise ApiError(400, "BadRequest", f"path is not a regex: {exc}") from None
        return cls(
            path=path,
            method=str(body.get("method", "*")).upper(),
            answer=int(answer) if answer is not None else None,
            retry_after=int(body["retry_after"]) if body.get("retry_after") is not None else None,
            hang=float(body["hang"]) if body.get("hang") is not None else None,
            then=str(body.get("then", "close")),
            drop=bool(body.get("drop", False)),
            lost=bool(body.get("lost", False)),
            events=int(body.get("events", 0)),
            watch=body.get("watch"),
            times=int(body.get("times", 1)),
            skip=int(body.get("skip", 0)),
            seconds=float(body.get("seconds", 0)),
        )

    def matches(self, method: str, path: str, watch: bool) -> bool:
        if self.seconds and time.monotonic() - self.added >= self.seconds:
            return False
        return (
            self.method in ("*", method)
            and (self.watch is None or self.watch == watch)
            and self.path.search(path) is not None
        )

    def describe(self) -> Obj:
        out: Obj = {"path": self.path.pattern, "method": self.method}
        for name in ("answer", "retry_after", "hang", "watch"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.hang is not None:
            out["then"] = self.then
        if self.drop:
            out.update(drop=True, events=self.events)
        if self.lost:
            out["lost"] = True
        out.update(times=self.times, skip=self.skip, hits=self.hits)
        if self.seconds:
            out["seconds"] = self.seconds
        return out


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
    rules: list[Rule] = field(default_factory=list)
    watch_epoch: int = 0  # drop-watches moves it on; a watch begun in an older one breaks
    released: threading.Event = field(default_factory=threading.Event)  # ends every hang early
    _delivered: int = 0
    _requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def configure(self, body: Obj) -> None:
        """Set the faults named in `body`, reset the rest and every counter."""
        known = {
            f.name
            for f in fields(self)
            if not f.name.startswith("_")
            and f.name not in ("stats", "rules", "watch_epoch", "released")
        }
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
            self.rules = []
            self.released.set()  # requests hanging now are let go
            self.released = threading.Event()

    def describe(self) -> Obj:
        hidden = ("rules", "watch_epoch", "released")
        settings = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name[0] != "_" and f.name not in hidden
        }
        settings["stats"] = {name: self.stats[name] for name in STATS}
        settings["rules"] = [r.describe() for r in self.rules]
        return settings

    def add_rule(self, body: Obj) -> int:
        """Append an injected fault; returns its index in `rules`."""
        rule = Rule.parse(body)
        with self._lock:
            self.rules.append(rule)
            return len(self.rules) - 1

    def injected(self, method: str, path: str, watch: bool) -> Rule | None:
        """The rule that takes this request (the first that matches and has some left)."""
        with self._lock:
            for rule in self.rules:
                if rule.times and rule.hits >= rule.times:
                    continue
                if not rule.matches(method, path, watch):
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    continue
                rule.hits += 1
                self.stats["injected"] += 1
                return rule
        return None

    def drop_watches(self) -> int:
        with self._lock:
            self.watch_epoch += 1
            return self.watch_epoch

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
