"""An environment's lock held for as long as an operation runs: taken at the start, renewed from a
background thread every third of its lease, released at the end (also when the operation fails).

A lease, not a deadline: a canary that pauses for hours keeps its lock, and a holder that dies
(its process killed, its job cancelled) stops renewing and loses the lock one lease later.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from pipeline_bot.errors import DeployError, LockedError, PipelineBotError
from pipeline_bot.integrations.ports import StorePort

DEFAULT_LEASE_SECONDS = 60.0


class HeldLock:
    """`with HeldLock(store, environment, owner, reason, lease=60):` holds the lock inside."""

    def __init__(
        self,
        store: StorePort,
        environment: str,
        owner: str,
        reason: str,
        *,
        lease: float = DEFAULT_LEASE_SECONDS,
        wait: float = 0.0,
    ) -> None:
        self.store, self.environment, self.owner, self.reason = store, environment, owner, reason
        self.lease, self.wait = lease, wait
        self.renewals = 0
        self.lost: str | None = None  # why the lock is no longer ours, once it is not
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._renew, name=f"lease {environment}", daemon=True
        )
        self._expires = 0.0  # monotonic time at which our last successful renewal runs out

    def __enter__(self) -> HeldLock:
        self.store.acquire(*self._args(), ttl=self.lease, wait=self.wait)
        self._expires = time.monotonic() + self.lease  # give or take the one request it took
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.halt()
        try:
            self.store.release(self.environment, self.owner)  # only if it is still ours
        except PipelineBotError:
            if kind is None:
                raise
            # the operation's own error says more; the lease runs out on its own

    def halt(self) -> None:
        """Stop renewing (and wait for the renewing thread): what a holder's death does."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def check(self) -> None:
        """Raise DeployError if the lock has been lost, or may have been (not renewed within its
        lease, so someone else may hold it now): nothing more may be done under it."""
        if self.lost is None and time.monotonic() >= self._expires:
            self.lost = f"not renewed within its {self.lease:g}s lease"
        if self.lost is not None:
            raise DeployError(
                f"stopped: the lock on {self.environment!r} was lost ({self.lost})",
                environment=self.environment,
            )

    def _renew(self) -> None:
        while not self._stop.wait(self.lease / 3):
            asked = time.monotonic()  # the lease runs from the request, whenever it is answered
            try:
                self.store.acquire(*self._args(), ttl=self.lease)
                self._expires = asked + self.lease
                self.renewals += 1
            except LockedError as exc:
                self.lost = f"taken by {exc.holder} ({exc.reason})"
                return
            except PipelineBotError as exc:  # unreachable store: retry while the lease lasts
                if time.monotonic() >= self._expires:
                    self.lost = f"it could not be renewed before it ran out: {exc.message}"
                    return

    def _args(self) -> tuple[str, str, str]:
        return self.environment, self.owner, self.reason
