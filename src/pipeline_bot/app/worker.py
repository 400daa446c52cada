"""The threads that work the delivery queue: each one delivery at a time, retries with backoff.

A handler that raises is retried (2 s, 4 s, 8 s ... capped at 5 minutes; one that met GitHub's
rate limit not before the time GitHub gave) up to MAX_ATTEMPTS, then
the delivery is `failed` and shows in `GET /deliveries?status=failed`, where it can be retried.
A handler that reached an outcome which must not be repeated on its own (a deploy that ran and
failed) calls `ctx.fail()` and returns: its delivery is failed at once, without the retries.

One thread of the worker's own talks to the queue for the others, in batches: it writes the
outcomes of every delivery whose work ended since its last pass in one transaction (a group
commit: one durable write for them all), then claims as many deliveries as threads are free
(up to `batch`) in one call, no two of one lane, and hands them out. It also checkpoints SQLite's
write-ahead log, which the intake never does on its loop, and prunes what the retention lets go.

Each delivery a thread works is claimed under a lease; a thread of its own renews the leases of
the deliveries in hand every third of the lease, so a long deploy keeps its claim while a
replica that died loses its claims to the others. A claim that was lost all the same (this
process stalled past its lease) is not finished over the new holder's head: that outcome alone
is refused, the others of its batch are written.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from pipeline_bot.app import metrics
from pipeline_bot.app.context import AppServices, EventContext
from pipeline_bot.app.handlers import HANDLERS
from pipeline_bot.errors import PipelineBotError
from pipeline_bot.integrations.deliveries import Delivery, Outcome
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
        batch: int = 0,
    ) -> None:
        self.services = services
        self.retention = retention_days * 86400
        self.threads = threads
        self.batch = batch or threads  # the most claimed in one call (0: every free thread)
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._workers: list[threading.Thread] = []
        self._held: set[str] = set()  # deliveries in hand, whose leases the renewer extends
        self._held_lock = threading.Lock()
        self._ready: queue.SimpleQueue[Delivery | None] = queue.SimpleQueue()
        self._busy = 0  # deliveries handed to the threads whose work has not ended
        self._outcomes: list[Outcome] = []  # work that ended, its outcome not yet written
        self._lock = threading.Lock()  # guards _busy and _outcomes
        self._counted = -DEPTH_EVERY  # when the queue's depth was last counted
        self._backoff = backoff or (lambda attempts: min(BACKOFF_CAP, 2.0**attempts))

    def start(self) -> None:
        recovered = self.services.deliveries.recover()
        if recovered:
            log.info("requeued %d deliveries a stopped process left running", recovered)
        # several threads, so a long canary deploy does not hold up other pull requests' checks;
        # one more claims for them, writes what they finished, and keeps house
        for n in range(self.threads):
            thread = threading.Thread(
                target=self._serve, name=f"pipeline-bot-worker-{n}", daemon=True
            )
            thread.start()
            self._workers.append(thread)
        for target, name in (
            (self._run, "pipeline-bot-queue"),
            (self._renew, "pipeline-bot-lease"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)  # the queue's thread first

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake.set()
        for thread in self._threads[:1]:  # the queue's thread first: nothing claimed after
            thread.join(timeout)
        for _ in self._workers:  # after what was handed out: free threads have taken it
            self._ready.put(None)
        for thread in [*self._workers, *self._threads[1:]]:
            thread.join(timeout)
        try:  # what ended while stopping
            self._write()
        except PipelineBotError as exc:
            log.error("queue: %s", exc.message)

    def _run(self) -> None:
        """The queue's thread: write the outcomes of the work that ended (together, one
        commit), then claim as many deliveries as threads are free (one call), and hand
        them out; checkpoints and pruning besides."""
        last_checkpoint = time.monotonic()
        last_prune = 0.0
        while not self._stop.is_set():
            if time.monotonic() - last_prune >= PRUNE_EVERY:
                self._prune()
                last_prune = time.monotonic()
            self.wake.clear()  # set again by whatever happens from here on: no wake-up lost
            try:
                wrote = self._write()
                claimed = self._claim()
                idle = not (wrote or claimed)
                wait = self._idle_wait() if idle and self._free() else CHECKPOINT_EVERY
            except PipelineBotError as exc:  # the queue's database is unreachable
                log.error("queue: %s", exc.message)
                idle, wait = True, CHECKPOINT_EVERY
            if time.monotonic() - last_checkpoint >= CHECKPOINT_EVERY:
                self.services.deliveries.checkpoint()
                last_checkpoint = time.monotonic()
            if idle:
                self.wake.wait(wait)

    def _free(self) -> int:
        with self._lock:
            return self.threads - self._busy

    def _claim(self) -> int:
        """Claim up to a batch of deliveries for the free threads and hand them out."""
        free = min(self._free(), self.batch)
        claimed = self.services.deliveries.claim_many(free) if free > 0 else []
        if not claimed:
            self._gauge()
            return 0
        with self._held_lock:
            self._held.update(d.id for d in claimed)
        with self._lock:
            self._busy += len(claimed)
        for delivery in claimed:
            self._ready.put(delivery)
        self._gauge()
        return len(claimed)

    def _serve(self) -> None:
        """A worker thread: work what the queue's thread hands out, one delivery at a time."""
        while (delivery := self._ready.get()) is not None:
            try:
                outcome = self._work(delivery)
            except Exception as exc:  # the thread must live on; the delivery is retried
                log.exception("delivery %s (%s)", delivery.id, delivery.event)
                retry_at = time.time() + self._backoff(delivery.attempts)
                outcome = _outcome(delivery, "pending", repr(exc)[:500], retry_at)
            finally:
                with self._lock:
                    self._busy -= 1
            with self._held_lock:  # out of the renewer's hands first: finished is not lost
                self._held.discard(delivery.id)
            with self._lock:
                self._outcomes.append(outcome)
            self.wake.set()  # to be written; its lane is then free, and this thread too

    def _write(self) -> int:
        """Write the outcomes of the work that ended, in one transaction; a claim that was
        lost meanwhile (this process stalled past its lease) is not finished over the new
        holder's head. Outcomes the database did not take are kept for the next pass."""
        with self._lock:
            outcomes, self._outcomes = self._outcomes, []
        if not outcomes:
            return 0
        try:
            written = self.services.deliveries.finish_many(outcomes)
        except PipelineBotError:
            with self._lock:
                self._outcomes[:0] = outcomes
            raise
        for outcome, ok in zip(outcomes, written, strict=True):
            if not ok:
                log.warning(
                    "delivery %s: its claim ran out and another replica took it; not marked %s",
                    outcome.id,
                    outcome.status,
                )
        return len(outcomes)

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
        # due and not claimed: its lane is busy; a delivery finished here wakes the thread
        wait = due - time.time()
        return CHECKPOINT_EVERY if wait <= 0 else min(CHECKPOINT_EVERY, wait)

    def run_once(self) -> bool:
        """In the calling thread (tests, tools): claim a batch of due deliveries, work them
        one after the other and write their outcomes together; False when none was due."""
        self._write()
        claimed = self.services.deliveries.claim_many(self.batch)
        if not claimed:
            self._gauge()
            return False
        outcomes = []
        with self._held_lock:
            self._held.update(d.id for d in claimed)
        try:
            for delivery in claimed:
                outcomes.append(self._work(delivery))
        finally:
            with self._held_lock:
                self._held.difference_update(d.id for d in claimed)
            with self._lock:
                self._outcomes.extend(outcomes)
            self._write()
            self.wake.set()  # their lanes are free: later deliveries of them may wait
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

    def _work(self, delivery: Delivery) -> Outcome:
        """Run the delivery's handler: its outcome, to be written with others."""
        _, handler = HANDLERS[delivery.event]
        started = time.perf_counter()
        ctx: EventContext | None = None
        try:
            ctx = EventContext.of(delivery, self.services)
            outcome = handler(ctx)
        except Exception as exc:  # noqa: BLE001 - any handler failure is retried, then shown
            message = exc.message if isinstance(exc, PipelineBotError) else repr(exc)[:500]
            if delivery.attempts >= MAX_ATTEMPTS:
                metrics.DELIVERIES.labels(delivery.event, "failed").inc()
                log.error("delivery %s (%s) failed: %s", delivery.id, delivery.event, message)
                return _outcome(delivery, "failed", message)
            retry_at = time.time() + self._backoff(delivery.attempts)
            if isinstance(exc, RateLimited):  # due again when GitHub allows, not before
                retry_at = max(retry_at, exc.retry_at)
            metrics.DELIVERIES.labels(delivery.event, "retried").inc()
            log.warning(
                "delivery %s (%s) will be retried: %s", delivery.id, delivery.event, message
            )
            return _outcome(delivery, "pending", message, retry_at)
        else:
            if ctx.failure is not None:
                if ctx.failure not in outcome:
                    outcome = f"{outcome}: {ctx.failure}"
                metrics.DELIVERIES.labels(delivery.event, "failed").inc()
                log.error("delivery %s (%s) failed: %s", delivery.id, delivery.event, outcome)
                return _outcome(delivery, "failed", outcome)
            metrics.DELIVERIES.labels(delivery.event, "done").inc()
            log.info("delivery %s (%s): %s", delivery.id, delivery.event, outcome)
            return _outcome(delivery, "done", outcome)
        finally:
            metrics.HANDLER_SECONDS.labels(delivery.event).observe(time.perf_counter() - started)


def _outcome(delivery: Delivery, status: str, error: str, retry_at: float | None = None) -> Outcome:
    """`status` for the delivery, if the claim it was worked under still holds it."""
    return Outcome(delivery.id, status, error, retry_at, held_by=delivery.claimed_by)
