"""The sync service the application runs: one outbox and one worker thread that drains it to the archives.

The thread sleeps until an item is due (or :meth:`SyncService.wake` is called after an enqueue or a
"retry now"), drains with the worker's retry and backoff, and goes back to sleep.  The outbox is the one
``workstation sync status`` reads (``<home>/outbox``), so the window and the command line always agree.
Readers (the status panel) use their own SQLite connection; the worker thread has its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from workstation.sync.outbox import Outbox, OutboxError, OutboxItem
from workstation.sync.worker import ClientFor, RetryPolicy, SyncWorker

__all__ = ["SyncService"]


class SyncService:
    """Owns the outbox folder and the worker thread; thread-safe ``enqueue``, ``items``, ``retry_now``."""

    def __init__(self, folder: Path | str, client_for: ClientFor, policy: RetryPolicy | None = None,
                 idle_s: float = 5.0) -> None:
        self.folder = Path(folder)
        self._client_for = client_for
        self._policy = policy or RetryPolicy(base_delay_s=2.0, max_delay_s=300.0)
        self._idle_s = idle_s
        self._reader = Outbox(self.folder)  # for the calling (GUI) thread
        self._lock = threading.Lock()  # one caller at a time on the reader connection
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.last_error = ""  # why the worker thread last stopped unexpectedly ("" while healthy)
        self.listeners: list[Callable[[], None]] = []  # called (on the worker thread) after each pass

    # -- the worker thread -----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sync-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        with Outbox(self.folder) as outbox:
            worker = SyncWorker(outbox, self._client_for, self._policy)
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    worker.run_once()
                    self.last_error = ""
                except Exception as exc:  # noqa: BLE001 - the thread must survive a broken client factory
                    self.last_error = f"{type(exc).__name__}: {exc}"
                self._notify()
                due = outbox.next_due_at()
                pause = self._idle_s if due is None else min(self._idle_s, max(0.0, due - time.time()))
                self._wake.wait(pause)

    def _notify(self) -> None:
        for listener in list(self.listeners):
            try:
                listener()
            except Exception:  # noqa: BLE001,S110 - a listener's bug must not stop the sync
                pass

    # -- for the application ---------------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def enqueue(self, path: Path | str, archive: str) -> OutboxItem:
        with self._lock:
            if self._closed:
                raise OutboxError(f"{path}: the sync service is closed; nothing can be queued")
            item = self._reader.enqueue(path, archive)
        self.wake()
        return item

    def items(self) -> list[OutboxItem]:
        """The outbox's items ([] once closed: a panel's last refresh may come after the service closed)."""
        with self._lock:
            return [] if self._closed else self._reader.items()

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {} if self._closed else self._reader.counts()

    def retry_now(self, archive: str | None = None) -> int:
        with self._lock:
            n = 0 if self._closed else self._reader.retry_now(archive)
        self.wake()
        return n

    def close(self) -> None:
        self.stop()
        with self._lock:
            if not self._closed:
                self._closed = True
                self._reader.close()
