"""The Annotate dock on the real main window (LIDC chest CT): real mouse events on the viewports paint
voxels, undo/redo by keyboard, tool switching, MPR planes, autosave/restore, start from AI, saves as
revisions of the annotator's own set sent to the archive by the app's sync worker."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from tests.gui.conftest import open_first_series
from tests.gui.test_ai_display import PLUGIN, capture, changed_pixels, hand_made_result
from workstation.labels.autosave import AutosaveStore
from workstation.labels.schema import Tool
from workstation.model.label_ops import spacing_kji
from workstation.ui.viewer_area import Layout

NONE = Qt.KeyboardModifier.NoModifier
LEFT = Qt.MouseButton.LeftButton


def qpoint(vp, kji) -> QPoint:
    """Widget position of voxel (k, j, i) in ``vp`` (VTK display y runs up, Qt's runs down)."""
    k, j, i = kji
    x, y = vp.view.lps_to_display(vp.volume.index_to_lps(np.array([i, j, k], float)))
    h = vp.canvas.display_size()[1]
    return QPoint(int(round(x)), int(round(h - 1 - y)))


def drag(vp, points) -> None:
    canvas = vp.canvas
    QTest.mousePress(canvas, LEFT, NONE, points[0])
    for p in points[1:]:
        QTest.mouseMove(canvas, p)
    QTest.mouseRelease(canvas, LEFT, NONE, points[-1])


@pytest.fixture
def annotating(main_window):
    vp = open_first_series(main_window)
    ctl = main_window.annotation
    ctl.panel.annotator.setText("dr test")
    doc = ctl.start()
    assert doc is not None and ctl.dock.isVisible()
    return main_window, vp, ctl


def test_brush_stroke_paints_the_slice_shows_on_screen_and_undoes(annotating):
    window, vp, ctl = annotating
    doc = ctl.doc
    ctl.panel.brush_mm.setValue(4.0)
    ctl.set_tool(Tool.BRUSH)
    k = vp.view.slice_index()
    before_px = capture(vp)
    start, end = (k, 200, 180), (k, 200, 300)
    drag(vp, [qpoint(vp, start), qpoint(vp, (k, 200, 240)), qpoint(vp, end)])
    painted = doc.labels == 1
    assert painted.any() and np.array_equal(np.flatnonzero(painted.any((1, 2))), [k])
    assert painted[k, 200, 180] and painted[k, 200, 240] and painted[k, 200, 300]  # no gaps
    sk, sj, si = spacing_kji(doc.affine)
    rows = np.flatnonzero(painted[k].any(1))
    assert (rows[-1] - rows[0] + 1) * sj == pytest.approx(8.0, abs=2 * sj)  # 4 mm radius across the stroke
    assert changed_pixels(before_px, capture(vp)).sum() > 200  # drawn on the screen
    assert len(doc.undo_stack) == 1  # one stroke, one undo step
    after = doc.labels.copy()
    vp.canvas.setFocus()
    QTest.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not doc.labels.any()
    QTest.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert np.array_equal(doc.labels, after)


def test_tool_switching_threshold_eraser_polygon_point_box(annotating):
    window, vp, ctl = annotating
    doc, vol = ctl.doc, vp.volume
    k = vp.view.slice_index()
    ctl.panel.brush_mm.setValue(10.0)
    ctl.panel.hu_low.setValue(-1000.0)
    ctl.panel.hu_high.setValue(-600.0)
    QTest.mouseClick(ctl.panel.tool_buttons[Tool.HU_BRUSH], LEFT)  # switch by the panel button
    assert ctl.session.tool is Tool.HU_BRUSH
    drag(vp, [qpoint(vp, (k, 256, 150)), qpoint(vp, (k, 256, 160))])
    hu = vol.voxels[doc.labels == 1]
    assert hu.size and hu.min() >= -1000 and hu.max() <= -600
    ctl.set_tool(Tool.ERASER)
    drag(vp, [qpoint(vp, (k, 256, 150)), qpoint(vp, (k, 256, 160))])
    assert not doc.labels.any()
    ctl.set_tool(Tool.POLYGON)
    corners = [(k, 240, 240), (k, 240, 280), (k, 280, 280), (k, 280, 240)]
    for c in corners:
        QTest.mouseClick(vp.canvas, LEFT, NONE, qpoint(vp, c))
    QTest.mouseClick(vp.canvas, LEFT, NONE, qpoint(vp, corners[0]))  # closes it
    area = np.count_nonzero(doc.labels[k] == 1)
    assert area == pytest.approx(40 * 40, rel=0.1) and doc.labels[k, 260, 260] == 1
    ctl.set_tool(Tool.POINT)
    QTest.mouseClick(vp.canvas, LEFT, NONE, qpoint(vp, (k, 100, 100)))
    ctl.set_tool(Tool.BOX_2D)
    drag(vp, [qpoint(vp, (k, 300, 300)), qpoint(vp, (k, 320, 330))])
    kinds = [m.kind.value for m in doc.marks]
    assert kinds == ["point", "box_2d"]
    assert ctl.overlays[id(vp)].marks.polydata.GetNumberOfLines() == 3  # the cross's two arms and the box
    assert doc.marks[0].p0 == pytest.approx((k, 100, 100), abs=1)
    assert doc.marks[1].lo == pytest.approx((k, 300, 300), abs=1) and doc.marks[1].hi == pytest.approx((k, 320, 330), abs=1)
    ctl.undo()
    assert [m.kind.value for m in doc.marks] == ["point"]


def test_region_grow_and_interpolate_between_slices(annotating):
    window, vp, ctl = annotating
    doc = ctl.doc
    k = vp.view.slice_index()
    ctl.set_tool(Tool.POLYGON)
    for kk, half in ((k - 3, 5), (k + 3, 15)):
        vp.scroll_to(vp.image_index() + (kk - vp.view.slice_index()) * vp._reading_sign())
        assert vp.view.slice_index() == kk
        pts = [(kk, 260 - half, 260 - half), (kk, 260 - half, 260 + half), (kk, 260 + half, 260 + half),
               (kk, 260 + half, 260 - half)]
        for p in [*pts, pts[0]]:
            QTest.mouseClick(vp.canvas, LEFT, NONE, qpoint(vp, p))
    QTest.mouseClick(ctl.panel.action_buttons[Tool.INTERPOLATE], LEFT)
    areas = [np.count_nonzero(doc.labels[kk] == 1) for kk in range(k - 3, k + 4)]
    assert all(a < b for a, b in zip(areas, areas[1:]))
    doc.labels[:] = 0
    k = vp.view.slice_index()  # the plane the view shows now
    ctl.set_tool(Tool.REGION_GROW)
    ctl.panel.hu_low.setValue(-1000.0)
    ctl.panel.hu_high.setValue(-500.0)
    QTest.mouseClick(vp.canvas, LEFT, NONE, qpoint(vp, (k, 256, 150)))  # in the right lung
    grown = doc.labels[k] == 1
    assert grown.sum() > 1000 and not doc.labels[np.arange(doc.labels.shape[0]) != k].any()
    assert vp.volume.voxels[k][grown].max() <= -500


def test_brush_on_the_coronal_mpr_plane(annotating):
    window, vp, ctl = annotating
    window.set_layout(Layout.MPR)
    coronal = window.viewer.mpr.coronal
    coronal.render_now()
    ctl.set_tool(Tool.BRUSH)
    ctl.panel.brush_mm.setValue(6.0)
    j = int(np.rint(coronal.volume.lps_to_index(coronal.view.position_mm)[1]))
    k = coronal.volume.shape[0] // 2
    drag(coronal, [qpoint(coronal, (k, j, 200)), qpoint(coronal, (k, j, 260))])
    painted = ctl.doc.labels == 1
    assert painted.any() and np.array_equal(np.flatnonzero(painted.any((0, 2))), [j])
    sk = spacing_kji(ctl.doc.affine)[0]
    ks = np.flatnonzero(painted.any((1, 2)))
    assert ks[-1] - ks[0] == 2 * int(6.0 // sk)  # 6 mm in the slice direction, in slices


def _stroke_autosaved(vp, ctl) -> tuple[int, np.ndarray]:
    """One brush stroke on the shown slice, autosaved now; (the slice, the labels painted)."""
    ctl.set_tool(Tool.BRUSH)
    k = vp.view.slice_index()
    drag(vp, [qpoint(vp, (k, 250, 250)), qpoint(vp, (k, 250, 270))])
    ctl.autosaver.flush()
    return k, ctl.doc.labels.copy()


def test_autosave_restore_on_reopen_and_failure_message(annotating, tmp_path, qtbot):
    window, vp, ctl = annotating
    k, work = _stroke_autosaved(vp, ctl)
    ctl.stop()
    assert ctl.doc is None and not ctl.panel.restore_bar.isVisibleTo(ctl.panel)
    vp.set_volume(vp.volume)  # reopening the series offers the autosaved work
    assert ctl.panel.restore_bar.isVisibleTo(ctl.panel) and "Unsaved annotation" in ctl.panel.restore_text.text()
    QTest.mouseClick(ctl.panel.restore_button, LEFT)
    assert np.array_equal(ctl.doc.labels, work) and not ctl.panel.restore_bar.isVisibleTo(ctl.panel)
    blocker = tmp_path / "full"
    blocker.write_text("a file where a folder should be")
    ctl.autosaver.store = AutosaveStore(blocker / "autosave")
    drag(vp, [qpoint(vp, (k, 300, 250)), qpoint(vp, (k, 300, 270))])
    assert not ctl.autosaver.flush()
    assert "kept in memory" in ctl.autosaver.last_error
    qtbot.waitUntil(lambda: "kept in memory" in ctl.panel.status.text())
    assert ctl.doc.labels[k, 300, 260] == 1


def test_starting_again_offers_the_autosaved_work_and_begins_nothing_until_it_is_decided(annotating):
    """"Start annotating" on a series with autosaved work offers it and begins no fresh annotation (one
    edited beside the offer autosaved over it); Discard deletes it and starts afresh, Restore takes it up."""
    window, vp, ctl = annotating
    k, work = _stroke_autosaved(vp, ctl)
    saved = ctl.store.path_for(ctl.doc.study_uid, ctl.doc.series_uid, ctl.doc.annotator)
    on_disk = saved.read_bytes()
    ctl.stop()
    for _ in range(2):
        QTest.mouseClick(ctl.panel.start_button, LEFT)
        assert ctl.doc is None and ctl.panel.restore_bar.isVisibleTo(ctl.panel)
        assert "restore it, or discard it" in ctl.panel.status.text()
        drag(vp, [qpoint(vp, (k, 300, 250)), qpoint(vp, (k, 300, 270))])  # no annotation: the brush is off
        assert saved.read_bytes() == on_disk
    QTest.mouseClick(ctl.panel.restore_button, LEFT)
    assert np.array_equal(ctl.doc.labels, work) and not ctl.panel.restore_bar.isVisibleTo(ctl.panel)
    ctl.stop()
    QTest.mouseClick(ctl.panel.start_button, LEFT)
    assert ctl.doc is None and ctl.panel.restore_bar.isVisibleTo(ctl.panel)
    QTest.mouseClick(ctl.panel.discard_button, LEFT)
    assert not saved.exists() and not ctl.panel.restore_bar.isVisibleTo(ctl.panel)
    assert ctl.doc is not None and not ctl.doc.labels.any()  # afresh


def test_an_unreadable_autosave_is_set_aside_not_written_over(annotating):
    window, vp, ctl = annotating
    path = ctl.store.path_for(ctl.doc.study_uid, ctl.doc.series_uid, ctl.doc.annotator)
    ctl.stop()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half a zip file")  # (a disk that filled up mid-write, a copy gone wrong)
    assert ctl.start() is not None and not ctl.doc.labels.any()  # a fresh annotation starts
    kept = [p for p in path.parent.iterdir() if p.name.startswith(path.stem + ".unreadable-")]
    assert len(kept) == 1 and kept[0].read_bytes() == b"half a zip file" and not path.exists()
    assert "cannot be read" in ctl.panel.status.text() and "kept as" in ctl.panel.status.text()


def _sent(window, n: int):
    """The sync service's items once ``n`` of them reached the archive."""
    from workstation.sync.outbox import ItemStatus

    def done():
        items = window.sync.items()
        failed = [i.last_error for i in items if i.status is ItemStatus.FAILED]
        assert not failed, failed
        return len(items) == n and all(i.status is ItemStatus.SENT for i in items)

    return done


def test_start_from_ai_then_save_a_revision_through_the_sync_worker(annotating, qtbot):
    window, vp, ctl = annotating
    result = hand_made_result(vp.volume)
    window.ai.show_result(PLUGIN, result, vp.volume)
    QTest.mouseClick(ctl.panel.action_buttons[Tool.FROM_AI], LEFT)
    doc = ctl.doc
    assert np.array_equal(doc.labels > 0, result.labelmap.labels > 0)
    assert not window.ai.results[PLUGIN.id].visible  # the editable copy replaces the AI overlay
    ctl.undo()
    assert not doc.labels.any()
    ctl.redo()
    ctl.save()
    assert "required attributes" in ctl.panel.status.text()
    widgets = ctl.panel.attribute_widgets
    for key, w in widgets.items():
        w.setCurrentIndex(w.count() - 1)  # e.g. malignancy 5, nodule type ground-glass
    assert ctl.doc.attributes[1]["malignancy"] == 5
    QTest.mouseClick(ctl.panel.save_button, LEFT)
    assert "Saved revision 1 of lung-nodule (dr test)" in ctl.panel.status.text(), ctl.panel.status.text()
    qtbot.waitUntil(_sent(window, 2), timeout=30000)  # the app's worker sent both to the local archive
    study = vp.volume.info.study_instance_uid
    series = {s.modality: s for s in window.archive.local.find_series(study)}
    assert {"SEG", "SR"} <= set(series)
    (seg_path,) = window.archive.local.fetch_series(series["SEG"].series_instance_uid)
    back = read_seg_or_none(seg_path)
    assert int(np.count_nonzero(back.labels)) == int(np.count_nonzero(doc.labels))
    assert {s.name for s in back.segments} == {"Lung nodule"}
    import pydicom

    from workstation.dicom.sr import sr_attributes, sr_to_findings

    (sr_path,) = window.archive.local.fetch_series(series["SR"].series_instance_uid)
    sr = pydicom.dcmread(sr_path)
    findings, _ = sr_to_findings(sr)
    assert [f.label for f in findings] == ["Lung nodule"]
    attrs = sr_attributes(sr)
    assert list(attrs.values())[0]["malignancy"] == 5


def test_two_saves_are_revisions_of_one_set_and_another_user_gets_their_own(annotating, qtbot):
    import pydicom

    from workstation.labels.annotation_sets import list_sets

    window, vp, ctl = annotating
    k = vp.view.slice_index()
    ctl.set_tool(Tool.BRUSH)
    drag(vp, [qpoint(vp, (k, 250, 250)), qpoint(vp, (k, 250, 270))])
    for w in ctl.panel.attribute_widgets.values():
        w.setCurrentIndex(w.count() - 1)
    ctl.save()
    drag(vp, [qpoint(vp, (k, 280, 250)), qpoint(vp, (k, 280, 270))])  # more work, saved again at once
    ctl.save()
    assert "Saved revision 2 of lung-nodule (dr test)" in ctl.panel.status.text(), ctl.panel.status.text()
    ctl.stop()
    ctl.panel.annotator.setText("Other^Reader")
    ctl.start()
    drag(vp, [qpoint(vp, (k, 300, 250)), qpoint(vp, (k, 300, 270))])
    for w in ctl.panel.attribute_widgets.values():
        w.setCurrentIndex(w.count() - 1)
    ctl.save()
    assert "Saved revision 1 of lung-nodule (Other^Reader)" in ctl.panel.status.text()
    qtbot.waitUntil(_sent(window, 6), timeout=30000)
    sets = list_sets(window.archive.local, vp.volume.info.study_instance_uid)  # what reached the archive
    assert [(s.annotator, s.name, [r.revision for r in s.seg], [r.revision for r in s.sr]) for s in sets] == [
        ("Other^Reader", "lung-nodule (Other^Reader)", [1], [1]), ("dr test", "lung-nodule (dr test)", [1, 2], [1, 2])]
    mine, other = sets[1], sets[0]
    assert mine.seg[0].series_instance_uid == mine.seg[1].series_instance_uid != other.seg[0].series_instance_uid
    assert len({r.sop_instance_uid for s in sets for r in s.seg + s.sr}) == 6
    sr1, sr2 = (pydicom.dcmread(r.path) for r in mine.sr)
    pred = sr2.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert pred.ReferencedSOPInstanceUID == sr1.SOPInstanceUID
    assert np.count_nonzero(read_seg_or_none(mine.seg[1].path).labels) > np.count_nonzero(
        read_seg_or_none(mine.seg[0].path).labels)
    ctl.sets.refresh()  # the dock lists them too
    titles = [ctl.panel.sets_box.list.item(n).text() for n in range(ctl.panel.sets_box.list.count())]
    assert any("lung-nodule (dr test)" in t and "revision 2" in t for t in titles), titles


def read_seg_or_none(path):
    from workstation.dicom.seg import SegError, read_seg

    try:
        return read_seg(path)
    except SegError:
        return None


def test_schema_follows_the_modality_of_the_opened_series(main_window):
    """An MR series gets the brain MR schema, the chest CT the lung-nodule one, unless an annotation is under way."""
    from tests.shared_data import shared_case

    archive, ctl = main_window.archive, main_window.annotation
    report = archive.local.import_paths([shared_case("mr-slice-codecs") / "dicom" / "1.dcm"])
    assert report.imported, report.skipped
    series = [s for st in archive.find_studies() for s in archive.find_series(st.study_instance_uid)]
    mr = next(s for s in series if s.modality == "MR")
    ct = next(s for s in series if s.modality == "CT")
    main_window.open_series(mr)
    assert ctl.base_schema.name == "brain-mr" and ctl.panel.schema_box.currentText() == "brain-mr"
    assert [e.segment.name for e in ctl.schema.segments][:2] == ["Grey matter", "White matter"]
    main_window.open_series(ct)
    assert ctl.base_schema.name == "lung-nodule" and ctl.panel.schema_box.currentText() == "lung-nodule"
    ctl.panel.annotator.setText("dr test")
    assert ctl.start() is not None  # annotating the CT: opening the MR now leaves the schema alone
    main_window.open_series(mr)
    assert ctl.base_schema.name == "lung-nodule"


def test_outline_labels_while_painting(annotating):
    from workstation.render.bridge import vtk_to_numpy_image
    from workstation.render.labelmap_layer import boundary_labels

    window, vp, ctl = annotating
    doc = ctl.doc
    ctl.panel.outline.setChecked(True)  # the box in the Annotate panel
    layer = ctl.overlays[id(vp)].layer
    assert layer.outline
    ctl.panel.brush_mm.setValue(8.0)
    ctl.set_tool(Tool.BRUSH)
    k = vp.view.slice_index()
    drag(vp, [qpoint(vp, (k, 200, 180)), qpoint(vp, (k, 200, 240)), qpoint(vp, (k, 200, 300))])
    capture(vp)
    shown = vtk_to_numpy_image(layer._shown_image)
    assert np.array_equal(shown, boundary_labels(doc.labels, 0))  # kept up to date stroke by stroke
    assert shown[k, 200, 240] == 0 and doc.labels[k, 200, 240] == 1  # the inside of the stroke is not drawn
    assert shown[k].sum() > 0
    ctl.set_outline(False)
    assert not ctl.panel.outline.isChecked() and not layer.outline
