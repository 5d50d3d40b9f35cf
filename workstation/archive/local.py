"""The embedded archive: a managed folder of DICOM files plus an SQLite index.  Works with no server.

Layout under ``root``::

    index.sqlite                                   patients / studies / series / instances (WAL mode)
    files/<study uid>/<series uid>/<sop uid>.dcm   one file per instance, never edited in place
    tmp/                                           staging area (same file system, so moves are atomic)

Crash safety: a file is staged in ``tmp/`` and moved into place with ``os.replace`` *before* its index
row is committed, and a deletion commits the index change *before* removing files.  So a crash can
leave an unindexed file behind (harmless, overwritten by the next import of that instance) but never
an index row pointing at nothing.

Identity: the SOP Instance UID is the key (the file meta copy is used when an anonymiser blanked the
dataset's).  A file with no Study or Series Instance UID at all still imports: it gets a stable
``2.25.`` UID derived from its patient/study/series attributes, so one series stays together.

Threads: every thread gets its own SQLite connection (readers run in parallel under WAL); writes
(import, delete) are serialised by one lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from workstation.archive import _index as index
from workstation.archive._sources import Source, collect
from workstation.archive.client import (
    ArchiveError,
    CancelToken,
    ImportReport,
    NotFound,
    Progress,
    ProgressFn,
    Skipped,
    StudyQuery,
)
from workstation.model.refs import SeriesRef, StudyRef

#: Media Storage Directory Storage: a DICOMDIR, an index of files rather than an instance to store.
_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
_SAFE_UID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,127}")
_BATCH = 64  # files per index transaction: few enough to lose little on a crash, many enough to be fast


def safe_component(uid: str) -> str:
    """A UID as a file name; anything odd (slashes, '..', very long) becomes a stable hash instead."""
    if _SAFE_UID.fullmatch(uid) and ".." not in uid:
        return uid
    return "x" + hashlib.sha1(uid.encode("utf-8", "replace")).hexdigest()


@dataclass
class _Run:
    """Book-keeping of one import."""

    imported: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    studies: set[str] = field(default_factory=set)
    series: set[str] = field(default_factory=set)
    seen: set[str] = field(default_factory=set)  # SOP UIDs met in this run
    batch: list[tuple[index.InstanceRow, Path]] = field(default_factory=list)
    staged: int = 0  # names staged files uniquely

    def stage_name(self, stage: Path) -> Path:
        self.staged += 1
        return stage / f"{self.staged}.part"

    def report(self) -> ImportReport:
        return ImportReport(
            imported=tuple(self.imported),
            duplicates=tuple(self.duplicates),
            skipped=tuple(self.skipped),
            studies=tuple(sorted(self.studies)),
            series=tuple(sorted(self.series)),
        )


class LocalArchive:
    """An :class:`~workstation.archive.client.ArchiveClient` over a folder on this machine."""

    def __init__(self, root: Path | str, name: str = "Local") -> None:
        self.root = Path(root)
        self.name = name
        self.files_dir = self.root / "files"
        self.tmp_dir = self.root / "tmp"
        for d in (self.root, self.files_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.index_path = self.root / "index.sqlite"
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._write_lock = threading.RLock()
        with self._write_lock:
            index.create_schema(self._conn())  # executescript manages its own transaction
        self._clean_stale_tmp()

    # -- connections ---------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = index.connect(str(self.index_path))
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close every thread's connection (call when the archive is no longer used)."""
        with self._conns_lock:
            for conn in self._conns:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._conns.clear()
        self._local = threading.local()

    def __enter__(self) -> LocalArchive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _clean_stale_tmp(self) -> None:
        # staged files older than a day are leftovers of a crash (a live import finishes long before)
        cutoff = time.time() - 86400
        for p in self.tmp_dir.glob("*"):
            with contextlib.suppress(OSError):
                if p.is_file() and p.stat().st_mtime < cutoff:
                    p.unlink()

    # -- queries -------------------------------------------------------------------------------------
    def find_studies(self, query: StudyQuery | None = None) -> list[StudyRef]:
        return index.find_studies(self._conn(), query or StudyQuery(), self.name)

    def get_study(self, study_instance_uid: str) -> StudyRef:
        ref = index.get_study(self._conn(), study_instance_uid, self.name)
        if ref is None:
            raise NotFound(f"study {study_instance_uid} is not in the {self.name} archive")
        return ref

    def find_series(self, study_instance_uid: str) -> list[SeriesRef]:
        return index.find_series(self._conn(), study_instance_uid, self.name)

    def series_files(self, series_instance_uid: str) -> list[Path]:
        """Absolute paths of the series' files, in instance-number order.  Raises NotFound."""
        rel = index.series_paths(self._conn(), series_instance_uid)
        if not rel:
            raise NotFound(f"series {series_instance_uid} is not in the {self.name} archive")
        return [self.root / r for r in rel]

    def fetch_series(
        self,
        series_instance_uid: str,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> list[Path]:
        """The series' local files (nothing to download).  Raises NotFound, or ArchiveError if files vanished."""
        paths = self.series_files(series_instance_uid)
        missing = 0
        for n, p in enumerate(paths, 1):
            if cancel is not None:
                cancel.check()
            missing += not p.is_file()
            if progress is not None and (n == len(paths) or n % 32 == 0):
                progress(Progress(n, len(paths), f"checking {n} of {len(paths)} files"))
        if missing:
            raise ArchiveError(
                f"{missing} of {len(paths)} files of series {series_instance_uid} are missing from {self.files_dir}"
            )
        return paths

    # -- import --------------------------------------------------------------------------------------
    def store(self, paths: Iterable[Path], progress: ProgressFn | None = None) -> ImportReport:
        return self.import_paths(paths, progress)

    def import_paths(
        self,
        paths: Iterable[Path | str],
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> ImportReport:
        """Copy DICOM files from folders (recursively), zip files, DICOMDIRs and single files into the archive.

        Broken files are reported in ``skipped`` with a reason and the rest is imported; instances already
        in the archive are counted in ``duplicates`` and not copied again.  On cancel, what was imported
        so far stays (committed) and :class:`Cancelled` is raised.  Raises ArchiveError when the archive
        itself cannot be written (disk full, permissions), after committing what was done.
        """
        sources, listing_skips = collect(paths)
        run = _Run(skipped=list(listing_skips))
        total = len(sources)
        with self._write_lock, contextlib.ExitStack() as stack:
            zips: dict[Path, zipfile.ZipFile] = {}
            stage = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=self.tmp_dir, prefix="import-")))
            try:
                for n, src in enumerate(sources, 1):
                    if cancel is not None:
                        cancel.check()
                    self._import_one(src, run, stage, zips, stack)
                    if len(run.batch) >= _BATCH:
                        self._commit(run)
                    if progress is not None:
                        progress(Progress(n, total, src.display))
            finally:
                self._commit(run)  # keep what was done, also on cancel or error
        if progress is not None and total == 0:
            progress(Progress(0, 0, "nothing to import"))
        return run.report()

    def _import_one(self, src: Source, run: _Run, stage: Path, zips: dict, stack: contextlib.ExitStack) -> None:
        """Read one candidate's header and stage it for the next commit, or record why not."""
        from workstation.dicom.errors import DicomReadError
        from workstation.dicom.reading import read_header

        local = src.path
        if src.member is not None:
            local = self._extract(src, stage, zips, stack, run)
            if local is None:
                return
        try:
            ds = read_header(local)
        except DicomReadError as exc:
            run.skipped.append(Skipped(src.display, exc.reason))
            _discard(local, src)
            return
        row_or_reason = _row_from_header(ds, local)
        if isinstance(row_or_reason, str):
            if row_or_reason:  # empty reason: a DICOMDIR met by accident, silently not an instance
                run.skipped.append(Skipped(src.display, row_or_reason))
            _discard(local, src)
            return
        row = row_or_reason
        if row.sop_uid in run.seen or index.has_instance(self._conn(), row.sop_uid):
            run.duplicates.append(src.display)
            _discard(local, src)
            return
        run.seen.add(row.sop_uid)
        staged = local if src.member is not None else self._copy_to_stage(src, stage, run)
        if staged is not None:
            run.batch.append((row, staged))

    def _extract(self, src: Source, stage: Path, zips: dict, stack: contextlib.ExitStack, run: _Run) -> Path | None:
        zf = zips.get(src.path)
        if zf is None:
            zf = zips[src.path] = stack.enter_context(zipfile.ZipFile(src.path))
        target = run.stage_name(stage)
        try:
            with zf.open(src.member) as fin, open(target, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
        except Exception as exc:  # noqa: BLE001 - BadZipFile, zlib.error, EOFError, unsupported method...
            if isinstance(exc, OSError) and exc.filename == str(target):
                raise ArchiveError(f"cannot write to {self.tmp_dir}: {exc.strerror or exc}") from None
            run.skipped.append(Skipped(src.display, f"damaged zip member ({exc})"))
            return None
        return target

    def _copy_to_stage(self, src: Source, stage: Path, run: _Run) -> Path | None:
        target = run.stage_name(stage)
        try:
            with open(src.path, "rb") as fin:
                try:
                    with open(target, "wb") as fout:
                        shutil.copyfileobj(fin, fout, 1 << 20)
                except OSError as exc:
                    raise ArchiveError(f"cannot write to {self.tmp_dir}: {exc.strerror or exc}") from None
        except PermissionError:
            run.skipped.append(Skipped(src.display, "permission denied"))
            return None
        except OSError as exc:
            run.skipped.append(Skipped(src.display, f"cannot read file: {exc.strerror or exc}"))
            return None
        return target

    def _commit(self, run: _Run) -> None:
        """Move staged files into place, then record them in one transaction."""
        if not run.batch:
            return
        batch, run.batch = run.batch, []
        placed: list[index.InstanceRow] = []
        try:
            for row, staged in batch:
                final = self.root / row.path
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, final)
                placed.append(row)
        except OSError as exc:
            raise ArchiveError(f"cannot write to {self.files_dir}: {exc.strerror or exc}") from None
        finally:
            if placed:
                with self._transaction() as conn:
                    for row in placed:
                        index.insert_instance(conn, row)
                    index.refresh_counts(conn, {r.study_uid for r in placed})
                for row in placed:
                    run.imported.append(row.sop_uid)
                    run.studies.add(row.study_uid)
                    run.series.add(row.series_uid)

    # -- delete --------------------------------------------------------------------------------------
    def delete_study(self, study_instance_uid: str) -> int:
        """Remove a study's index rows, then its files.  Returns the number of instances removed."""
        with self._write_lock:
            with self._transaction() as conn:
                if index.get_study(conn, study_instance_uid, self.name) is None:
                    raise NotFound(f"study {study_instance_uid} is not in the {self.name} archive")
                paths = index.delete_study_rows(conn, study_instance_uid)
            # the index no longer points at these files, so a crash from here on leaves only orphans on disk
            for rel in paths:
                with contextlib.suppress(FileNotFoundError):
                    (self.root / rel).unlink()
            shutil.rmtree(self.files_dir / safe_component(study_instance_uid), ignore_errors=True)
        return len(paths)


