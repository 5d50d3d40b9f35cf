"""WADO-RS series retrieval: one streamed multipart response for the bulk, single instances for the middle.

A series is retrieved two ways at once: a background thread streams the whole series as one
``multipart/related`` response (the fastest transfer a server offers: one request, no per-instance round
trips), writing each part to the cache as soon as its last byte has arrived; meanwhile the caller fetches
the few instances nearest the middle of the series one by one, so a useful first image is on disk long
before the stream reaches the middle.  Both sides skip instances already cached, so nothing is written
twice and an interrupted retrieval resumes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from io import BytesIO

import requests

from workstation.archive.cache import SeriesCache
from workstation.archive.client import ArchiveError, CancelToken, Progress, ProgressFn
from workstation.model.tasks import Cancelled

CHUNK = 1 << 20


def boundary_of(response: requests.Response) -> bytes | None:
    ctype = response.headers.get("Content-Type", "")
    if not ctype.lower().startswith("multipart/"):
        return None
    for param in ctype.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            return value.strip().strip('"').encode()
    return None


def iter_parts(chunks: Iterator[bytes], boundary: bytes) -> Iterator[bytes]:
    """The bodies of a multipart message, each yielded as soon as it is complete.

    Scans only the newly arrived bytes for the delimiter, so large parts cost linear time.
    """
    marker = b"--" + boundary
    delimiter = b"\r\n" + marker
    buf = bytearray()
    in_body = False
    scan = 0
    for chunk in chunks:
        buf += chunk
        while True:
            if not in_body:
                start = buf.find(marker)
                if start < 0 or len(buf) < start + len(marker) + 2:
                    break
                if buf[start + len(marker) : start + len(marker) + 2] == b"--":
                    return  # the closing delimiter
                head_end = buf.find(b"\r\n\r\n", start)
                if head_end < 0:
                    break
                del buf[: head_end + 4]
                in_body, scan = True, 0
            end = buf.find(delimiter, scan)
            if end < 0:
                scan = max(0, len(buf) - len(delimiter))
                break
            yield bytes(buf[:end])
            del buf[: end + 2]  # keep "--boundary..." for the next round
            in_body = False
    if in_body:
        raise ArchiveError("the archive's multipart message ended in the middle of an instance")


def sop_uid_of(body: bytes) -> str:
    """The SOP Instance UID of a DICOM file in memory (file meta, else the dataset)."""
    from pydicom import dcmread

    ds = dcmread(BytesIO(body), stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    meta = getattr(ds, "file_meta", None)
    uid = str(meta.get("MediaStorageSOPInstanceUID", "")) if meta is not None else ""
    return uid or str(ds.get("SOPInstanceUID", ""))


class Tally:
    """Instances and bytes written by every thread of one retrieval; reports progress under a lock.

    ``done`` counts the instances that were already cached (``already``) plus those written since.
    """

    def __init__(self, cache: SeriesCache, progress: ProgressFn | None, cancel: CancelToken | None) -> None:
        self.cache, self.progress, self.cancel = cache, progress, cancel
        self.total = 0  # 0 until the series' metadata has arrived
        self.already = 0
        self.written: set[str] = set()
        self.bytes = 0
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def needed(self, sop: str) -> bool:
        with self._lock:
            return sop not in self.written and not self.cache.has(sop)

    def write(self, sop: str, body: bytes) -> None:
        """Put one instance into the cache (atomically) unless it is there already; report progress."""
        if not self.needed(sop):
            return
        _, size = self.cache.write_bytes(sop, [body])
        with self._lock:
            if sop in self.written:
                return
            self.written.add(sop)
            self.bytes += size
            self._report()

    def start(self, total: int, already: int) -> None:
        with self._lock:
            self.total, self.already = total, already
            self._report()

    def _report(self) -> None:
        if self.progress is None:
            return
        done = self.already + len(self.written)
        if self.total:
            done = min(done, self.total)
        self.progress(Progress(done, self.total, f"{done} of {self.total or '?'} instances", self.bytes))

    def check(self) -> None:
        """Raise Cancelled when the user cancelled (and tell the other threads to stop)."""
        if self.cancel is not None and self.cancel.cancelled:
            self.stop.set()
            raise Cancelled()


def stream_series(session: requests.Session, url: str, accept: str, timeout: float, tally: Tally) -> None:
    """GET the whole series as one multipart stream and write each instance as it completes."""
    with session.get(url, headers={"Accept": accept}, timeout=timeout, stream=True) as response:
        response.raise_for_status()
        boundary = boundary_of(response)
        if boundary is None:
            raise ArchiveError(f"the archive answered a series retrieval with {response.headers.get('Content-Type')!r}"
                               ", not a multipart message")
        for body in iter_parts(response.iter_content(CHUNK), boundary):
            if tally.stop.is_set():
                return
            sop = sop_uid_of(body)
            if sop:
                tally.write(sop, body)
