"""DIMSE retrieval, middle slices first, for :mod:`workstation.archive.dimse`.

One association does the whole job.  From scratch, two one-answer C-FINDs name the instance numbered in
the middle of the series (how many instances; which one has number (n+1)/2), and it is retrieved alone.
Then the rest comes in one SERIES-level request, and the order of the series is read from the headers of
the instances themselves (where each lies, as the WADO-RS stream does): listing a long series first took
about as long as retrieving it.  Otherwise (a resumption, an archive that does not count instances or
numbers them otherwise, headers that do not tell, or the bulk shared among several associations) a C-FIND at
IMAGE level lists the instances (with their positions when the archive returns them; the answers are read
without pydicom), and C-GET or C-MOVE asks for the spatial middle alone if the guess was not it, then for
the rest, ordered middle-out, in lists of at most :data:`MAX_LIST` SOP Instance UIDs.  Instances already in
the cache are never asked for, so an interrupted retrieval resumes.

What arrives is written as it came (the encoded bytes of the C-STORE request behind a file meta header:
nothing is decoded or re-encoded), atomically, without fsync; the cache index is updated once per request.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from io import BytesIO
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset
from pynetdicom.dsutils import encode_file_meta

from workstation.archive._dimse_raw import file_meta
from workstation.archive._order import InstanceSpot, middle_out, spatial_order
from workstation.archive._part10 import dataset_spot, header_spot
from workstation.archive.client import CancelToken, Progress, ProgressFn

if TYPE_CHECKING:
    from workstation.archive.cache import SeriesCache

#: SOP Instance UIDs per IMAGE-level retrieval request: a list longer than ~1000 UIDs no longer fits the
#: 64 KiB value of an explicit-VR identifier, and some peers choke well before.
MAX_LIST = 256
#: Instances nearest the middle asked for alone before the rest.
FIRST = 1
GEOMETRY_KEYS = ("InstanceNumber", "ImagePositionPatient", "ImageOrientationPatient")
_PREAMBLE = b"\x00" * 128 + b"DICM"
#: Bytes of an arriving instance kept to read where it lies (the elements up to (0020,0037) nearly always).
HEAD_BYTES = 1 << 14


def image_query(study: str, series: str, geometry: bool = True) -> Dataset:
    """The IMAGE-level C-FIND identifier listing a series' instances (and where they lie)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.SOPInstanceUID = ""
    for keyword in GEOMETRY_KEYS if geometry else GEOMETRY_KEYS[:1]:
        setattr(ds, keyword, "")
    return ds


def _floats(ds: Dataset, keyword: str, count: int) -> tuple[float, ...] | None:
    try:
        value = ds.get(keyword)  # a malformed DS fails here already
        numbers = tuple(float(v) for v in value) if value is not None else ()
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count else None


def spots_of(answers: Sequence[Dataset]) -> list[InstanceSpot]:
    """The answered instances in spatial order (by instance number where positions are missing)."""
    spots = []
    for m in answers:
        sop = str(m.get("SOPInstanceUID", "") or "").strip()
        if not sop:
            continue
        try:
            number = int(str(m.get("InstanceNumber", "") or "").strip())
        except (TypeError, ValueError):
            number = None
        spots.append(InstanceSpot(sop, _floats(m, "ImagePositionPatient", 3),
                                  _floats(m, "ImageOrientationPatient", 6), number))
    return spatial_order(spots)


def spots_of_raw(answers: Sequence[bytes], syntax) -> list[InstanceSpot]:
    """:func:`spots_of` for encoded answers in the transfer syntax ``syntax``: read without pydicom (it
    takes ~0.15 ms an answer, most of a long series' listing), pydicom for those that do not walk."""
    from pynetdicom.dsutils import decode

    spots = []
    for raw in answers:
        spot = dataset_spot(raw, syntax.is_implicit_VR) if syntax.is_little_endian else None
        if spot is None:
            spots.extend(spots_of([decode(BytesIO(raw), syntax.is_implicit_VR, syntax.is_little_endian)]))
        elif spot.sop_uid:
            spots.append(spot)
    return spatial_order(spots)