def _discard(local: Path, src: Source) -> None:
    """Remove a file extracted from a zip that is not kept (never the user's own files)."""
    if src.member is not None:
        with contextlib.suppress(OSError):
            local.unlink()


def _text(ds, keyword: str) -> str:
    from pydicom.multival import MultiValue

    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, (MultiValue, list, tuple)):
        return "\\".join(str(v).strip() for v in value)
    return str(value).strip()


def _derived_uid(kind: str, *parts: str) -> str:
    """A stable 2.25 UID for an instance whose study or series UID was removed (over-eager anonymisers).

    The same attributes give the same UID, so the files of one series still land together.
    """
    digest = hashlib.sha256("|".join((kind, *parts)).encode("utf-8", "replace")).hexdigest()
    return "2.25." + str(int(digest[:30], 16))


def _study_series_uids(ds) -> tuple[str, str]:
    study = _text(ds, "StudyInstanceUID") or _derived_uid(
        "study", *(_text(ds, k) for k in ("PatientID", "PatientName", "StudyDate", "StudyTime", "AccessionNumber",
                                          "StudyID"))
    )
    series = _text(ds, "SeriesInstanceUID") or _derived_uid(
        "series", study, *(_text(ds, k) for k in ("Modality", "SeriesNumber", "SeriesDescription", "SeriesDate",
                                                  "SeriesTime", "FrameOfReferenceUID"))
    )
    return study, series


