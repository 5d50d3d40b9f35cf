"""The files of the on-disk cache: one folder per series, one complete file per instance.

Layout: ``<root>/<study uid>/<series uid>/<sop uid>.dcm``.  A file is only ever complete: it is written
to a hidden ``.<sop uid>.<pid>-<random>.part`` in the same folder and moved into place with ``os.replace``,
so an interrupted retrieval leaves whole instances (kept: the next retrieval resumes after them) and no
partial ``.dcm``.  Leftover ``.part`` files of a crash are removed when the series is fetched again; those
still being written (by a thread of this process, or by another process still running) are left alone, so
two retrievals of one series at once (a prefetch and the reader's open, two workstations on one cache)
never delete each other's files.  They may write the same instance twice; the second ``os.replace`` puts
identical bytes in place.  The index of these files is :class:`workstation.archive.cache.CacheIndex`.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import secrets
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from workstation.archive.local import safe_component as _safe_component

if TYPE_CHECKING:
    from workstation.archive.cache import CacheIndex

PART_SUFFIX = ".part"
# a UID's file name, remembered: asked several times per instance (written, indexed, listed) and a regex each
safe_component = functools.lru_cache(maxsize=1 << 14)(_safe_component)
_live_parts: set[str] = set()  # temporary files being written by this process now
_live_lock = threading.Lock()


def _new_part_tag() -> str:
    """``<pid>-<random>``: what makes this process's temporary names its own (a counter follows it)."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


_part_tag = _new_part_tag()  # asked once, not per instance (a getpid and a getrandom call each)
_part_count = itertools.count()


def _after_fork() -> None:
    global _part_tag, _part_count
    _part_tag, _part_count = _new_part_tag(), itertools.count()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _part_owner(name: str) -> int | None:
    """The process id in a ``.<sop>.<pid>-<random>.part`` name (None: an older name, or not ours)."""
    tag = name[: -len(PART_SUFFIX)].rsplit(".", 1)[-1]
    pid, sep, _ = tag.partition("-")
    return int(pid) if sep and pid.isdigit() else None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, as another user
        return True
    return True


