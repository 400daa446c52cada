"""The thread that works the delivery queue: one delivery at a time, retries with backoff.

A handler that raises is retried (2 s, 4 s, 8 s ... capped at 5 minutes; one that met GitHub's
rate limit not before the time GitHub gave) up to MAX_ATTEMPTS, then
the delivery is `failed` and shows in `GET /deliveries?status=failed`, where it can be retried.
A handler that reached an outcome which must not be repeated on its own (a deploy that ran and
failed) calls `ctx.fail()` and returns: its delivery is failed at once, without the retries.
The thread also checkpoints SQLite's write-ahead log, which the intake never does on its loop.

Each delivery a thread works is claimed under a lease; a thread of its own renews the leases of
the deliveries in hand every third of the lease, so a long deploy keeps its claim while a
replica that died loses its claims to the others. A claim that was lost all the same (this
process stalled past its lease) is not finished over the new holder's head.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pipeline_bot.app import metrics
from pipeline_bot.app.context import AppServices, EventContext
from pipeline_bot.app.handlers import HANDLERS
from pipeline_bot.errors import PipelineBotError
from pipeline_bot.integrations.deliveries import Delivery
from pipeline_bot.integrations.github_limits import RateLimited

MAX_ATTEMPTS = 5
BACKOFF_CAP = 300.0
CHECKPOINT_EVERY = 1.0
PRUNE_EVERY = 3600.0
DEPTH_EVERY = 1.0
log = logging.getLogger("pipeline_bot.app")


class Worker:
    def __init__(
        self,
        services: AppServices,
        *,
        backoff: Callable[[int], float] | None = None,
        retention_days: float = 14,
        threads: int = 4,
    ) -> None:
        self.services = services
        self.retention = retention_days * 86400
        self.threads = threads
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._held: set[str] = set()  # deliveries in hand, whose leases the renewer extends
        self._held_lock = threading.Lock()
        self._counted = -DEPTH_EVERY  # when the queue's depth was last counted
        self._backoff = backoff or (lambda attempts: min(BACKOFF_CAP, 2.0**attempts))

    def start(self) -> None:
        recovered = self.services.deliveries.recover()
        if recovered:
            log.info("requeued %d deliveries a stopped process left running", recovered)
        # several threads, so a long canary deploy does not hold up other pull requests' checks;
        # the first one also keeps house (checkpoints, pruning)
        for n in range(self.threads):
            thread = threading.Thread(
                target=self._run, args=(n == 0,), name=f"pipeline-bot-worker-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        renewer = threading.Thread(target=self._renew, name="pipeline-bot-lease", daemon=True)
        renewer.start()
        self._threads.append(renewer)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake.set()
        for thread in self._threads:
            thread.join(timeout)

    def _run(self, housekeeper: bool) -> None:
        last_checkpoint = time.monotonic()
        last_prune = 0.0
        while not self._stop.is_set():
            if housekeeper and time.monotonic() - last_prune >= PRUNE_EVERY:
                self._prune()
                last_prune = time.monotonic()
            try:
                worked = self.run_once()
            except PipelineBotError as exc:  # the queue's database is unreachable
                log.error("queue: %s", exc.message)
                worked = False
            if housekeeper and time.monotonic() - last_checkpoint >= CHECKPOINT_EVERY:
                self.services.deliveries.checkpoint()
                last_checkpoint = time.monotonic()
            if not worked:
                self.wake.wait(self._idle_wait())
                self.wake.clear()

    def _renew(self) -> None:
        """Extend the leases of the deliveries in hand, every third of the lease."""
        every = max(0.05, self.services.deliveries.lease / 3)
        while not self._stop.wait(every):
            with self._held_lock:
                held = set(self._held)
            if not held:
                continue
            try:
                kept = self.services.deliveries.renew(held)
            except PipelineBotError as exc:  # the next round tries again, within the lease
                log.error("renewing the queue's leases: %s", exc.message)
                continue
            with self._held_lock:
                lost = (held - kept) & self._held  # not finished meanwhile: taken
                self._held -= lost
            for delivery_id in sorted(lost):
                log.warning(
                    "delivery %s: its lease ran out and another replica took it", delivery_id
                )

    def _prune(self) -> None:
        try:
            gone = self.services.deliveries.prune(time.time() - self.retention)
        except PipelineBotError as exc:
            log.error("pruning old deliveries: %s", exc.message)
            return
        if gone:
            log.info("pruned %d done or ignored deliveries older than the retention", gone)

    def _idle_wait(self) -> float:
        due = self.services.deliveries.next_due()
        if due is None:
            return CHECKPOINT_EVERY
        # due and not claimed: its lane is busy; a delivery finished here wakes the threads
        wait = due - time.time()
        return CHECKPOINT_EVERY if wait <= 0 else min(CHECKPOINT_EVERY, wait)

    def run_once(self) -> bool:
        """Work the next due delivery; False when none was due."""
        delivery = self.services.deliveries.claim()
        if delivery is None:
            self._gauge()
            return False
        with self._held_lock:
            self._held.add(delivery.id)
        try:
            self._work(delivery)
        finally:
            with self._held_lock:
                self._held.discard(delivery.id)
            self.wake.set()  # its lane is free: a later delivery of it may wait
        self._gauge()
        return True

    def _gauge(self) -> None:
        """The queue's depth for /metrics, counted at most once a second (a count of the queue
        after every delivery cost more than the delivery; a scrape counts it anyway)."""
        now = time.monotonic()
        if now - self._counted < DEPTH_EVERY:
            return
        self._counted = now
        metrics.QUEUE_DEPTH.set(self.services.deliveries.depth())

    def _finish(self, delivery: Delivery, status: str, **kw: Any) -> None:
        """The outcome, if this process still holds the claim."""
        with self._held_lock:  # out of the renewer's hands first: finished is not lost
            self._held.discard(delivery.id)
        if not self.services.deliveries.finish(
            delivery.id, status, held_by=delivery.claimed_by, **kw
        ):
            log.warning(
                "delivery %s: its claim ran out and another replica took it; not marked %s",
                delivery.id,
                status,
            )

    def _work(self, delivery: Delivery) -> None:
        _, handler = HANDLERS[delivery.event]
        started = time.perf_counter()
        ctx: EventContext | None = None
        try:
            ctx = EventContext.of(delivery, self.services)
            outcome = handler(ctx)
        except Exception as exc:  # noqa: BLE001 - any handler failure is retried, then shown
            message = exc.message if isinstance(exc, PipelineBotError) else repr(exc)[:500]
            if delivery.attempts >= MAX_ATTEMPTS:
                self._finish(delivery, "failed", error=message)
                metrics.DELIVERIES.labels(delivery.event, "failed").inc()
                log.error("delivery %s (%s) failed: %s", delivery.id, delivery.event, message)
            else:
                retry_at = time.time() + self._backoff(delivery.attempts)
                if isinstance(exc, RateLimited):  # due again when GitHub allows, not before
                    retry_at = max(retry_at, exc.retry_at)
                self._finish(delivery, "pending", error=message, retry_at=retry_at)
                metrics.DELIVERIES.labels(delivery.event, "retried").inc()
                log.warning(
                    "delivery %s (%s) will be retried: %s", delivery.id, delivery.event, message
                )
        else:
            if ctx.failure is not None:
                if ctx.failure not in outcome:
                    outcome = f"{outcome}: {ctx.failure}"
                self._finish(delivery, "failed", error=outcome)
                metrics.DELIVERIES.labels(delivery.event, "failed").inc()
                log.error("delivery %s (%s) failed: %s", delivery.id, delivery.event, outcome)
                return
            self._finish(delivery, "done", error=outcome)
            metrics.DELIVERIES.labels(delivery.event, "done").inc()
            log.info("delivery %s (%s): %s", delivery.id, delivery.event, outcome)
        finally:
            metrics.HANDLER_SECONDS.labels(delivery.event).observe(time.perf_counter() - started)
