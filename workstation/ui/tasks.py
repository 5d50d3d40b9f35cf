"""Background work off the GUI thread, with progress, cancel and user-facing errors.

A task is a plain function ``fn(progress, cancel) -> result``; ``progress`` takes a
:class:`~workstation.archive.client.Progress` and ``cancel`` is a
:class:`~workstation.archive.client.CancelToken` the function checks.  :meth:`TaskRunner.submit` returns a
:class:`TaskHandle` whose Qt signals (``progress``, ``finished``, ``failed``, ``cancelled``) are always
delivered on the GUI thread.

``TaskRunner(synchronous=True)`` (or ``WORKSTATION_SYNC_TASKS=1``) runs each task inline, in the calling
thread, before ``submit`` returns -- the switch that makes GUI tests deterministic (napari's async slicing
has the same idea).
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal

from workstation.archive.client import ArchiveError, Cancelled, CancelToken, Progress
from workstation.ui.qt_compat import emit, emitter

log = logging.getLogger(__name__)

TaskFn = Callable[[Callable[[Progress], None], CancelToken], Any]


def user_message(exc: BaseException) -> str:
    """A sentence for the user: our own errors carry one; others get their type and text."""
    if isinstance(exc, ArchiveError):
        return str(exc) or type(exc).__name__
    text = str(exc).strip()
    if isinstance(exc, (OSError, ValueError)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Relay(QObject):
    """Carries a worker thread's emits to the GUI thread (queued), where the handle re-emits them."""

    progress = Signal(object)
    outcome = Signal(str, object)  # ("finished" | "failed" | "cancelled", payload)


class TaskHandle(QObject):
    """Signals of one task, always emitted on the thread that created the handle (the GUI thread)."""

    progress = Signal(object)  # Progress
    finished = Signal(object)  # the result
    failed = Signal(str)  # message for the user
    cancelled = Signal()
    done = Signal()  # after any of finished / failed / cancelled

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.token = CancelToken()
        self.result: Any = None
        self.error: str | None = None
        self.is_done = False
        self._relay = _Relay()
        self._relay.progress.connect(self.progress, Qt.ConnectionType.QueuedConnection)
        self._relay.outcome.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    def cancel(self) -> None:
        self.token.cancel()

    def _deliver(self, kind: str, payload: Any) -> None:
        if kind == "finished":
            self.result = payload
            emit(self.finished, payload)
        elif kind == "failed":
            self.error = payload
            emit(self.failed, payload)
        else:
            emit(self.cancelled)
        self.is_done = True
        emit(self.done)

    def _execute(self, fn: TaskFn, report_progress: Callable[[Progress], None]) -> tuple[str, Any]:
        try:
            result = fn(report_progress, self.token)
        except Cancelled:
            return "cancelled", None
        except (ArchiveError, ValueError) as exc:  # expected: bad input, told to the user
            log.warning("task %s failed: %s", self.name, user_message(exc))
            return "failed", user_message(exc)
        except Exception as exc:  # noqa: BLE001 - every failure must reach the user, never kill the app
            log.error("task %s failed:\n%s", self.name, traceback.format_exc())
            return "failed", user_message(exc)
        return ("cancelled", None) if self.token.cancelled else ("finished", result)

    def run_inline(self, fn: TaskFn) -> None:
        self._deliver(*self._execute(fn, emitter(self.progress)))

    def run_in_worker(self, fn: TaskFn) -> None:
        emit(self._relay.outcome, *self._execute(fn, emitter(self._relay.progress)))


class _Runnable(QRunnable):
    def __init__(self, handle: TaskHandle, fn: TaskFn) -> None:
        super().__init__()
        self.handle = handle
        self.fn = fn
        self.setAutoDelete(True)

    def run(self) -> None:
        self.handle.run_in_worker(self.fn)


class TaskRunner(QObject):
    """Runs tasks on a thread pool (or inline when ``synchronous``)."""

    def __init__(self, synchronous: bool | None = None, max_threads: int = 4, parent: QObject | None = None) -> None:
        super().__init__(parent)
        if synchronous is None:
            synchronous = os.environ.get("WORKSTATION_SYNC_TASKS") == "1"
        self.synchronous = synchronous
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self._live: set[TaskHandle] = set()

    def submit(self, name: str, fn: TaskFn, *, on_done: Callable[[Any], None] | None = None,
               on_failed: Callable[[str], None] | None = None,
               on_progress: Callable[[Progress], None] | None = None,
               setup: Callable[[TaskHandle], None] | None = None) -> TaskHandle:
        """Start ``fn``; the callbacks (and ``setup(handle)``) are connected before it starts, so no
        signal is lost in synchronous mode."""
        handle = TaskHandle(name, self)
        if setup is not None:
            setup(handle)
        if on_done is not None:
            handle.finished.connect(on_done)
        if on_failed is not None:
            handle.failed.connect(on_failed)
        if on_progress is not None:
            handle.progress.connect(on_progress)
        self._live.add(handle)
        handle.done.connect(lambda h=handle: self._live.discard(h))
        if self.synchronous:
            handle.run_inline(fn)
        else:
            self.pool.start(_Runnable(handle, fn))
        return handle

    def active(self) -> list[TaskHandle]:
        return [h for h in self._live if not h.is_done]

    def cancel_all(self) -> None:
        for h in list(self._live):
            h.cancel()

    def wait(self, msecs: int = -1) -> bool:
        """Block until every pooled task finished (tests and shutdown)."""
        return self.pool.waitForDone(msecs)
