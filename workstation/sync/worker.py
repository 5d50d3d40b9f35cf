"""The sync worker: drains the outbox to the archives, with retry and bounded exponential backoff.

An archive that cannot be reached (:class:`ArchiveUnavailable`, :class:`ArchiveTimeout`) never fails an item:
the item waits, retried with backoff up to ``max_delay_s``, and goes when the archive returns.  An archive
that answers but refuses (another :class:`ArchiveError`, or the instance reported as skipped) costs an
attempt; after ``max_attempts`` the item is marked failed with the archive's reason.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from workstation.archive.client import ArchiveClient, ArchiveError, ArchiveTimeout, ArchiveUnavailable
from workstation.sync.outbox import Outbox, OutboxItem

__all__ = ["RetryPolicy", "SyncReport", "SyncWorker"]

ClientFor = Callable[[str], ArchiveClient]  # archive name -> client


@dataclass(frozen=True)
class RetryPolicy:
    base_delay_s: float = 1.0
    factor: float = 2.0
    max_delay_s: float = 300.0
    max_attempts: int = 8  # for refusals; an unreachable archive is retried for ever

    def delay(self, attempts: int) -> float:
        """The wait after the ``attempts``-th try (1, 2, ...): base * factor^(attempts-1), capped."""
        exponent = max(0, attempts - 1)
        if exponent > 60:
            return self.max_delay_s
        return min(self.max_delay_s, self.base_delay_s * self.factor ** exponent)


@dataclass(frozen=True)
class SyncReport:
    sent: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()  # archive unreachable: will be retried
    failed: tuple[str, ...] = ()  # refused max_attempts times


class SyncWorker:
    """Sends outbox items one by one through ``client_for(archive name)``."""

    def __init__(self, outbox: Outbox, client_for: ClientFor, policy: RetryPolicy | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.outbox = outbox
        self.client_for = client_for
        self.policy = policy or RetryPolicy()
        self._clock = clock
        self._clients: dict[str, ArchiveClient] = {}
        self.outbox.recover()

    def _client(self, name: str) -> ArchiveClient:
        if name not in self._clients:
            self._clients[name] = self.client_for(name)
        return self._clients[name]

    def run_once(self, archive: str | None = None) -> SyncReport:
        """Try every item that is due now (once each); an archive found down is not tried again this round."""
        sent, waiting, failed = [], [], []
        down: dict[str, str] = {}  # archive -> why it cannot be reached
        while True:
            item = self.outbox.claim_next(archive)
            if item is None:
                break
            if item.archive in down:  # don't hammer an archive that just refused the connection
                self.outbox.mark_retry(item, down[item.archive], self._clock() + self.policy.delay(item.attempts))
                waiting.append(item.sop_instance_uid)
                continue
            outcome = self._send(item)
            if outcome == "sent":
                sent.append(item.sop_instance_uid)
            elif outcome == "waiting":
                down[item.archive] = self.outbox.get(item.sop_instance_uid, item.archive).last_error
                waiting.append(item.sop_instance_uid)
            else:
                failed.append(item.sop_instance_uid)
        return SyncReport(tuple(sent), tuple(waiting), tuple(failed))

    def _send(self, item: OutboxItem) -> str:
        """Store one item; returns 'sent', 'waiting' or 'failed' (after recording it in the outbox)."""
        retry_at = self._clock() + self.policy.delay(item.attempts)
        if not item.path.exists():
            self.outbox.mark_failed(item, f"the outbox copy {item.path} is missing")
            return "failed"
        try:
            report = self._client(item.archive).store([item.path])
        except (ArchiveUnavailable, ArchiveTimeout) as exc:
            self.outbox.mark_retry(item, str(exc), retry_at)
            return "waiting"
        except (ArchiveError, OSError) as exc:
            return self._refused(item, str(exc) or type(exc).__name__, retry_at)
        stored = item.sop_instance_uid in report.imported or str(item.path) in report.duplicates
        if stored:
            self.outbox.mark_sent(item)
            return "sent"
        reasons = "; ".join(s.reason for s in report.skipped) or "the archive did not confirm the instance"
        return self._refused(item, reasons, retry_at)

    def _refused(self, item: OutboxItem, error: str, retry_at: float) -> str:
        if item.attempts >= self.policy.max_attempts:
            self.outbox.mark_failed(item, error)
            return "failed"
        self.outbox.mark_retry(item, error, retry_at)
        return "waiting"

    def drain(self, archive: str | None = None, timeout_s: float | None = None,
              stop: threading.Event | None = None, sleep: Callable[[float], None] = time.sleep) -> SyncReport:
        """Run until nothing is queued (or ``timeout_s`` passes, or ``stop`` is set), sleeping until due."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        sent, failed = [], []
        waiting: tuple[str, ...] = ()
        while not (stop is not None and stop.is_set()):
            report = self.run_once(archive)
            sent += report.sent
            failed += report.failed
            waiting = report.waiting
            due = self.outbox.next_due_at(archive)
            if due is None:
                break
            pause = max(0.0, due - self._clock())
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                pause = min(pause, left)
            if pause > 0:
                if stop is not None:
                    stop.wait(pause)
                else:
                    sleep(pause)
        return SyncReport(tuple(sent), tuple(waiting), tuple(failed))