def count_query(study: str, series: str) -> Dataset:
    """The SERIES-level identifier asking how many instances the series has."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.NumberOfSeriesRelatedInstances = ""
    return ds


def instance_count(archive, study: str, series: str) -> int | None:
    """How many instances ``archive`` (a DimseArchive) holds in the series, by one SERIES-level C-FIND
    (waiting at most :data:`~workstation.archive._freshness.CHECK_TIMEOUT_S` for each step; after one that
    got no answer, not asked again for a minute: see :mod:`~workstation.archive._freshness`); None when it
    cannot tell: unreachable or silent, refusing, or not counting."""
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as find_model

    from workstation.archive._freshness import CHECK_TIMEOUT_S
    from workstation.archive.client import ArchiveError, ArchiveTimeout, ArchiveUnavailable

    if archive.freshness.skip():
        return None
    wait = min(CHECK_TIMEOUT_S, archive.timeout)
    ae = archive._ae(wait)
    ae.add_requested_context(find_model)
    try:
        with archive._association(ae, timeout=wait) as assoc:
            matches = archive._find_on(assoc, count_query(study, series), f"counting the instances of {series}")
    except (ArchiveUnavailable, ArchiveTimeout):
        archive.freshness.unanswered()
        return None
    except ArchiveError:
        return None
    archive.freshness.answered()
    if len(matches) != 1:
        return None
    value = matches[0].get("NumberOfSeriesRelatedInstances", None)
    try:
        count = int(value) if value not in (None, "") else 0
    except (TypeError, ValueError):
        return None
    return count or None


def numbered_query(study: str, series: str, number: int) -> Dataset:
    """The IMAGE-level identifier finding the instance with this Instance Number."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.SOPInstanceUID = ""
    ds.InstanceNumber = str(number)
    return ds


def retrieve_identifier(study: str, series: str, sops: list[str] | None) -> Dataset:
    """C-GET / C-MOVE identifier: these instances (list matching), or the whole series for None."""
    ds = Dataset()
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    if sops is None:
        ds.QueryRetrieveLevel = "SERIES"
    else:
        ds.QueryRetrieveLevel = "IMAGE"
        ds.SOPInstanceUID = sops if len(sops) > 1 else sops[0]
    return ds


def batches(ordered_missing: Sequence[str], whole_series: bool, first_alone: bool = True) -> list[list[str] | None]:
    """Retrieval requests for the missing instances, given middle-out: the first alone (unless it is in hand
    already), then the rest in lists of at most MAX_LIST UIDs.  ``None`` stands for "the whole series" (a
    SERIES-level request, used when nothing was cached and the rest is too long for one list; the peer
    resends the instances already received, which are then ignored)."""
    if not ordered_missing:
        return []
    count = FIRST if first_alone else 0
    first, rest = [list(ordered_missing[:count])] if count else [], list(ordered_missing[count:])
    if not rest:
        return first
    if whole_series and len(rest) > MAX_LIST:
        return [*first, None]
    return [*first, *(rest[i : i + MAX_LIST] for i in range(0, len(rest), MAX_LIST))]


def middle_out_missing(spots: Sequence[InstanceSpot], cache: SeriesCache) -> list[str]:
    return [s.sop_uid for s in middle_out(spots) if not cache.has(s.sop_uid)]


class _Incoming:
    """An arriving instance's file: a write that fails leaves it failed (the C-STORE is answered 0xA700)."""

    __slots__ = ("file", "error", "head")

    def __init__(self, cache: SeriesCache, sop: str, header: bytes) -> None:
        self.file, self.error = None, None
        self.head = bytearray(header)  # the file's first bytes, where it lies is read from (header_spot)
        try:
            self.file = cache.open_instance(sop)
            self.file.write(header)
        except OSError as exc:
            self.error = exc
            self.discard()

    def write(self, data) -> None:
        if len(self.head) < HEAD_BYTES:
            self.head += data[: HEAD_BYTES - len(self.head)]
        if self.file is None:
            return
        try:
            self.file.write(data)
        except OSError as exc:
            self.error = exc
            self.discard()

    def commit(self):
        if self.file is None:
            raise self.error or OSError("not written")
        file, self.file = self.file, None
        return file.commit()

    def discard(self) -> None:
        if self.file is not None:
            self.file.discard()
            self.file = None