def _int(ds, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


def _row_from_header(ds, local: Path) -> index.InstanceRow | str:
    """The index row of a header, or the reason it cannot be stored ('' = a DICOMDIR, ignore quietly)."""
    meta = getattr(ds, "file_meta", None)
    sop_class = _text(ds, "SOPClassUID") or (_text(meta, "MediaStorageSOPClassUID") if meta else "")
    if sop_class == _DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
        return ""
    # anonymisers sometimes blank the dataset's UID but leave the file meta copy: use that one
    sop_uid = _text(ds, "SOPInstanceUID") or (_text(meta, "MediaStorageSOPInstanceUID") if meta else "")
    if not sop_uid:
        return "missing SOP Instance UID"
    from workstation.dicom.reading import transfer_syntax

    study_uid, series_uid = _study_series_uids(ds)
    rel = Path("files", safe_component(study_uid), safe_component(series_uid), safe_component(sop_uid) + ".dcm")
    return index.InstanceRow(
        sop_uid=sop_uid,
        series_uid=series_uid,
        study_uid=study_uid,
        path=rel.as_posix(),
        size=local.stat().st_size,
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        birth_date=_text(ds, "PatientBirthDate"),
        sex=_text(ds, "PatientSex"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        accession=_text(ds, "AccessionNumber"),
        study_description=_text(ds, "StudyDescription"),
        series_number=_int(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        modality=_text(ds, "Modality").upper(),
        body_part=_text(ds, "BodyPartExamined"),
        instance_number=_int(ds, "InstanceNumber"),
        sop_class=sop_class,
        transfer_syntax=transfer_syntax(ds),
    )
