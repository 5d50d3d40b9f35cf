"""DIMSE retrieval, middle slices first, for :mod:`workstation.archive.dimse`.

One association does the whole job.  From scratch, two one-answer C-FINDs name the instance numbered in
the middle of the series (how many instances; which one has number (n+1)/2), and it is retrieved alone: the
full IMAGE-level list of a long series takes pynetdicom far longer to decode than that.  Then a C-FIND at
IMAGE level lists the instances (with their positions when the archive returns them), and C-GET or C-MOVE
asks for the spatial middle alone if the guess was not it, then for the rest, ordered middle-out, in lists of
at most :data:`MAX_LIST` SOP Instance UIDs (a long series retrieved from scratch: the rest as one
SERIES-level request).  Instances already in the cache are never asked for, so an interrupted retrieval
resumes; an archive that does not count instances or numbers them otherwise just skips the first step.

What arrives is written as it came (the encoded bytes of the C-STORE request behind a file meta header:
nothing is decoded or re-encoded), atomically, without fsync; the cache index is updated once per request.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset
from pynetdicom.dsutils import encode_file_meta

from workstation.archive._order import InstanceSpot, middle_out, spatial_order
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
    (connecting for at most 3 s); None when it cannot tell: unreachable, refusing, or not counting."""
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as find_model

    from workstation.archive.client import ArchiveError

    ae = archive._ae()
    ae.connection_timeout = min(3.0, archive.timeout)
    ae.add_requested_context(find_model)
    try:
        with archive._association(ae) as assoc:
            matches = archive._find_on(assoc, count_query(study, series), f"counting the instances of {series}")
    except ArchiveError:
        return None
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
            path, size = self.cache.write_bytes(sop, [header, event.request.DataSet.getbuffer()], record=False)
        except OSError:
            return 0xA700  # the cache folder cannot be written
        with self._lock:
            if sop in self.written:
                return 0x0000
            self.written.add(sop)
            self._unindexed.append((sop, path, size))
            self.bytes += size
            done, nbytes = self.already + len(self.written), self.bytes
        self._report(done, nbytes)
        return 0x0000

    def flush_index(self) -> None:
        """Record what was written since the last flush in the cache index (one transaction)."""
        with self._lock:
            rows, self._unindexed = self._unindexed, []
        self.cache.record_many(rows)

    def _report(self, done: int, nbytes: int) -> None:
        if self.progress is not None:
            self.progress(Progress(done, self.total, f"{done} of {self.total} instances", nbytes))
