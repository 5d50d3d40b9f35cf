"""The annotation being made on one series: an editable label map, point and box marks, the required
attributes per segment, and one undo history for all of them.

Every change goes through :meth:`Annotation.apply` (or the mark and attribute methods), which records it on
the undo stack and bumps :attr:`Annotation.revision`, so an autosaver can tell when there is unsaved work.
``lock`` guards the arrays: the GUI thread holds it while editing, an autosave thread while copying.
"""

from __future__ import annotations

import enum
import threading
import uuid
from dataclasses import dataclass, field

import numpy as np

from workstation.model.edits import LabelEdit, UndoStack
from workstation.model.labelmap import LabelMap, Segment

__all__ = ["Annotation", "Mark", "MarkEdit", "MarkKind"]


class MarkKind(enum.Enum):
    POINT = "point"
    BOX_2D = "box_2d"
    BOX_3D = "box_3d"


@dataclass(frozen=True)
class Mark:
    """A landmark (``p0 == p1``) or an axis-aligned box between two corners, in voxel indices (k, j, i)."""

    kind: MarkKind
    segment: int
    p0: tuple[int, int, int]
    p1: tuple[int, int, int]
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def lo(self) -> tuple[int, int, int]:
        return tuple(min(a, b) for a, b in zip(self.p0, self.p1))  # type: ignore[return-value]

    @property
    def hi(self) -> tuple[int, int, int]:
        return tuple(max(a, b) for a, b in zip(self.p0, self.p1))  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class MarkEdit:
    """Adding (or removing) a mark, as an undoable edit next to the label edits."""

    description: str
    marks: list
    mark: Mark
    added: bool = True
    box = None  # no voxels changed

    @property
    def nbytes(self) -> int:
        return 256

    def undo(self, labels: np.ndarray) -> None:
        self._set(not self.added)

    def redo(self, labels: np.ndarray) -> None:
        self._set(self.added)

    def _set(self, present: bool) -> None:
        if present and self.mark not in self.marks:
            self.marks.append(self.mark)
        elif not present and self.mark in self.marks:
            self.marks.remove(self.mark)


class Annotation:
    """One annotator's work on one series: labels on the series grid, marks, attributes, undo/redo."""

    def __init__(self, labels: np.ndarray, affine: np.ndarray, segments: tuple[Segment, ...], *,
                 study_uid: str, series_uid: str, annotator: str, frame_of_reference_uid: str = "",
                 schema: str = "", undo_bytes: int = 64 * 2**20) -> None:
        if not annotator:
            raise ValueError("an annotation needs the annotator's name")
        if not series_uid:
            raise ValueError("an annotation needs the series it is made on")
        self.labelmap = LabelMap(labels, affine, tuple(segments), frame_of_reference_uid, series_uid)
        self.study_uid, self.series_uid, self.annotator = study_uid, series_uid, annotator
        self.schema = schema
        self.marks: list[Mark] = []
        self.attributes: dict[int, dict[str, object]] = {}
        self.undo_stack = UndoStack(undo_bytes)
        self.lock = threading.RLock()
        self.revision = 0

    @property
    def labels(self) -> np.ndarray:
        return self.labelmap.labels

    @property
    def segments(self) -> tuple[Segment, ...]:
        return self.labelmap.segments

    @property
    def affine(self) -> np.ndarray:
        return self.labelmap.affine

    # -- edits ------------------------------------------------------------------------------------------
    def apply(self, edit: LabelEdit | MarkEdit | None) -> LabelEdit | MarkEdit | None:
        """Record an edit already applied to :attr:`labels` (or :attr:`marks`); None is ignored."""
        if edit is not None:
            self.undo_stack.push(edit)
            self.revision += 1
        return edit

    def undo(self) -> LabelEdit | MarkEdit | None:
        with self.lock:
            edit = self.undo_stack.undo(self.labels)
        if edit is not None:
            self.revision += 1
        return edit

    def redo(self) -> LabelEdit | MarkEdit | None:
        with self.lock:
            edit = self.undo_stack.redo(self.labels)
        if edit is not None:
            self.revision += 1
        return edit

    def add_mark(self, mark: Mark) -> MarkEdit:
        if mark.segment not in {s.number for s in self.segments}:
            raise ValueError(f"no segment {mark.segment} in this annotation")
        edit = MarkEdit(f"add {mark.kind.value}", self.marks, mark)
        with self.lock:
            edit.redo(self.labels)
        self.apply(edit)
        return edit

    def set_attribute(self, segment: int, key: str, value: object) -> None:
        """Set a finding attribute of ``segment`` (None removes it); counts as a change for autosave."""
        with self.lock:
            values = self.attributes.setdefault(int(segment), {})
            if value is None:
                values.pop(key, None)
            else:
                values[key] = value
        self.revision += 1

    def replace_labels(self, labels: np.ndarray, description: str = "replace labels") -> LabelEdit | None:
        """Overwrite every label (e.g. start from an AI result) as one undoable edit."""
        from workstation.model.edits import replace_region

        if labels.shape != self.labels.shape:
            raise ValueError(f"labels of shape {labels.shape} are not on this annotation's grid {self.labels.shape}")
        with self.lock:
            edit = replace_region(self.labels, (0, 0, 0), labels, description)
        return self.apply(edit)