class Receiver:
    """Writes what a peer sends by C-STORE (C-GET sub-operations or our C-MOVE storage SCP) into the cache,
    each instance once, and reports progress; called from pynetdicom's threads."""

    def __init__(self, cache: SeriesCache, progress: ProgressFn | None, cancel: CancelToken | None) -> None:
        self.cache, self.progress, self.cancel = cache, progress, cancel
        self.cache_had_files = bool(cache.files())  # a resumption, not a retrieval from scratch
        self.total = self.already = 0
        self.written: set[str] = set()
        self.bytes = 0
        self._unindexed: list[tuple[str, object, int]] = []
        self._lock = threading.Lock()
        #: Where each instance written lies, read from its header (None: the header walk could not tell).
        self.spots: dict[str, InstanceSpot | None] = {}

    def start(self, total: int, already: int) -> None:
        """The series has ``total`` instances, ``already`` of them in the cache before this retrieval."""
        with self._lock:
            self.total, self.already = total, already
            done = already + len(self.written)
        if self.progress is not None:
            text = f"{done} of {total} instances" + (" already cached" if already and done == already else "")
            self.progress(Progress(done, total, text, self.bytes))

    def cancel_requested(self) -> bool:
        return self.cancel is not None and self.cancel.cancelled

    def on_store(self, event) -> int:
        """EVT_C_STORE handler: 0x0000 stored (or already had it), 0xA700 out of resources / cancelled."""
        if self.cancel_requested():
            return 0xA700
        sop = str(event.request.AffectedSOPInstanceUID)
        with self._lock:
            if sop in self.written:
                return 0x0000
        if self.cache.has(sop):
            return 0x0000
        try:
            header = _PREAMBLE + encode_file_meta(event.file_meta)
            data = event.request.DataSet.getbuffer()
            path, size = self.cache.write_bytes(sop, [header, data], record=False)
        except OSError:
            return 0xA700  # the cache folder cannot be written
        self._record(sop, header_spot(header + bytes(data[:HEAD_BYTES])), path, size)
        return 0x0000

    def open_raw(self, sop: str, sop_class: str, transfer_syntax: str) -> _Incoming | None:
        """Where the dataset of an instance arriving by C-STORE is written, piece by piece, behind its file
        meta header (the raw C-GET of :mod:`~workstation.archive._dimse_raw`); None when it is in hand."""
        with self._lock:
            if sop in self.written:
                return None
        if not sop or (self.cache_had_files and self.cache.has(sop)):
            return None  # (a retrieval from scratch need not look: see Tally.needed in _wado)
        return _Incoming(self.cache, sop, file_meta(sop_class, sop, transfer_syntax))

    def close_raw(self, sop: str, incoming: _Incoming | None) -> int:
        """The instance's last piece arrived: move it into place, count it, report progress; the C-STORE
        status (0xA700 when the cache folder cannot be written)."""
        if incoming is None:
            return 0x0000
        try:
            path, size = incoming.commit()
        except OSError:
            return 0xA700
        self._record(sop, header_spot(bytes(incoming.head)), path, size)
        return 0x0000

    def _record(self, sop: str, spot, path, size: int) -> None:
        """Count an instance now in the cache (once) and report progress."""
        with self._lock:  # reported under the lock: several associations write at once, counts only go up
            if sop in self.written:
                return
            self.spots[sop] = spot
            self.written.add(sop)
            self._unindexed.append((sop, path, size))
            self.bytes += size
            self._report(self.already + len(self.written), self.bytes)

    def spots_in_order(self, count: int) -> list[InstanceSpot] | None:
        """The instances written, in spatial order, when they are the whole series (``count`` of them) and
        each header told where it lies; None otherwise (the series is listed then)."""
        with self._lock:
            spots = list(self.spots.values())
        if len(spots) != count or any(s is None or not s.sop_uid for s in spots):
            return None
        return spatial_order(spots)

    def flush_index(self) -> None:
        """Record what was written since the last flush in the cache index (one transaction)."""
        with self._lock:
            rows, self._unindexed = self._unindexed, []
        self.cache.record_many(rows)

    def _report(self, done: int, nbytes: int) -> None:
        if self.progress is not None:
            self.progress(Progress(done, self.total, f"{done} of {self.total} instances", nbytes))
