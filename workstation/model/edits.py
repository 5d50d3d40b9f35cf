"""Memory-bounded undo and redo for label-map edits.

An edit keeps only the bounding box of the voxels it changed, before and after, never a copy of the whole
label map: a brush dab on a 133 x 512 x 512 map costs a few kilobytes, not 35 MB.  The :class:`UndoStack`
holds at most ``max_bytes`` of edits and drops the oldest when a new one would pass the cap.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Box", "LabelEdit", "UndoStack", "paint", "replace_region"]

Box = tuple[int, int, int, int, int, int]  # k0, k1, j0, j1, i0, i1 (half-open)


def _slices(box: Box) -> tuple[slice, slice, slice]:
    k0, k1, j0, j1, i0, i1 = box
    return slice(k0, k1), slice(j0, j1), slice(i0, i1)


@dataclass(frozen=True, eq=False)
class LabelEdit:
    """One edit: the changed box of the label array, before and after."""

    description: str
    box: Box
    before: np.ndarray
    after: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.before.nbytes + self.after.nbytes)

    @property
    def changed_voxels(self) -> int:
        return int(np.count_nonzero(self.before != self.after))

    def undo(self, labels: np.ndarray) -> None:
        labels[_slices(self.box)] = self.before

    def redo(self, labels: np.ndarray) -> None:
        labels[_slices(self.box)] = self.after


def replace_region(labels: np.ndarray, origin: Sequence[int], new_values: np.ndarray,
                   description: str = "edit") -> LabelEdit | None:
    """Write ``new_values`` into ``labels`` at ``origin`` (k, j, i) and return the edit (None: no change).

    The edit keeps only the tight box around the voxels that really changed.
    """
    box = _clip(labels.shape, origin, new_values.shape)
    if box is None:
        return None
    k0, k1, j0, j1, i0, i1 = box
    ok, oj, oi = (int(v) for v in origin)
    new = new_values[k0 - ok:k1 - ok, j0 - oj:j1 - oj, i0 - oi:i1 - oi].astype(labels.dtype, copy=False)
    return _commit(labels, box, new, description)


def paint(labels: np.ndarray, mask: np.ndarray, value: int, origin: Sequence[int] = (0, 0, 0),
          description: str = "", *, only_on: int | None = None) -> LabelEdit | None:
    """Set ``value`` where the boolean ``mask`` (placed at ``origin``) is true; 0 erases.

    ``only_on`` limits the paint to voxels that hold that label now (e.g. 0: never overwrite another
    segment).  Returns the edit, or None when nothing changed.
    """
    if mask.dtype != bool or mask.ndim != 3:
        raise ValueError(f"a paint mask must be a 3D boolean array, got {mask.dtype} {mask.shape}")
    box = _clip(labels.shape, origin, mask.shape)
    if box is None:
        return None
    k0, k1, j0, j1, i0, i1 = box
    ok, oj, oi = (int(v) for v in origin)
    sub_mask = mask[k0 - ok:k1 - ok, j0 - oj:j1 - oj, i0 - oi:i1 - oi]
    current = labels[_slices(box)]
    if only_on is not None:
        sub_mask = sub_mask & (current == only_on)
    new = np.where(sub_mask, labels.dtype.type(value), current)
    return _commit(labels, box, new, description or ("erase" if value == 0 else f"paint {value}"))


def _clip(shape: Sequence[int], origin: Sequence[int], size: Sequence[int]) -> Box | None:
    lo = [max(0, int(o)) for o in origin]
    hi = [min(int(n), int(o) + int(s)) for n, o, s in zip(shape, origin, size)]
    if any(h <= l for l, h in zip(lo, hi)):
        return None
    return (lo[0], hi[0], lo[1], hi[1], lo[2], hi[2])


def _commit(labels: np.ndarray, box: Box, new: np.ndarray, description: str) -> LabelEdit | None:
    """Shrink ``box`` to the voxels that differ, apply, and return the edit."""
    current = labels[_slices(box)]
    diff = current != new
    if not diff.any():
        return None
    tight = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(diff.any(axis=other))
        tight.append((int(hits[0]), int(hits[-1]) + 1))
    (a0, a1), (b0, b1), (c0, c1) = tight
    k0, _, j0, _, i0, _ = box
    small = (k0 + a0, k0 + a1, j0 + b0, j0 + b1, i0 + c0, i0 + c1)
    edit = LabelEdit(description, small, current[a0:a1, b0:b1, c0:c1].copy(), new[a0:a1, b0:b1, c0:c1].copy())
    edit.redo(labels)
    return edit


class UndoStack:
    """Undo and redo of :class:`LabelEdit` on one label array, holding at most ``max_bytes`` of edits."""

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        if max_bytes <= 0:
            raise ValueError("the undo memory cap must be positive")
        self.max_bytes = max_bytes
        self._undo: deque[LabelEdit] = deque()
        self._redo: list[LabelEdit] = []
        self.dropped = 0  # edits forgotten to stay under the cap

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self._undo) + sum(e.nbytes for e in self._redo)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def __len__(self) -> int:
        return len(self._undo)

    def push(self, edit: LabelEdit | None) -> None:
        """Record an applied edit (None is ignored); the redo history is cleared."""
        if edit is None:
            return
        self._redo.clear()
        self._undo.append(edit)
        used = sum(e.nbytes for e in self._undo)
        while used > self.max_bytes and self._undo:
            used -= self._undo.popleft().nbytes
            self.dropped += 1

    def undo(self, labels: np.ndarray) -> LabelEdit | None:
        if not self._undo:
            return None
        edit = self._undo.pop()
        edit.undo(labels)
        self._redo.append(edit)
        return edit

    def redo(self, labels: np.ndarray) -> LabelEdit | None:
        if not self._redo:
            return None
        edit = self._redo.pop()
        edit.redo(labels)
        self._undo.append(edit)
        return edit

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()
