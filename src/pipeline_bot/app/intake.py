"""POST /webhooks: verify, store durably, acknowledge. The work happens in the worker thread.

Limits before work: a declared size over GitHub's 25 MB is answered 413 and a missing or
malformed X-Hub-Signature-256 401, before a byte of the body is read; then the body is read in
the chunks the server hands over, HMAC'd as it comes, within a deadline (408) and within a budget
of unverified bytes all requests share (503: GitHub redelivers); a wrong signature is 401. Each
of these answers closes the connection. Nothing is stored and nothing of the payload logged
before the signature holds. Then headers and JSON (400), and the delivery is written under its
X-GitHub-Delivery before the 202. A redelivery finds its row and is acknowledged as a duplicate;
an event the App does not handle is stored as `ignored`.

This is the App's hot path, so it is a plain ASGI function rather than a FastAPI route, and its
writes are grouped: whatever arrived meanwhile is committed in one transaction. On SQLite that
happens at the end of the event loop's turn (LoopWriter); on a server database in a writer thread
(IntakeWriter). SQLite's checkpoints never run on the loop: the worker thread runs them.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from pipeline_bot.app import metrics
from pipeline_bot.app.handlers import handled
from pipeline_bot.integrations.deliveries import DeliveryStore, NewDelivery

try:  # the [app] extra: parses a 24 KB delivery in a third of the stdlib's time
    from orjson import loads as parse_json
except ImportError:  # pragma: no cover - the stdlib parser gives the same answers, slower
    from json import loads as parse_json  # type: ignore[assignment]

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
_WANTED = frozenset(
    {b"content-length", b"x-hub-signature-256", b"x-github-event", b"x-github-delivery"}
)
_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_SIGNATURE = re.compile(r"^sha256=[0-9a-fA-F]{64}$")
# GitHub's event names are snake_case with digits (projects_v2_item); never a dot, so a delivery
# can never pass for one of the REST API's `api.*` jobs
_EVENT = re.compile(r"^[a-z0-9_]{1,64}$")
log = logging.getLogger("pipeline_bot.app")


class LoopWriter:
    """SQLite: deliveries that arrive in one turn of the event loop are written in one
    transaction at the end of that turn. A local insert costs tens of microseconds, less than
    handing it to a thread; checkpoints, the expensive part, are the worker thread's job."""

    def __init__(self, store: DeliveryStore, on_queued: Callable[[], None]) -> None:
        self.store = store
        self._on_queued = on_queued
        self._pending: list[tuple[NewDelivery, asyncio.Future[bool]]] = []

    def submit(self, delivery: NewDelivery) -> asyncio.Future[bool]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((delivery, future))
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        try:
            fresh = self.store.accept_many([d for d, _ in batch])
        except Exception as exc:  # noqa: BLE001 - every waiting request must get an answer
            for _, future in batch:
                future.set_exception(exc)
            return
        if any(f and d.handled for f, (d, _) in zip(fresh, batch, strict=True)):
            self._on_queued()
        for ok, (_, future) in zip(fresh, batch, strict=True):
            future.set_result(ok)

    def stop(self) -> None:
        return


