"""Autosave of the working annotation: atomic writes, debounced background saving, recovery after SIGKILL,
a clear error (and nothing lost in memory) when the folder cannot be written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from workstation.labels.autosave import AutosaveError, AutosaveStore, Autosaver, restore, snapshot_of
from workstation.model import label_ops as ops
from workstation.model.annotation import Annotation, Mark, MarkKind
from workstation.model.labelmap import Code, Segment

NODULE = Segment(1, "Lung nodule", (255, 140, 0), Code("49755003", "SCT", "Morphologically Altered Structure"),
                 Code("27925004", "SCT", "Nodule"))
ROOT = Path(__file__).resolve().parents[2]


def make_doc(shape=(20, 64, 64)) -> Annotation:
    return Annotation(np.zeros(shape, np.uint8), np.diag([0.7, 0.7, 2.5, 1.0]), (NODULE,), study_uid="1.2.3",
                      series_uid="1.2.3.4", annotator="dr a", frame_of_reference_uid="1.2.3.5", schema="lung-nodule")


def edit_n(doc: Annotation, n: int) -> None:
    """The n-th edit of a deterministic sequence (the crash test replays it)."""
    with doc.lock:
        centre = (n % 20, (7 * n) % 64, (13 * n) % 64)
        doc.apply(ops.brush(doc.labels, centre, 2.0, (2.5, 0.7, 0.7), 1 if n % 5 else 0, axis=0))


def replay(revision: int) -> Annotation:
    """The annotation after the edit sequence reached ``revision`` (edits that changed nothing do not count)."""
    doc, n = make_doc(), 0
    while doc.revision < revision:
        n += 1
        edit_n(doc, n)
    return doc


def wait_for(predicate, timeout=20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_snapshot_round_trip_keeps_labels_marks_attributes(tmp_path):
    doc = make_doc()
    for n in range(1, 8):
        edit_n(doc, n)
    doc.add_mark(Mark(MarkKind.BOX_3D, 1, (2, 3, 4), (5, 30, 40)))
    doc.set_attribute(1, "malignancy", 4)
    doc.set_attribute(1, "nodule_type", "solid")
    store = AutosaveStore(tmp_path / "autosave")
    path = store.save(snapshot_of(doc))
    assert path.parent == tmp_path / "autosave" and not list(path.parent.glob(".*tmp"))
    snap = store.load("1.2.3", "1.2.3.4", "dr a")
    back = restore(snap)
    assert np.array_equal(back.labels, doc.labels) and back.labels.dtype == doc.labels.dtype
    assert np.allclose(back.affine, doc.affine) and back.segments == doc.segments
    assert back.marks == doc.marks and back.attributes == {1: {"malignancy": 4, "nodule_type": "solid"}}
    assert back.revision == doc.revision and back.schema == "lung-nodule"
    assert store.load("1.2.3", "1.2.3.4", "dr b") is None  # keyed by annotator too
    # only the labelled box is stored
    assert snap.crop.size < doc.labels.size


def test_autosaver_writes_within_a_second_of_an_edit_and_is_debounced(tmp_path):
    doc = make_doc()
    saved = []
    store = AutosaveStore(tmp_path)
    saver = Autosaver(doc, store, delay_s=0.3, max_wait_s=1.0, on_saved=lambda p, r: saved.append(r))
    try:
        for n in range(1, 6):
            edit_n(doc, n)
            saver.changed()
        assert wait_for(lambda: saved and saved[-1] == doc.revision)
        assert len(saved) <= 2  # a burst of edits is one or two writes, not five
        assert np.array_equal(restore(store.load("1.2.3", "1.2.3.4", "dr a")).labels, doc.labels)
        assert not saver.dirty
    finally:
        saver.close()


def test_unwritable_folder_gives_a_clear_message_and_keeps_the_work(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the autosave folder should be")
    doc = make_doc()
    errors = []
    saver = Autosaver(doc, AutosaveStore(blocker / "autosave"), delay_s=0.05, on_error=errors.append)
    try:
        edit_n(doc, 1)
        painted = doc.labels.copy()
        saver.changed()
        assert wait_for(lambda: bool(errors))
        assert "autosave" in errors[0] and "kept in memory" in errors[0]
        assert saver.dirty and np.array_equal(doc.labels, painted)
        saver.store = AutosaveStore(tmp_path / "good")  # space again: the next try succeeds
        assert saver.flush() and not saver.dirty
    finally:
        saver.close()
    with pytest.raises(AutosaveError, match="cannot be read"):
        bad = tmp_path / "good" / "x.npz"
        bad.write_bytes(b"not a zip")
        AutosaveStore(tmp_path / "good").read(bad)


CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from tests.unit.test_autosave import make_doc, edit_n
    from workstation.labels.autosave import AutosaveStore, Autosaver
    doc = make_doc()
    saver = Autosaver(doc, AutosaveStore({folder!r}), delay_s=0.05, max_wait_s=0.2,
                      on_saved=lambda p, r: print("SAVED", r, flush=True))
    n = 0
    while True:  # keeps editing until it is killed
        n += 1
        edit_n(doc, n)
        saver.changed()
        time.sleep(0.002)
""")


def test_work_survives_sigkill(tmp_path):
    folder = tmp_path / "autosave"
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(root=str(ROOT), folder=str(folder))],
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        reported = []
        for line in child.stdout:
            reported.append(int(line.split()[1]))
            if len(reported) >= 3:
                break
        assert reported, "the child never autosaved"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    snap = AutosaveStore(folder).load("1.2.3", "1.2.3.4", "dr a")
    assert snap is not None and snap.revision >= reported[-1]
    assert not list(folder.glob("*.npz"))[0].name.startswith(".")
    # the file holds exactly the state after `revision` edits: replay them
    expected = replay(snap.revision)
    assert np.array_equal(restore(snap).labels, expected.labels)


def test_concurrent_edits_and_saves_are_consistent(tmp_path):
    doc = make_doc()
    store = AutosaveStore(tmp_path)
    saver = Autosaver(doc, store, delay_s=0.0, max_wait_s=0.01)
    try:
        for n in range(1, 200):
            edit_n(doc, n)
            saver.changed()
        assert wait_for(lambda: not saver.dirty)
    finally:
        saver.close()
    snap = store.load("1.2.3", "1.2.3.4", "dr a")
    expected = replay(snap.revision)
    assert np.array_equal(snap.labels(), expected.labels)
