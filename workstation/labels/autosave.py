"""Never lose an annotation: a debounced background autosave and its recovery after a crash.

The working state (labels, marks, attributes) is written within about a second of an edit, off the GUI
thread, as a compressed ``.npz`` holding only the labelled box of the label map.  Each write goes to a
temporary file that is flushed to disk and then renamed over the previous one, so a crash or a kill at any
moment leaves either the old or the new state on disk, never a broken one.  Files live under
``<home>/autosave`` and are keyed by study, series and annotator.

A write that fails (disk full, folder not writable) does not touch the work in memory: the error callback
gets a clear message and the next edit tries again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workstation.model.annotation import Annotation, Mark, MarkKind
from workstation.model.labelmap import Algorithm, AlgorithmType, Code, Segment

__all__ = ["AutosaveError", "AutosaveStore", "Autosaver", "Snapshot", "restore", "snapshot_of"]

FORMAT = 1


class AutosaveError(Exception):
    """An autosave that cannot be written or read; the message is for the user."""


@dataclass(frozen=True, eq=False)
class Snapshot:
    """The saved state of an :class:`Annotation` (labels cropped to their non-zero box)."""

    study_uid: str
    series_uid: str
    annotator: str
    shape: tuple[int, int, int]
    origin: tuple[int, int, int]
    crop: np.ndarray
    affine: np.ndarray
    meta: dict
    revision: int
    saved_at: float

    def labels(self) -> np.ndarray:
        out = np.zeros(self.shape, self.crop.dtype)
        k, j, i = self.origin
        a, b, c = self.crop.shape
        out[k:k + a, j:j + b, i:i + c] = self.crop
        return out


def snapshot_of(doc: Annotation) -> Snapshot:
    """A consistent copy of ``doc`` (taken under its lock)."""
    with doc.lock:
        labels = doc.labels
        idx = [np.flatnonzero(labels.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
        if idx[0].size:
            origin = tuple(int(x[0]) for x in idx)
            crop = labels[tuple(slice(int(x[0]), int(x[-1]) + 1) for x in idx)].copy()
        else:
            origin, crop = (0, 0, 0), np.zeros((0, 0, 0), labels.dtype)
        meta = {"format": FORMAT, "schema": doc.schema,
                "frame_of_reference_uid": doc.labelmap.frame_of_reference_uid,
                "segments": [_segment_json(s) for s in doc.segments],
                "attributes": {str(k): v for k, v in doc.attributes.items()},
                "marks": [{"kind": m.kind.value, "segment": m.segment, "p0": list(m.p0), "p1": list(m.p1),
                           "uid": m.uid} for m in doc.marks]}
        return Snapshot(doc.study_uid, doc.series_uid, doc.annotator, labels.shape, origin, crop,  # type: ignore[arg-type]
                        doc.affine.copy(), json.loads(json.dumps(meta)), doc.revision, time.time())


def restore(snap: Snapshot) -> Annotation:
    """The annotation a snapshot was taken of (undo history starts empty)."""
    meta = snap.meta
    doc = Annotation(snap.labels(), snap.affine, tuple(_segment_from(s) for s in meta["segments"]),
                     study_uid=snap.study_uid, series_uid=snap.series_uid, annotator=snap.annotator,
                     frame_of_reference_uid=meta.get("frame_of_reference_uid", ""), schema=meta.get("schema", ""))
    doc.attributes = {int(k): dict(v) for k, v in meta.get("attributes", {}).items()}
    doc.marks[:] = [Mark(MarkKind(m["kind"]), int(m["segment"]), tuple(m["p0"]), tuple(m["p1"]), m["uid"])
                    for m in meta.get("marks", [])]
    doc.revision = snap.revision
    return doc


def _code_json(c: Code) -> list[str]:
    return [c.value, c.scheme, c.meaning]


def _segment_json(s: Segment) -> dict:
    a = s.algorithm
    return {"number": s.number, "name": s.name, "colour": list(s.colour), "category": _code_json(s.category),
            "type": _code_json(s.type),
            "algorithm": None if a is None else {"name": a.name, "version": a.version, "type": a.type.value,
                                                 "family": _code_json(a.family)}}


def _segment_from(d: dict) -> Segment:
    a = d.get("algorithm")
    algorithm = None if a is None else Algorithm(a["name"], a["version"], AlgorithmType(a["type"]), Code(*a["family"]))
    return Segment(int(d["number"]), d["name"], tuple(d["colour"]), Code(*d["category"]), Code(*d["type"]), algorithm)


class AutosaveStore:
    """The autosave folder: one file per (study, series, annotator)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path_for(self, study_uid: str, series_uid: str, annotator: str) -> Path:
        digest = hashlib.sha1(f"{study_uid}\0{series_uid}\0{annotator}".encode()).hexdigest()[:20]
        return self.root / f"{digest}.npz"

    def save(self, snap: Snapshot) -> Path:
        """Write atomically (temp file, fsync, rename); AutosaveError with the reason when it cannot."""
        path = self.path_for(snap.study_uid, snap.series_uid, snap.annotator)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
        header = {"study_uid": snap.study_uid, "series_uid": snap.series_uid, "annotator": snap.annotator,
                  "shape": list(snap.shape), "origin": list(snap.origin), "revision": snap.revision,
                  "saved_at": snap.saved_at, **snap.meta}
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fp:
                np.savez_compressed(fp, crop=snap.crop, affine=snap.affine,
                                    header=np.frombuffer(json.dumps(header).encode(), np.uint8))
                fp.flush()
                os.fsync(fp.fileno())
            os.replace(tmp, path)
            _fsync_dir(self.root)
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise AutosaveError(f"autosave to {self.root} failed: {exc.strerror or exc}. "
                                "Your work is kept in memory; free some disk space or save it elsewhere.") from None
        return path

    def load(self, study_uid: str, series_uid: str, annotator: str) -> Snapshot | None:
        """The saved state for this key, or None; AutosaveError when the file is there but unreadable."""
        path = self.path_for(study_uid, series_uid, annotator)
        if not path.is_file():
            return None
        return self.read(path)

    def read(self, path: Path) -> Snapshot:
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(bytes(data["header"]).decode())
                crop, affine = data["crop"], data["affine"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            raise AutosaveError(f"{path}: the autosaved annotation cannot be read ({exc})") from None
        keys = ("study_uid", "series_uid", "annotator", "shape", "origin", "revision", "saved_at")
        meta = {k: v for k, v in header.items() if k not in keys}
        return Snapshot(header["study_uid"], header["series_uid"], header["annotator"], tuple(header["shape"]),
                        tuple(header["origin"]), crop, affine, meta, int(header["revision"]),
                        float(header["saved_at"]))

    def set_aside(self, study_uid: str, series_uid: str, annotator: str) -> Path | None:
        """Move an autosave that cannot be read out of the way (renamed, not deleted: it may still be
        recovered by hand), so that new work is autosaved without writing over it; its new path."""
        path = self.path_for(study_uid, series_uid, annotator)
        kept = path.with_name(f"{path.stem}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            os.replace(path, kept)
        except OSError:
            return None
        return kept

    def discard(self, study_uid: str, series_uid: str, annotator: str) -> None:
        self.path_for(study_uid, series_uid, annotator).unlink(missing_ok=True)

    def entries(self) -> list[Snapshot]:
        """Every readable autosave in the folder (unreadable ones are skipped)."""
        out = []
        for p in sorted(self.root.glob("*.npz")) if self.root.is_dir() else []:
            try:
                out.append(self.read(p))
            except AutosaveError:
                continue
        return out


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Autosaver:
    """Saves ``doc`` in a background thread ``delay_s`` after the last change (at most ``max_wait_s`` after
    the first unsaved one).  Call :meth:`changed` after each edit; :meth:`flush` saves now; :meth:`close`
    saves what is pending and stops the thread."""

    def __init__(self, doc: Annotation, store: AutosaveStore, *, delay_s: float = 0.5, max_wait_s: float = 1.0,
                 on_saved: Callable[[Path, int], None] | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.doc, self.store = doc, store
        self.delay_s, self.max_wait_s = float(delay_s), float(max_wait_s)
        self.on_saved, self.on_error = on_saved, on_error
        self.saved_revision = doc.revision
        self.last_error = ""
        self._cond = threading.Condition()
        self._save_lock = threading.Lock()  # the thread and flush() never write at once
        self._first: float | None = None
        self._last = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="autosave", daemon=True)
        self._thread.start()

    @property
    def dirty(self) -> bool:
        return self.doc.revision != self.saved_revision

    def changed(self) -> None:
        with self._cond:
            now = time.monotonic()
            self._last = now
            if self._first is None:
                self._first = now
            self._cond.notify()

    def _due(self) -> float | None:
        if self._first is None:
            return None
        return min(self._last + self.delay_s, self._first + self.max_wait_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    due = self._due()
                    if due is not None and time.monotonic() >= due:
                        break
                    self._cond.wait(None if due is None else max(due - time.monotonic(), 0.0))
                if self._closed:
                    return
                self._first = None
            self.save_now()

    def save_now(self) -> bool:
        """Write the current state now (in the calling thread); False when it failed or was not needed."""
        with self._save_lock:
            if not self.dirty:
                return False
            snap = snapshot_of(self.doc)
            try:
                path = self.store.save(snap)
            except AutosaveError as exc:
                self.last_error = str(exc)
                if self.on_error is not None:
                    self.on_error(self.last_error)
                return False
            self.saved_revision = snap.revision
        self.last_error = ""
        if self.on_saved is not None:
            self.on_saved(path, snap.revision)
        return True

    def flush(self) -> bool:
        with self._cond:
            self._first = None
        return self.save_now()

    def forget_saved(self, revision: int) -> bool:
        """The work was saved elsewhere (a DICOM revision) as it was at ``revision``: its autosave is no
        longer unsaved work, so it is removed, unless the work changed since (then it stays, and is written
        as usual).  True when removed."""
        with self._save_lock:
            if self.doc.revision != revision:
                return False
            try:
                self.store.discard(self.doc.study_uid, self.doc.series_uid, self.doc.annotator)
            except OSError:
                return False
            self.saved_revision = revision
            return True

    def close(self) -> None:
        """Save what is pending, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(5.0)
        self.save_now()
