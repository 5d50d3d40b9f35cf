"""The on-disk cache of instances retrieved from remote archives: its index and its bounds.

The files themselves (one folder per series, one complete file per instance, written whole or not at all)
are :mod:`workstation.archive._series_files`.

Bounds: :class:`CacheIndex` (``<root>/cache-index.sqlite``) indexes every instance written by SOP Instance
UID (path, study, series, size), remembers which series are complete and when each series was last opened,
and which studies are pinned.  When the cache grows past its size limit the least recently used series are
evicted, never a pinned study's and never the series being retrieved.  A complete series is opened from
the index alone: no network.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from workstation.archive._series_files import (  # noqa: F401 - re-exported: the cache's files and their names
    PART_SUFFIX, InstanceFile, SeriesCache, _live_parts, _part_owner, safe_component)

INDEX_NAME = "cache-index.sqlite"
DEFAULT_MAX_MB = 20000


@dataclass(frozen=True)
class CacheStatus:
    root: Path
    bytes_used: int
    max_bytes: int
    instances: int
    series: int
    studies: int
    pinned: tuple[str, ...]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    sop TEXT PRIMARY KEY, study TEXT NOT NULL, series TEXT NOT NULL, path TEXT NOT NULL,
    size INTEGER NOT NULL, position INTEGER);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series);
CREATE TABLE IF NOT EXISTS series (
    series TEXT PRIMARY KEY, study TEXT NOT NULL, accessed REAL NOT NULL, complete INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS pins (study TEXT PRIMARY KEY);
"""