class IntakeWriter:
    """A server database: one thread writes deliveries in batches, so network round trips never
    block the event loop; `submit` gives an awaitable per delivery."""

    def __init__(self, store: DeliveryStore, on_queued: Callable[[], None]) -> None:
        self.store = store
        self._on_queued = on_queued
        self._pending: list[tuple[NewDelivery, asyncio.Future[bool]]] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="pipeline-bot-intake", daemon=True)
        self._thread.start()

    def submit(self, delivery: NewDelivery) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        with self._cond:
            self._pending.append((delivery, future))
            self._cond.notify()
        return future

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(10)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                batch, self._pending = self._pending, []
                if not batch and self._stopping:
                    return
            try:
                fresh = self.store.accept_many([d for d, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every waiting request must get an answer
                _settle(batch, exc)
                continue
            if any(f and d.handled for f, (d, _) in zip(fresh, batch, strict=True)):
                self._on_queued()
            _settle(batch, fresh)


def _settle(
    batch: list[tuple[NewDelivery, asyncio.Future[bool]]], outcome: list[bool] | BaseException
) -> None:
    """Resolve a batch's futures with one wake-up of their loop."""

    def apply() -> None:
        for i, (_, future) in enumerate(batch):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome[i])

    if batch:
        batch[0][1].get_loop().call_soon_threadsafe(apply)


class Budget:
    """Bytes of bodies held before their signature is checked, across all requests (they run on
    one event loop: no lock). One request is always admitted when nothing is held, so a delivery
    as large as GitHub sends gets through however small the budget."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        if self.held and self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size


class WebhookIntake:
    """ASGI app for POST /webhooks."""

    def __init__(
        self,
        secret: bytes,
        writer: IntakeWriter | LoopWriter,
        *,
        body_timeout: float = 10.0,
        buffer_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.secret = secret
        self.writer = writer
        self.body_timeout = body_timeout
        self.budget = Budget(buffer_bytes)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        headers = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in _WANTED
        }
        if scope["method"] != "POST":
            await _reply(send, 405, b'{"error": "use POST"}', "-", "rejected", started, close=True)
            return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            await _reply(send, 413, _OVER, "-", "rejected", started, close=True)
            return
        signature = headers.get("x-hub-signature-256", "")
        if not _SIGNATURE.match(signature):
            how = "missing" if not signature else "malformed"
            await self._unsigned(send, headers, how, started)
            return
        body = await self._verified(receive, int(length) if length else 0, signature)
        if isinstance(body, bytes):
            await self._deliver(headers, body, send, started)
        elif body == 401:
            await self._unsigned(send, headers, "wrong", started)
        elif body is not None:  # None: the sender left
            await _reply(send, body, _LIMITS[body], "-", "rejected", started, close=True)

    async def _verified(self, receive: Any, declared: int, signature: str) -> bytes | int | None:
        """The body if its signature holds, else the status to answer: 401, 408 (too slow),
        413 (over 25 MB), 503 (the budget of unverified bytes is spent). None: the sender left."""
        held = declared
        if not self.budget.take(held):
            return 503
        mac = hmac.new(self.secret, digestmod="sha256")
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > MAX_BODY:
                        return 413
                    if size > held:  # chunked, or more than declared
                        if not self.budget.take(size - held):
                            return 503
                        held = size
                    mac.update(chunk)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            return 408
        finally:
            self.budget.give(held)
        if not hmac.compare_digest(mac.digest(), bytes.fromhex(signature[7:])):
            return 401
        return b"".join(chunks)

    async def _unsigned(self, send: Any, headers: dict[str, str], how: str, started: float) -> None:
        log.warning(
            "rejected a delivery with a %s signature (delivery header %r)",
            how,
            headers.get("x-github-delivery", "")[:64],
        )
        message = b'{"error": "the X-Hub-Signature-256 signature is missing or wrong"}'
        await _reply(send, 401, message, "-", "rejected", started, close=True)

    async def _deliver(
        self, headers: dict[str, str], body: bytes, send: Any, started: float
    ) -> None:
        event = headers.get("x-github-event", "")
        delivery = headers.get("x-github-delivery", "")
        if not _EVENT.match(event) or not _ID.match(delivery):
            message = b'{"error": "X-GitHub-Event and X-GitHub-Delivery headers are required"}'
            await _reply(send, 400, message, "-", "rejected", started)
            return
        try:
            payload = parse_json(body)
        except ValueError:  # orjson's JSONDecodeError is a ValueError too
            payload = None
        if not isinstance(payload, dict):
            message = b'{"error": "the body is not a JSON object"}'
            await _reply(send, 400, message, event, "rejected", started)
            return
        action = payload.get("action")
        action = action if isinstance(action, str) else None
        installation = _field(payload, "installation", "id")
        repository = _field(payload, "repository", "full_name")
        is_handled = handled(event, action)
        record = NewDelivery(
            delivery,
            event,
            action,
            installation if isinstance(installation, int) else None,
            repository if isinstance(repository, str) else None,
            body,
            is_handled,
            lane_of(event, payload, repository if isinstance(repository, str) else None),
        )
        try:
            fresh = await self.writer.submit(record)
        except Exception as exc:  # noqa: BLE001 - answer 503 so GitHub's redelivery can retry
            log.error("could not store delivery %s: %s", delivery, exc)
            message = b'{"error": "the delivery could not be stored; redeliver it"}'
            await _reply(send, 503, message, event, "error", started)
            return
        outcome = "duplicate" if not fresh else ("accepted" if is_handled else "ignored")
        status = {"accepted": "queued"}.get(outcome, outcome)
        answer = json.dumps({"delivery": delivery, "status": status}).encode()
        await _reply(send, 202, answer, event, outcome, started)


def _field(payload: dict[str, Any], outer: str, inner: str) -> Any:
    """payload[outer][inner], or None wherever the body has another shape: a signed body is
    GitHub's (or a replay, or a test), not a promise of the shape it has."""
    value = payload.get(outer)
    return value.get(inner) if isinstance(value, dict) else None


def lane_of(event: str, payload: dict[str, Any], repository: str | None) -> str | None:
    """Deliveries about one pull request (or one repository's pushes) share a lane."""
    if repository is None:
        return None
    number = payload.get("number") or _field(payload, "issue", "number")
    if number is None and event == "check_run":
        prs = _field(payload, "check_run", "pull_requests")
        first = prs[0] if isinstance(prs, list) and prs else None
        number = first.get("number") if isinstance(first, dict) else None
    if isinstance(number, int):
        return f"{repository}#{number}"
    return f"{repository}@{event}" if event == "push" else None


_OVER = b'{"error": "the body is over 25 MB"}'
_LIMITS = {
    413: _OVER,
    408: b'{"error": "the body did not arrive in time"}',
    503: b'{"error": "too many deliveries are being received; redeliver it"}',
}


_COUNTERS: dict[tuple[str, str], Any] = {}


def _count(event: str, outcome: str) -> None:
    counter = _COUNTERS.get((event, outcome))
    if counter is None:  # label lookups take a lock each time; keep the children
        counter = _COUNTERS[(event, outcome)] = metrics.DELIVERIES.labels(event, outcome)
    counter.inc()


async def _reply(
    send: Any,
    status: int,
    body: bytes,
    event: str,
    outcome: str,
    started: float,
    *,
    close: bool = False,
) -> None:
    """The answer; `close`: and the connection closed, so a body not read is never read."""
    _count(event, outcome)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    metrics.INTAKE_SECONDS.observe(time.perf_counter() - started)
