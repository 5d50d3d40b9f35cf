"""Background retrieval of several series at once, with bounded concurrency, per-series progress and cancel.

The viewer asks for the series the radiologist opened *first* (:meth:`Prefetcher.request` with
``first=True`` puts it at the head of the queue) and queues the study's other series behind it, so they keep
downloading while the first is read.  A series is retrieved once however often it is asked for: a second
request gets the same future.  Every retrieval goes through the client's ``fetch_series`` (cache first,
resumable), so a cancelled one resumes where it stopped next time.  :meth:`Prefetcher.pause` holds the queue
(retrievals already running go on) until :meth:`Prefetcher.resume`, e.g. while a slow link is needed for
the series on screen.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path

from workstation.archive.client import ArchiveClient, Cancelled, CancelToken, Progress
from workstation.model.refs import SeriesRef

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"


@dataclass(frozen=True)
class SeriesProgress:
    """Where one series' retrieval stands."""

    series_uid: str
    state: str = QUEUED
    done: int = 0  # instances
    total: int = 0  # 0 = not yet known
    bytes_done: int = 0
    seconds: float = 0.0  # since the retrieval started
    error: str = ""
    from_cache: bool = False  # complete in the client's cache before it started: no transfer, no rate

    @property
    def megabytes(self) -> float:
        return self.bytes_done / 1e6

    @property
    def mb_per_s(self) -> float:
        return self.megabytes / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Job:
    ref: SeriesRef
    future: Future
    token: CancelToken
    status: SeriesProgress
    started: float = 0.0


def _takes_study_uid(client: ArchiveClient) -> bool:
    try:
        return "study_instance_uid" in inspect.signature(client.fetch_series).parameters
    except (TypeError, ValueError):
        return False


class Prefetcher:
    """Retrieve series from one archive on at most ``concurrency`` worker threads.

    ``on_progress`` is called from worker threads with a :class:`SeriesProgress` (a UI relays it to its
    own thread).  Futures resolve to the series' file paths, or raise the retrieval's error / Cancelled.
    """

    def __init__(self, client: ArchiveClient, concurrency: int = 3,
                 on_progress: Callable[[SeriesProgress], None] | None = None) -> None:
        limit = getattr(client, "parallel_retrievals", concurrency)
        self.client = client
        self.concurrency = max(1, min(int(concurrency), int(limit)))
        self.on_progress = on_progress
        self._pass_study = _takes_study_uid(client)
        self._jobs: dict[str, _Job] = {}
        self._queue: deque[str] = deque()
        self._cond = threading.Condition()
        self._workers: list[threading.Thread] = []
        self._closed = False
        self._paused = False

    # -- asking ------------------------------------------------------------------------------------------------
    def request(self, ref: SeriesRef, first: bool = False) -> Future:
        """Queue a series (or move it to the head with ``first``); returns its future."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the prefetcher is closed")
            uid = ref.series_instance_uid
            job = self._jobs.get(uid)
            if job is not None and job.status.state in (FAILED, CANCELLED):
                job = None  # ask again: resumes what is cached
            if job is None:
                job = _Job(ref, Future(), CancelToken(), SeriesProgress(uid))
                self._jobs[uid] = job
                self._queue.append(uid)
                self._set(job, job.status)  # listeners see it queued
            if first and uid in self._queue:
                self._queue.remove(uid)
                self._queue.appendleft(uid)
            self._spawn()
            self._cond.notify()
            return job.future

    def request_all(self, refs: Iterable[SeriesRef]) -> list[Future]:
        return [self.request(r) for r in refs]

    def progress(self) -> dict[str, SeriesProgress]:
        with self._cond:
            return {uid: job.status for uid, job in self._jobs.items()}

    def cancel(self, series_uid: str | None = None) -> None:
        """Cancel one series (queued or running), or every one."""
        with self._cond:
            uids = [series_uid] if series_uid else list(self._jobs)
            for uid in uids:
                job = self._jobs.get(uid)
                if job is None or job.future.done():
                    continue
                job.token.cancel()
                if uid in self._queue:
                    self._queue.remove(uid)
                    self._finish(job, CANCELLED, exc=Cancelled())

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """Start no queued retrieval until :meth:`resume` (running ones finish; cancel stays possible)."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._spawn()
            self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until nothing is queued or running; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._queue or any(j.status.state == RUNNING for j in self._jobs.values()):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, wait: bool = True) -> None:
        """Cancel everything and stop the workers."""
        self.cancel()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            workers = list(self._workers)
        if wait:
            for t in workers:
                t.join()

    # -- working -------------------------------------------------------------------------------------------------
    def _spawn(self) -> None:
        if self._paused:
            return  # resume() spawns
        self._workers = [t for t in self._workers if t.is_alive()]
        busy = sum(1 for j in self._jobs.values() if j.status.state == RUNNING)
        idle = len(self._workers) - busy
        while idle < len(self._queue) and len(self._workers) < self.concurrency:
            t = threading.Thread(target=self._work, name="prefetch", daemon=True)
            self._workers.append(t)
            t.start()
            idle += 1

    def _next(self) -> _Job | None:
        with self._cond:
            while (not self._queue or self._paused) and not self._closed:
                if not self._cond.wait(2.0):
                    return None  # idle: let the thread end; request() starts another
            if self._closed:
                return None
            job = self._jobs[self._queue.popleft()]
            job.started = time.monotonic()
            self._set(job, replace(job.status, state=RUNNING))
            return job

    def _work(self) -> None:
        while (job := self._next()) is not None:
            try:
                paths = self._fetch(job)
            except Cancelled as exc:
                self._finish(job, CANCELLED, exc=exc)
            except Exception as exc:  # noqa: BLE001 - handed to whoever waits on the future
                self._finish(job, FAILED, exc=exc)
            else:
                self._finish(job, DONE, result=paths)

    def _fetch(self, job: _Job) -> list[Path]:
        index = getattr(self.client, "cache_index", None)
        if index is not None and index.complete_files(job.ref.series_instance_uid) is not None:
            with self._cond:
                self._set(job, replace(job.status, from_cache=True))

        def progress(p: Progress) -> None:
            with self._cond:
                if job.status.state != RUNNING:
                    return  # a late report (another thread of the retrieval) after the end: keep the end
                self._set(job, replace(job.status, done=p.done, total=p.total, bytes_done=p.bytes_done,
                                       seconds=time.monotonic() - job.started))

        kwargs = {"study_instance_uid": job.ref.study_instance_uid} if self._pass_study else {}
        return self.client.fetch_series(job.ref.series_instance_uid, progress, job.token, **kwargs)

    def _finish(self, job: _Job, state: str, result=None, exc: BaseException | None = None) -> None:
        with self._cond:
            error = "" if exc is None or isinstance(exc, Cancelled) else str(exc) or type(exc).__name__
            total = job.status.total or (len(result) if result is not None else 0)
            done = total if state == DONE else job.status.done
            seconds = time.monotonic() - job.started if job.started else 0.0
            self._set(job, replace(job.status, state=state, error=error, done=done, total=total, seconds=seconds))
            self._cond.notify_all()
        if exc is not None:
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)

    def _set(self, job: _Job, status: SeriesProgress) -> None:
        job.status = status
        if self.on_progress is not None:
            self.on_progress(status)