class CacheIndex:
    """The SQLite index of a cache folder: instances by SOP UID, series access times, pinned studies.

    Paths are stored relative to the root.  Every thread gets its own connection (WAL mode), so several
    retrievals (and several processes) can record at once.
    """

    def __init__(self, root: Path | str, max_bytes: int = DEFAULT_MAX_MB * 1_000_000) -> None:
        self.root = Path(root)
        self._root_prefix = os.path.join(os.fspath(self.root), "")
        self.max_bytes = int(max_bytes)
        self.root.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._evict_lock = threading.Lock()
        self._busy: dict[str, int] = {}  # series being retrieved now (never evicted), with a count
        with self._conn() as db:
            db.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")  # one transaction, not one per table

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.root / INDEX_NAME, timeout=30, isolation_level=None)
            conn.execute("PRAGMA synchronous=NORMAL")  # first: a new index is then created without FULL syncs
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    def _rel(self, path: Path | str) -> str:
        """A path under the root as stored in the index (relative; string work: hundreds per series)."""
        text, prefix = os.fspath(path), self._root_prefix
        return text[len(prefix):] if text.startswith(prefix) else str(Path(path).relative_to(self.root))

    def series_cache(self, study_uid: str, series_uid: str) -> SeriesCache:
        return SeriesCache(self.root, study_uid, series_uid, index=self)

    # -- writing ---------------------------------------------------------------------------------------------
    def record(self, study: str, series: str, sop: str, path: Path, size: int) -> None:
        rel = str(Path(path).relative_to(self.root))
        db = self._conn()
        db.execute("INSERT OR REPLACE INTO instances(sop, study, series, path, size) VALUES (?,?,?,?,?)",
                   (sop, study, series, rel, int(size)))
        db.execute("INSERT INTO series(series, study, accessed) VALUES (?,?,?) ON CONFLICT(series) "
                   "DO UPDATE SET accessed = excluded.accessed", (series, study, time.time()))

    def record_many(self, study: str, series: str, rows: Sequence[tuple[str, Path | str, int]]) -> None:
        """Index several instances of one series in one transaction: (SOP UID, path, size) each."""
        db = self._conn()
        data = [(sop, study, series, self._rel(path), int(size)) for sop, path, size in rows]
        self._transaction(db, lambda: (
            db.executemany("INSERT OR REPLACE INTO instances(sop, study, series, path, size) VALUES (?,?,?,?,?)",
                           data),
            db.execute("INSERT INTO series(series, study, accessed) VALUES (?,?,?) ON CONFLICT(series) "
                       "DO UPDATE SET accessed = excluded.accessed", (series, study, time.time()))))

    @staticmethod
    def _transaction(db: sqlite3.Connection, body) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            body()
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def mark_complete(self, study: str, series: str, sops: Sequence[str],
                      sizes: Mapping[str, int] | None = None) -> None:
        """The series is whole in the cache, its instances in this order (a later open needs no network).

        Instances not indexed yet (written before the index existed, or by a process that died before it
        recorded them) are indexed here: with their size from ``sizes`` (what the retrieval just wrote, not
        recorded yet), else read from the file.  An instance indexed already keeps its row (and size)."""
        db = self._conn()
        cache = SeriesCache(self.root, study, series)
        sizes = sizes or {}
        known = set() if all(sop in sizes for sop in sops) else {
            r[0] for r in db.execute("SELECT sop FROM instances WHERE series = ?", (series,))}
        rows = []
        rel = self._rel
        for pos, sop in enumerate(sops):
            path = cache.path_str(sop)
            size = sizes.get(sop)
            if size is None:
                size = 0 if sop in known else (os.path.getsize(path) if os.path.isfile(path) else 0)
            rows.append((sop, study, series, rel(path), size, pos))

        def body() -> None:
            db.executemany("INSERT INTO instances(sop, study, series, path, size, position) VALUES (?,?,?,?,?,?) "
                           "ON CONFLICT(sop) DO UPDATE SET position = excluded.position", rows)
            db.execute("INSERT INTO series(series, study, accessed, complete) VALUES (?,?,?,1) ON CONFLICT(series) "
                       "DO UPDATE SET accessed = excluded.accessed, complete = 1", (series, study, time.time()))

        self._transaction(db, body)

    @contextlib.contextmanager
    def retrieving(self, series: str):
        """While the block runs the series is not evicted (its files are being written and read)."""
        with self._evict_lock:
            self._busy[series] = self._busy.get(series, 0) + 1
        try:
            yield
        finally:
            with self._evict_lock:
                self._busy[series] -= 1
                if not self._busy[series]:
                    del self._busy[series]

    def finish(self, study: str, series: str, sops: Sequence[str], sizes: Mapping[str, int] | None = None) -> None:
        """A retrieval completed: mark the series complete (``sizes``: see :meth:`mark_complete`), then make
        room for it by evicting others."""
        self.mark_complete(study, series, sops, sizes)
        self.evict(keep_series=[series])

    def open_complete(self, series: str, progress=None) -> list[Path] | None:
        """The series' files when it is complete in the cache (progress reports it whole), else None."""
        hit = self.complete_files(series)
        if hit is None:
            return None
        paths = hit[1]
        if progress is not None:
            from workstation.model.tasks import Progress

            size = sum(p.stat().st_size for p in paths)
            progress(Progress(len(paths), len(paths), f"{len(paths)} instances from the cache", size))
        return paths

    def open_current(self, series: str, remote_count, progress=None) -> list[Path] | None:
        """Like :meth:`open_complete`, unless the archive now holds more instances of the series than the cache
        (a SEG revision added to an existing series): None then, and the caller retrieves what is missing.

        ``remote_count(study_uid) -> int | None`` asks the archive; None when it cannot tell (offline, or the
        archive does not say), and the cached series is served as it is."""
        hit = self.complete_files(series)
        if hit is None:
            return None
        count = remote_count(hit[0])
        if count is not None and count > len(hit[1]):
            return None
        return self.open_complete(series, progress)

    # -- reading ---------------------------------------------------------------------------------------------
    def complete_files(self, series: str) -> tuple[str, list[Path]] | None:
        """(study UID, files in order) when the series is complete in the cache and every file is there;
        marks it used now.  None otherwise (a file went missing: the series is no longer complete)."""
        db = self._conn()
        row = db.execute("SELECT study, complete FROM series WHERE series = ?", (series,)).fetchone()
        if row is None or not row[1]:
            return None
        rels = db.execute("SELECT path FROM instances WHERE series = ? AND position IS NOT NULL ORDER BY position",
                          (series,)).fetchall()
        paths = [self.root / r[0] for r in rels]
        if not paths or not all(p.is_file() for p in paths):
            db.execute("UPDATE series SET complete = 0 WHERE series = ?", (series,))
            return None
        self.touch(series)
        return row[0], paths

    def touch(self, series: str) -> None:
        self._conn().execute("UPDATE series SET accessed = ? WHERE series = ?", (time.time(), series))

    def study_of(self, series: str) -> str | None:
        row = self._conn().execute("SELECT study FROM series WHERE series = ?", (series,)).fetchone()
        return row[0] if row else None

    def bytes_used(self) -> int:
        return int(self._conn().execute("SELECT COALESCE(SUM(size), 0) FROM instances").fetchone()[0])

    def status(self) -> CacheStatus:
        db = self._conn()
        n_inst, used = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM instances").fetchone()
        n_series, n_studies = db.execute("SELECT COUNT(DISTINCT series), COUNT(DISTINCT study) FROM instances").fetchone()
        return CacheStatus(self.root, int(used), self.max_bytes, n_inst, n_series, n_studies, self.pinned())

    # -- pins --------------------------------------------------------------------------------------------------
    def pin(self, study: str) -> None:
        self._conn().execute("INSERT OR IGNORE INTO pins(study) VALUES (?)", (study,))

    def unpin(self, study: str) -> None:
        self._conn().execute("DELETE FROM pins WHERE study = ?", (study,))

    def pinned(self) -> tuple[str, ...]:
        return tuple(r[0] for r in self._conn().execute("SELECT study FROM pins ORDER BY study"))

    # -- eviction ------------------------------------------------------------------------------------------------
    def evict(self, keep_series: Iterable[str] = ()) -> list[str]:
        """Remove least recently used series until the cache fits its limit; returns the evicted series.

        Pinned studies and ``keep_series`` (retrievals in progress, the series on screen) stay."""
        evicted: list[str] = []
        with self._evict_lock:
            keep = set(keep_series) | set(self._busy)
            used = self.bytes_used()
            if used <= self.max_bytes:
                return evicted
            candidates = self._conn().execute(
                "SELECT s.series, s.study, COALESCE(SUM(i.size), 0) FROM series s "
                "LEFT JOIN instances i ON i.series = s.series "
                "WHERE s.study NOT IN (SELECT study FROM pins) GROUP BY s.series ORDER BY s.accessed").fetchall()
            for series, study, size in candidates:
                if used <= self.max_bytes:
                    break
                if series in keep:
                    continue
                self.remove_series(study, series)
                used -= int(size)
                evicted.append(series)
        return evicted

    def remove_series(self, study: str, series: str) -> None:
        """Delete a series' files, then its index rows (a crash between leaves rows that
        :meth:`complete_files` sees through, never files nobody counts)."""
        db = self._conn()
        for (rel,) in db.execute("SELECT path FROM instances WHERE series = ?", (series,)).fetchall():
            with contextlib.suppress(OSError):
                (self.root / rel).unlink()
        folder = SeriesCache(self.root, study, series).folder
        if folder.is_dir():
            for p in folder.iterdir():
                with contextlib.suppress(OSError):
                    p.unlink()
            with contextlib.suppress(OSError):
                folder.rmdir()
                folder.parent.rmdir()  # the study folder, when this was its last series
        db.execute("DELETE FROM instances WHERE series = ?", (series,))
        db.execute("DELETE FROM series WHERE series = ?", (series,))

    def clear(self, include_pinned: bool = False) -> int:
        """Remove every series (but pinned studies' unless asked); returns how many series went."""
        db = self._conn()
        pinned = set() if include_pinned else set(self.pinned())
        rows = db.execute("SELECT study, series FROM series UNION SELECT study, series FROM instances").fetchall()
        gone = 0
        for study, series in rows:
            if study not in pinned:
                self.remove_series(study, series)
                gone += 1
        return gone

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
