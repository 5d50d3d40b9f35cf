"""WADO-RS series retrieval: one streamed multipart response for the bulk, single instances for the middle.

A background thread streams the whole series as one ``multipart/related`` response (the fastest transfer
a server offers: one request, no per-instance round trips), writing each part to the cache as soon as its
last byte has arrived and reading where it lies from its header bytes.  When the stream is slow (a remote
archive) the caller meanwhile reads the series' metadata and fetches the few instances nearest the middle
one by one, so a useful image is on disk long before the stream reaches the middle.  Both sides skip
instances already cached, so nothing is written twice and an interrupted retrieval resumes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import requests

from workstation.archive._order import InstanceSpot
from workstation.archive._part10 import header_spot
from workstation.archive.cache import SeriesCache
from workstation.archive.client import ArchiveError, CancelToken, Progress, ProgressFn
from workstation.model.tasks import Cancelled

CHUNK = 1 << 20
_INDEX_BATCH = 64  # instances per cache-index transaction


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

    Scans only the newly arrived bytes for the delimiter and drops consumed bytes once per chunk (not once
    per part), so each byte is copied about twice whatever the sizes of parts and chunks.
    """
    marker = b"--" + boundary
    delimiter = b"\r\n" + marker
    buf = bytearray()
    pos = 0  # start of the bytes not consumed yet
    scan = 0  # where the search for the end of the current body resumes
    in_body = False
    for chunk in chunks:
        if pos:
            del buf[:pos]
            scan, pos = max(scan - pos, 0), 0
        buf += chunk
        while True:
            if not in_body:
                start = buf.find(marker, pos)
                if start < 0 or len(buf) < start + len(marker) + 2:
                    break
                if buf[start + len(marker) : start + len(marker) + 2] == b"--":
                    return  # the closing delimiter
                head_end = buf.find(b"\r\n\r\n", start)
                if head_end < 0:
                    break
                pos = scan = head_end + 4
                in_body = True
            end = buf.find(delimiter, scan)
            if end < 0:
                scan = max(pos, len(buf) - len(delimiter))
                break
            yield memoryview(buf)[pos:end].tobytes()
            pos = end + 2  # keep "--boundary..." for the next round
            in_body = False
    if in_body:
        raise ArchiveError("the archive's multipart message ended in the middle of an instance")


def _floats(value, count: int) -> tuple[float, ...] | None:
    values = [value] if isinstance(value, (int, float)) else list(value or ())
    return tuple(float(v) for v in values[:count]) if len(values) >= count else None


def spot_of(body: bytes) -> InstanceSpot:
    """SOP Instance UID and geometry of a DICOM file in memory (sop_uid "" when it has none).

    The raw header walk (:func:`header_spot`) answers for plain little-endian files; pydicom for the rest."""
    spot = header_spot(body)
    if spot is not None:
        return spot
    from pydicom import dcmread

    try:
        ds = dcmread(BytesIO(body), stop_before_pixels=True, force=True,
                     specific_tags=["SOPInstanceUID", "InstanceNumber", "ImagePositionPatient", "ImageOrientationPatient"])
        meta = getattr(ds, "file_meta", None)
        sop = (str(meta.get("MediaStorageSOPInstanceUID", "")) if meta is not None else "") or str(
            ds.get("SOPInstanceUID", ""))
    except Exception:  # noqa: BLE001 - not DICOM: the instance is fetched on its own later
        return InstanceSpot("")
    try:
        pos, ori, number = (ds.get(k) for k in ("ImagePositionPatient", "ImageOrientationPatient", "InstanceNumber"))
        return InstanceSpot(sop, _floats(pos, 3), _floats(ori, 6), int(number) if number not in (None, "") else None)
    except (TypeError, ValueError):  # unreadable geometry: ordered by whatever else is known
        return InstanceSpot(sop)


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
        self._unindexed: list[tuple[str, Path, int]] = []  # written, not yet in the cache index
        self.spots: dict[str, InstanceSpot] = {}  # geometry read from the streamed instances' headers
        self.unnamed = 0  # streamed parts without a SOP Instance UID (not written)

    def needed(self, sop: str) -> bool:
        with self._lock:
            return sop not in self.written and not self.cache.has(sop)

    def write(self, sop: str, body: bytes) -> None:
        """Put one instance into the cache (atomically) unless it is there already; report progress.

        The cache index learns of written instances in batches (:meth:`flush`): one SQLite transaction per
        batch instead of one per instance.  An instance file not yet indexed when the process dies is
        indexed when its series completes (:meth:`CacheIndex.mark_complete`)."""
        if not self.needed(sop):
            return
        path, size = self.cache.write_bytes(sop, [body], record=False)
        with self._lock:
            if sop in self.written:
                return
            self.written.add(sop)
            self.bytes += size
            self._unindexed.append((sop, path, size))
            batch = len(self._unindexed) >= _INDEX_BATCH
            self._report()
        if batch:
            self.flush()

    def flush(self) -> None:
        """Record the instances written so far in the cache index (one transaction)."""
        with self._lock:
            rows, self._unindexed = self._unindexed, []
        if rows:
            self.cache.record_many(rows)

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
    """GET the whole series as one multipart stream and write each instance as it completes, noting where
    each lies (``tally.spots``).

    (A writer thread, and a reader thread draining the socket ahead, were measured: no faster on two cores
    shared with the server, so neither is used.)"""
    with session.get(url, headers={"Accept": accept}, timeout=timeout, stream=True) as response:
        response.raise_for_status()
        boundary = boundary_of(response)
        if boundary is None:
            raise ArchiveError(f"the archive answered a series retrieval with {response.headers.get('Content-Type')!r}"
                               ", not a multipart message")
        for body in iter_parts(response.iter_content(CHUNK), boundary):
            if tally.stop.is_set():
                return
            spot = spot_of(body)
            if spot.sop_uid:
                tally.spots[spot.sop_uid] = spot
                tally.write(spot.sop_uid, body)
            else:
                tally.unnamed += 1