class SeriesCache:
    """The cache folder of one series."""

    def __init__(self, root: Path | str, study_uid: str, series_uid: str, index: CacheIndex | None = None) -> None:
        self.folder = Path(root) / safe_component(study_uid) / safe_component(series_uid)
        self.study_uid, self.series_uid, self.index = study_uid, series_uid, index
        self._dir = os.fspath(self.folder)  # string paths where hundreds of instances are written

    def _record(self, sop_uid: str, path: Path, size: int) -> None:
        if self.index is not None:
            self.index.record(self.study_uid, self.series_uid, sop_uid, path, size)

    def path(self, sop_uid: str) -> Path:
        return Path(self.path_str(sop_uid))

    def path_str(self, sop_uid: str) -> str:
        return f"{self._dir}{os.sep}{safe_component(sop_uid)}.dcm"

    def paths(self, sop_uids: Iterable[str]) -> list[Path]:
        """:meth:`path` of each (joined to the folder: cheaper than parsing hundreds of whole paths)."""
        folder = self.folder
        return [folder / f"{safe_component(sop)}.dcm" for sop in sop_uids]

    def has(self, sop_uid: str) -> bool:
        return os.path.isfile(self.path_str(sop_uid))

    def files(self) -> list[Path]:
        """The complete instance files present, sorted by name."""
        folder = self.folder
        return [folder / name for name in sorted(self._names(".dcm")) if not name.startswith(".")]

    def _names(self, suffix: str) -> list[str]:
        """Names in the folder ending with ``suffix`` ([] without a readable folder, as a glob gives)."""
        try:
            with os.scandir(self._dir) as entries:
                return [e.name for e in entries if e.name.endswith(suffix)]
        except OSError:
            return []

    def temp_path(self, sop_uid: str) -> Path:
        """A fresh temporary name for the instance (the folder made); :meth:`remove_parts` may delete it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return self._temp_name(sop_uid)

    def _temp_name(self, sop_uid: str) -> Path:
        return Path(self._temp_str(sop_uid))

    def _temp_str(self, sop_uid: str, name: str | None = None) -> str:
        """A fresh ``.<sop>.<pid>-<random><n>.part`` path (``name``: the SOP UID's file name, if known)."""
        return (f"{self._dir}{os.sep}.{name or safe_component(sop_uid)}.{_part_tag}{next(_part_count):x}"
                f"{PART_SUFFIX}")

    @contextlib.contextmanager
    def _writing(self, sop_uid: str):
        """A fresh temporary path, known as live (not to be cleaned up) until the block ends; removed then
        unless it was moved into place."""
        tmp = self._temp_name(sop_uid)
        with _live_lock:
            _live_parts.add(str(tmp))
        try:
            yield tmp
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        finally:
            with _live_lock:
                _live_parts.discard(str(tmp))

    def record_many(self, rows: Sequence[tuple[str, Path | str, int]]) -> None:
        """Index instances written with ``record=False``: (SOP UID, path, size) each, in one transaction."""
        if self.index is not None and rows:
            self.index.record_many(self.study_uid, self.series_uid, rows)

    def write_bytes(self, sop_uid: str, chunks: Iterable[bytes], record: bool = True) -> tuple[Path, int]:
        """Write an instance atomically from byte chunks; returns (final path, size).

        No fsync: this is a copy of what the archive holds, not worth a disk flush per instance (a crash
        of the process still leaves only whole files).  ``record=False`` leaves indexing to
        :meth:`record_many`."""
        final, size = self.write_pieces(sop_uid, chunks)
        if record:
            self._record(sop_uid, Path(final), size)
        return Path(final), size

    def write_pieces(self, sop_uid: str, pieces: Iterable[bytes | memoryview]) -> tuple[str, int]:
        """:meth:`write_bytes` without indexing, the path as a string (hundreds a series)."""
        out = self.open_instance(sop_uid)
        try:
            for piece in pieces:
                out.write(piece)
        except BaseException:
            out.discard()
            raise
        return out.commit()

    def open_instance(self, sop_uid: str) -> InstanceFile:
        """A new instance file to write in pieces; :meth:`InstanceFile.commit` moves it into place (not
        indexed: see :meth:`record_many`), :meth:`InstanceFile.discard` removes it."""
        return InstanceFile(self, sop_uid)

    def write_dataset(self, sop_uid: str, dataset) -> tuple[Path, int]:
        """Write a pydicom dataset (with its file meta) atomically; returns (final path, size)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._writing(sop_uid) as tmp:
            dataset.save_as(tmp, enforce_file_format=True)
            final = self.path(sop_uid)
            size = tmp.stat().st_size
            os.replace(tmp, final)
        self._record(sop_uid, final, size)
        return final, size

    def remove_parts(self) -> None:
        """Delete temporary files left by an interrupted write: not those another retrieval of the series
        (a thread here, or a process still running) is writing now."""
        me = os.getpid()
        for name in self._names(PART_SUFFIX):  # a listing, not a glob: hundreds of names a series
            if not name.startswith(".") or len(name) <= len(PART_SUFFIX):  # what ".*.part" matches
                continue
            owner = _part_owner(name)
            if owner is not None and owner != me and _process_alive(owner):
                continue
            path = f"{self._dir}{os.sep}{name}"
            # asked under the lock, file by file: a write here registers its file as live before creating
            # it, so a file the listing found but a snapshot taken before the listing missed stays
            with _live_lock:
                if path in _live_parts:
                    continue
                with contextlib.suppress(OSError):
                    os.unlink(path)


class InstanceFile:
    """One instance being written to a hidden temporary file of its series' folder (live: never cleaned up
    by :meth:`SeriesCache.remove_parts` meanwhile), then moved into place whole.  Unbuffered ``os.write``
    calls: the pieces are large (a whole instance, or a network PDU), a buffer would only copy them."""

    __slots__ = ("cache", "sop_uid", "tmp", "final", "fd", "size")
    _FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)

    def __init__(self, cache: SeriesCache, sop_uid: str) -> None:
        self.cache, self.sop_uid, self.size, self.fd = cache, sop_uid, 0, -1
        name = safe_component(sop_uid)
        self.final = f"{cache._dir}{os.sep}{name}.dcm"
        self.tmp = tmp = cache._temp_str(sop_uid, name)
        with _live_lock:
            _live_parts.add(tmp)
        try:
            try:
                self.fd = os.open(tmp, self._FLAGS, 0o644)
            except FileNotFoundError:  # the first instance of the series: no folder yet
                cache.folder.mkdir(parents=True, exist_ok=True)
                self.fd = os.open(tmp, self._FLAGS, 0o644)
        except BaseException:
            self._forget()
            raise

    def write(self, data) -> None:
        size = len(data)
        n = os.write(self.fd, data)
        if n < size:  # a short write (rare on a regular file): the rest, piece by piece
            view = memoryview(data)[n:]
            while view:
                view = view[os.write(self.fd, view):]
        self.size += size

    def commit(self) -> tuple[str, int]:
        """Close and move into place; returns (final path, size) (a string: hundreds a series)."""
        try:
            os.close(self.fd)
            self.fd = -1
            os.replace(self.tmp, self.final)
        except BaseException:
            self.discard()
            raise
        self._forget()
        return self.final, self.size

    def discard(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)
        self._forget()

    def _forget(self) -> None:
        with _live_lock:
            _live_parts.discard(self.tmp)
