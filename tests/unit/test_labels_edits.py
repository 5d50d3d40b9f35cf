"""Memory-bounded undo/redo of label edits (workstation.model.edits) with brush-like strokes."""

from __future__ import annotations

import numpy as np
import pytest

from workstation.model.edits import UndoStack, paint, replace_region


def sphere(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    k, j, i = np.meshgrid(r, r, r, indexing="ij")
    return k * k + j * j + i * i <= radius * radius


def dab(labels, centre, radius, value, **kw):
    origin = tuple(c - radius for c in centre)
    return paint(labels, sphere(radius), value, origin, **kw)


def test_brush_edit_stores_only_its_box():
    labels = np.zeros((133, 512, 512), np.uint8)
    edit = dab(labels, (60, 200, 300), 5, 1)
    assert edit.box == (55, 66, 195, 206, 295, 306)
    assert edit.nbytes == 2 * 11 ** 3  # before + after of an 11^3 box, not the 35 MB map
    assert edit.changed_voxels == int(sphere(5).sum()) == int(np.count_nonzero(labels))


def test_undo_redo_of_strokes_restores_exact_states():
    rng = np.random.default_rng(0)
    labels = np.zeros((40, 64, 64), np.uint8)
    stack = UndoStack()
    states = [labels.copy()]
    for n in range(12):
        centre = tuple(int(v) for v in rng.integers(0, 64, 3))
        value = int(rng.integers(0, 3))  # 0 = eraser
        stack.push(dab(labels, centre, int(rng.integers(1, 6)), value))
        if stack.can_undo and len(stack) > len(states) - 1:
            states.append(labels.copy())
    for state in reversed(states[:-1]):
        stack.undo(labels)
        assert np.array_equal(labels, state)
    assert stack.undo(labels) is None
    for state in states[1:]:
        stack.redo(labels)
        assert np.array_equal(labels, state)
    assert stack.redo(labels) is None


def test_a_new_edit_clears_redo():
    labels = np.zeros((10, 10, 10), np.uint8)
    stack = UndoStack()
    stack.push(dab(labels, (5, 5, 5), 2, 1))
    stack.undo(labels)
    assert stack.can_redo
    stack.push(dab(labels, (2, 2, 2), 1, 2))
    assert not stack.can_redo and len(stack) == 1


def test_memory_cap_drops_the_oldest():
    labels = np.zeros((50, 100, 100), np.uint8)
    one = 2 * 7 ** 3
    stack = UndoStack(max_bytes=3 * one)
    for n in range(5):
        stack.push(dab(labels, (25, 10 + 15 * n, 50), 3, 1))
    assert len(stack) == 3 and stack.dropped == 2 and stack.nbytes <= 3 * one
    for _ in range(3):
        stack.undo(labels)
    # the two oldest strokes cannot be undone any more, but they stay painted
    assert labels[25, 10, 50] == 1 and labels[25, 25, 50] == 1 and labels[25, 40, 50] == 0
    assert not stack.can_undo


def test_no_change_is_no_edit_and_clipping_at_the_edges():
    labels = np.zeros((8, 8, 8), np.uint8)
    assert dab(labels, (50, 50, 50), 2, 1) is None  # outside the grid
    edit = dab(labels, (0, 0, 0), 2, 1)  # clipped to the corner
    assert edit.box[::2] == (0, 0, 0)
    assert dab(labels, (0, 0, 0), 2, 1) is None  # painting again changes nothing


def test_only_on_background_keeps_other_segments():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[5, 5, 5] = 2
    dab(labels, (5, 5, 5), 2, 1, only_on=0)
    assert labels[5, 5, 5] == 2 and labels[5, 5, 6] == 1


def test_replace_region_and_bad_mask():
    labels = np.zeros((10, 10, 10), np.uint16)
    new = np.zeros((3, 3, 3), np.uint16)
    new[1, 1, 1] = 7
    edit = replace_region(labels, (4, 4, 4), new)
    assert edit.box == (5, 6, 5, 6, 5, 6) and labels[5, 5, 5] == 7
    with pytest.raises(ValueError, match="3D boolean"):
        paint(labels, np.ones((2, 2), bool), 1)
    with pytest.raises(ValueError, match="positive"):
        UndoStack(0)


def test_annotation_marks_attributes_and_replace_share_one_history():
    from workstation.model.annotation import Annotation, Mark, MarkKind
    from workstation.model.labelmap import Code, Segment

    seg = Segment(1, "Nodule", (255, 0, 0), Code("1", "X", "a"), Code("2", "X", "b"))
    doc = Annotation(np.zeros((4, 8, 8), np.uint8), np.eye(4), (seg,), study_uid="1", series_uid="2",
                     annotator="a")
    doc.apply(dab(doc.labels, (2, 4, 4), 1, 1))
    mark = Mark(MarkKind.POINT, 1, (1, 1, 1), (1, 1, 1))
    doc.add_mark(mark)
    ai = np.zeros_like(doc.labels)
    ai[0, 0, :3] = 1
    doc.replace_labels(ai, "start from AI")
    assert doc.revision == 3 and np.array_equal(doc.labels, ai) and doc.marks == [mark]
    doc.undo()
    assert doc.labels[2, 4, 4] == 1 and not doc.labels[0, 0].any()
    doc.undo()
    assert doc.marks == []
    doc.redo()
    assert doc.marks == [mark]
    doc.set_attribute(1, "malignancy", 3)
    doc.set_attribute(1, "malignancy", None)
    assert doc.attributes == {1: {}} and doc.revision == 8  # every change counts, undo and redo too
    with pytest.raises(ValueError, match="segment 9"):
        doc.add_mark(Mark(MarkKind.POINT, 9, (0, 0, 0), (0, 0, 0)))
    with pytest.raises(ValueError, match="annotator"):
        Annotation(np.zeros((1, 1, 1), np.uint8), np.eye(4), (seg,), study_uid="1", series_uid="2", annotator="")
