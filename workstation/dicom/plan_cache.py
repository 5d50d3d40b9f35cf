"""A header database: ``examine`` results kept on disk, keyed by the files' names, sizes and mtimes.

PACS viewers index headers once and open series from the index afterwards.  :class:`PlanCache` does
the same for :func:`workstation.dicom.series.examine`: the key is the SHA-1 of the sorted list of
(absolute path, size, mtime_ns) of every file examined, found with ``stat`` only (no file is opened),
so an edited, added or removed file changes the key.  An entry is one JSON file written atomically
(temporary file, then ``os.replace``); a damaged, foreign or outdated entry is recomputed and
overwritten, never an error.  At most ``max_entries`` entries are kept, the least recently used
(by file mtime, refreshed on every hit) are evicted first.

Plans from the cache (and from a miss, which examines absolute paths) carry absolute paths.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from workstation.dicom._tasks import CancelToken, Progress, ProgressFn, Skipped
from workstation.dicom.plan import SeriesKind, SeriesPlan, SliceSource

#: Bump when the meaning of a stored field changes; field-name changes are caught by the schema.
FORMAT_VERSION = 1
_SCHEMA = [f.name for f in dataclasses.fields(SeriesPlan)] + [f.name for f in dataclasses.fields(SliceSource)]


def _encode(value: object) -> object:
    """JSON-able form of a plan field: tuples -> lists, enums -> values, numpy -> Python/tagged."""
    if isinstance(value, SliceSource):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(SliceSource)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_encode(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in the plan cache")


def _decode(value: object) -> object:
    """Inverse of :func:`_encode` for everything but enums and nested dataclasses (lists -> tuples)."""
    if isinstance(value, list):
        if not any(isinstance(v, (list, dict)) for v in value):
            return tuple(value)  # the common case (paths, positions, sizes): no per-item call
        return tuple(_decode(v) for v in value)
    if isinstance(value, dict):
        if "__ndarray__" not in value:
            raise ValueError("unexpected object in a plan field")
        arr = np.asarray(value["__ndarray__"], dtype=np.dtype(value["dtype"]))
        return arr.reshape(value["shape"])
    return value


def plan_to_json(plan: SeriesPlan) -> dict:
    """Every field of the plan (and of its slices) as JSON-able values."""
    return {f.name: _encode(getattr(plan, f.name)) for f in dataclasses.fields(SeriesPlan)}


_SLICE_FIELDS = frozenset(f.name for f in dataclasses.fields(SliceSource))


def _slice_from_json(d: dict) -> SliceSource:
    # hot on a cache hit (one call per slice): plain scalars skip the generic decoder
    if not isinstance(d, dict) or d.keys() != _SLICE_FIELDS:
        raise ValueError("slice entry does not match SliceSource")
    position = d["position"]
    return SliceSource(path=d["path"], sop_instance_uid=d["sop_instance_uid"], frame=d["frame"],
                       position=tuple(position) if position is not None else None,
                       raw_offset=d["raw_offset"], slope=d["slope"], intercept=d["intercept"])


def plan_from_json(d: dict) -> SeriesPlan:
    """The plan :func:`plan_to_json` wrote; ``ValueError``/``TypeError`` when ``d`` is not one."""
    names = {f.name for f in dataclasses.fields(SeriesPlan)}
    if not isinstance(d, dict) or set(d) != names:
        raise ValueError("entry does not match SeriesPlan")
    fields = {k: _decode(v) for k, v in d.items() if k not in ("kind", "slices")}
    return SeriesPlan(**fields, kind=SeriesKind(d["kind"]), slices=tuple(_slice_from_json(s) for s in d["slices"]))


def _stat_files(paths: Iterable[Path | str]) -> list[tuple[str, int, int]] | None:
    """(absolute path, size, mtime_ns) of every file under ``paths``; None when a folder is unreadable."""
    out: list[tuple[str, int, int]] = []
    failed: list[OSError] = []
    for p in paths:
        p = os.fspath(p)
        if not os.path.isabs(p):
            p = os.path.abspath(p)
        entry = _stat_one(p)
        if entry[1] == _DIRECTORY:
            for root, dirs, names in os.walk(p, onerror=failed.append):
                dirs.sort()
                out.extend(_stat_one(os.path.join(root, n)) for n in sorted(names))
        else:
            out.append(entry)
    return None if failed else out


_DIRECTORY = -2  # the size _stat_one gives a folder, so a path is stat'ed once


def _stat_one(path: str) -> tuple[str, int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (path, -1, -1)  # examine reports it as skipped; the key still changes when it appears
    if stat.S_ISDIR(st.st_mode):
        return (path, _DIRECTORY, st.st_mtime_ns)
    return (path, st.st_size, st.st_mtime_ns)


def cache_key(entries: list[tuple[str, int, int]]) -> str:
    text = json.dumps([FORMAT_VERSION, sorted(entries)], separators=(",", ":"))
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()


class PlanCache:
    """``examine`` with its results kept in ``folder`` (created when needed).

    Parameters
    ----------
    folder
        Where the entries live (one ``<sha1>.json`` each).
    max_entries
        How many entries to keep; the least recently used go first.
    """

    def __init__(self, folder: Path | str, max_entries: int = 500) -> None:
        self.folder = Path(folder)
        self.max_entries = max_entries

    def examine_cached(
        self,
        paths: Iterable[Path | str],
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> tuple[list[SeriesPlan], list[Skipped]]:
        """What ``examine(paths)`` returns (with absolute paths), from the cache when nothing changed."""
        from workstation.dicom import series

        paths = [os.path.abspath(p) for p in paths]
        entries = _stat_files(paths)
        if entries is None:  # an unreadable folder: let examine report it, do not cache
            return series.examine(paths, progress, cancel)
        key = cache_key(entries)
        hit = self._load(key)
        if hit is not None:
            if progress is not None:
                progress(Progress(len(entries), len(entries), "headers from cache"))
            return hit
        plans, skipped = series.examine(paths, progress, cancel)
        self._store(key, plans, skipped)
        return plans, skipped

    def entry_path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def invalidate(self, key: str) -> None:
        try:
            os.remove(self.entry_path(key))
        except OSError:
            pass

    def _load(self, key: str) -> tuple[list[SeriesPlan], list[Skipped]] | None:
        path = self.entry_path(key)
        try:
            with open(path, encoding="utf-8") as fp:
                doc = json.load(fp)
            if doc.get("format") != FORMAT_VERSION or doc.get("schema") != _SCHEMA or doc.get("key") != key:
                raise ValueError("outdated or foreign cache entry")
            plans = [plan_from_json(p) for p in doc["plans"]]
            skipped = [Skipped(str(s["path"]), str(s["reason"])) for s in doc["skipped"]]
        except FileNotFoundError:
            return None
        except Exception:  # noqa: BLE001 - any damage means "recompute": the entry is overwritten
            self.invalidate(key)
            return None
        try:
            os.utime(path)  # least recently used goes first
        except OSError:
            pass
        return plans, skipped

    def _store(self, key: str, plans: list[SeriesPlan], skipped: list[Skipped]) -> None:
        doc = {"format": FORMAT_VERSION, "schema": _SCHEMA, "key": key,
               "plans": [plan_to_json(p) for p in plans],
               "skipped": [{"path": s.path, "reason": s.reason} for s in skipped]}
        tmp = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=self.folder)
            with os.fdopen(fd, "w", encoding="utf-8") as fp:
                json.dump(doc, fp, separators=(",", ":"))
            os.replace(tmp, self.entry_path(key))
            tmp = None
        except (OSError, TypeError, ValueError):
            pass  # a cache that cannot be written is only slower
        finally:
            if tmp is not None:
                try:
                    os.remove(tmp)
                except OSError:
                    pass
        self._evict()

    def _evict(self) -> None:
        try:
            entries = [(e.stat().st_mtime_ns, e.path) for e in os.scandir(self.folder)
                       if e.name.endswith(".json") and not e.name.startswith(".tmp-")]
        except OSError:
            return
        entries.sort()
        for _, path in entries[: max(0, len(entries) - self.max_entries)]:
            try:
                os.remove(path)
            except OSError:
                pass
