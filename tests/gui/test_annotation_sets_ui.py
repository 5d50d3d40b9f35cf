"""Annotation sets in the Annotate dock on the real main window: the third-party dcmqi SEG of a 3-slice CT
listed from the local archive, opened for editing (voxel-exact against dcmqi's NRRD), edited with the brush
and saved as a new revision of the current user's own set; overlapping segments open as separate layers;
read-only sets cannot be edited or saved."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from tests.gui.test_annotate import _sent, drag, qpoint, read_seg_or_none
from tests.shared_data import shared_case
from workstation.labels.annotation_sets import list_sets
from workstation.labels.schema import Tool

LEFT = Qt.MouseButton.LeftButton
CASE = "seg-ct-3slice-dcmqi"


@pytest.fixture
def dcmqi(main_window):
    """The main window with the dcmqi CT and its SEGs imported into the local archive, the CT open."""
    folder = shared_case(CASE)
    archive = main_window.archive
    report = archive.local.import_paths([folder / "dicom", folder / "liver.dcm", folder / "partial_overlaps.dcm"])
    assert report.imported, report.skipped
    main_window.browser.refresh()
    ct = next(s for st in archive.find_studies() for s in archive.find_series(st.study_instance_uid)
              if s.modality == "CT" and s.number_of_instances == 3)
    main_window.open_series(ct)
    vp = main_window.viewer.active_slice_viewport()
    assert vp.volume is not None and vp.volume.shape[0] == 3
    vp.render_now()
    ctl = main_window.annotation
    ctl.panel.annotator.setText("dr test")
    ctl.show()
    return main_window, vp, ctl, folder


def _listed(ctl) -> dict[str, int]:
    box = ctl.panel.sets_box
    return {box.list.item(n).data(Qt.ItemDataRole.UserRole).annotation_set.name: n for n in range(box.list.count())}


def _nrrd_voxels(folder) -> int:
    import SimpleITK as sitk

    return int(np.count_nonzero(sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "liver_seg.nrrd")))))


def test_third_party_seg_opens_for_editing_and_saves_into_the_users_own_set(dcmqi, qtbot):
    window, vp, ctl, folder = dcmqi
    box = ctl.panel.sets_box
    QTest.mouseClick(box.refresh_button, LEFT)
    rows = _listed(ctl)
    assert "Liver Segmentation" in rows and "Segmentation" in rows, rows
    box.list.setCurrentRow(rows["Liver Segmentation"])
    assert "SEG, revision 1" in box.list.currentItem().text() and "no findings" in box.list.currentItem().text()
    QTest.mouseClick(box.edit_button, LEFT)
    doc = ctl.doc
    assert doc is not None and ctl.session is not None, ctl.panel.status.text()
    assert doc.annotator == "dr test" and doc.labels.shape == vp.volume.shape
    liver = next(s for s in doc.segments if s.name == "Liver")
    expected = _nrrd_voxels(folder)
    assert int(np.count_nonzero(doc.labels == liver.number)) == expected > 0
    assert "for editing" in ctl.panel.status.text()
    assert ctl.overlays[id(vp)].layer.labelmap is doc.labelmap  # drawn on the CT

    row = next(n for n in range(ctl.panel.segments.count())
               if ctl.panel.segments.item(n).data(Qt.ItemDataRole.UserRole) == liver.number)
    ctl.panel.segments.setCurrentRow(row)  # the opened set's segment is in the list to draw with
    ctl.set_tool(Tool.BRUSH)
    ctl.panel.brush_mm.setValue(4.0)
    k = vp.view.slice_index()
    free = np.argwhere(doc.labels[k] == 0)
    j, i = (int(v) for v in free[len(free) // 3])  # a place the liver is not
    stroke = [qpoint(vp, (k, j, max(i - 10, 0))), qpoint(vp, (k, j, min(i + 10, doc.labels.shape[2] - 1)))]
    drag(vp, stroke)
    painted = int(np.count_nonzero(doc.labels == liver.number))
    assert painted > expected and len(doc.undo_stack) == 1

    QTest.mouseClick(ctl.panel.save_button, LEFT)
    assert "Saved revision 1 of lung-nodule (dr test)" in ctl.panel.status.text(), ctl.panel.status.text()
    qtbot.waitUntil(_sent(window, 2), timeout=30000)  # the SEG and the SR of its region finding
    sets = {s.name: s for s in list_sets(window.archive.local, vp.volume.info.study_instance_uid)}
    third = sets["Liver Segmentation"]
    assert third.revision == 1 and len(third.seg) == 1  # the third party's set is untouched
    mine = sets["lung-nodule (dr test)"]
    assert mine.annotator == "dr test" and mine.revision == 1
    assert mine.seg[0].series_instance_uid != third.seg[0].series_instance_uid
    back = read_seg_or_none(mine.seg[0].path)
    assert [s.name for s in back.segments] == ["Liver"]
    assert int(np.count_nonzero(back.labels)) == painted


def test_unsaved_work_comes_before_opening_a_set_for_editing_and_a_saved_revision_is_not_offered(dcmqi, qtbot):
    """Opening a set for editing would autosave over this annotator's unsaved work on the series: refused
    while it is open and unsaved, offered when only its autosave is there; once saved as a revision it is no
    longer offered as unsaved work."""
    window, vp, ctl, folder = dcmqi
    box = ctl.panel.sets_box
    assert ctl.start() is not None
    ctl.set_tool(Tool.BRUSH)
    k = vp.view.slice_index()
    drag(vp, [qpoint(vp, (k, 250, 250)), qpoint(vp, (k, 250, 270))])
    mine = ctl.doc
    ctl.autosaver.flush()
    autosaved = ctl.store.path_for(mine.study_uid, mine.series_uid, mine.annotator)
    on_disk = autosaved.read_bytes()
    QTest.mouseClick(box.refresh_button, LEFT)
    box.list.setCurrentRow(_listed(ctl)["Liver Segmentation"])
    QTest.mouseClick(box.edit_button, LEFT)
    assert ctl.doc is mine and "unsaved work on this series" in ctl.panel.status.text()
    ctl.stop()  # (its autosave stays: unsaved work)
    QTest.mouseClick(box.edit_button, LEFT)
    assert ctl.doc is None and ctl.panel.restore_bar.isVisibleTo(ctl.panel)  # offered instead
    assert autosaved.read_bytes() == on_disk
    QTest.mouseClick(ctl.panel.restore_button, LEFT)
    assert ctl.doc is not None and np.array_equal(ctl.doc.labels, mine.labels)
    for w in ctl.panel.attribute_widgets.values():
        w.setCurrentIndex(w.count() - 1)
    QTest.mouseClick(ctl.panel.save_button, LEFT)
    assert "Saved revision 1" in ctl.panel.status.text(), ctl.panel.status.text()
    assert not autosaved.exists()  # saved: not unsaved work any more
    qtbot.waitUntil(_sent(window, 2), timeout=30000)
    ctl.stop()
    assert ctl.start() is not None and not ctl.doc.labels.any()  # no offer: a fresh annotation
    QTest.mouseClick(box.refresh_button, LEFT)
    box.list.setCurrentRow(_listed(ctl)["Liver Segmentation"])
    QTest.mouseClick(box.edit_button, LEFT)
    assert ctl.doc is not None and ctl.doc.labels.any() and "for editing" in ctl.panel.status.text()


def test_overlapping_segments_open_as_separate_layers(dcmqi):
    window, vp, ctl, folder = dcmqi
    box = ctl.panel.sets_box
    ctl.sets.refresh()
    box.list.setCurrentRow(_listed(ctl)["Segmentation"])
    QTest.mouseClick(box.edit_button, LEFT)
    layers = box.layer.maximum()
    assert layers > 1 and "separate layers" in ctl.panel.status.text(), ctl.panel.status.text()
    seen = []
    for n in range(1, layers + 1):
        box.layer.setValue(n)
        QTest.mouseClick(box.edit_button, LEFT)
        names = [s.name for s in ctl.doc.segments if np.any(ctl.doc.labels == s.number)]
        assert names and f"layer {n}" in ctl.panel.status.text()
        seen.extend(names)
    assert len(seen) == len(set(seen)) == 5  # every segment in exactly one layer, none merged


def test_read_only_set_is_drawn_but_not_edited_or_saved(dcmqi):
    window, vp, ctl, folder = dcmqi
    box = ctl.panel.sets_box
    ctl.sets.refresh()
    box.list.setCurrentRow(_listed(ctl)["Liver Segmentation"])
    QTest.mouseClick(box.view_button, LEFT)
    doc = ctl.doc
    assert doc is not None and ctl.session is None and ctl.autosaver is None
    assert ctl.overlays[id(vp)].layer.labelmap is doc.labelmap
    assert int(np.count_nonzero(doc.labels)) == _nrrd_voxels(folder)
    assert all(v.tools.annotator is None for v in ctl.slice_viewports())  # mouse edits go nowhere
    ctl.save()
    assert "read-only" in ctl.panel.status.text()
    assert window.sync.items() == []


@pytest.fixture
def remote_ct_window(settings, monkeypatch, tmp_path_factory, main_window_factory):
    """A main window with an Orthanc of its own (DICOMweb) holding the dcmqi CT, opened from there."""
    from tests.conftest import _unavailable
    from tests.integration import orthanc as orthanc_mod
    from workstation.archive.credentials import SecretStore
    from workstation.archive.factory import password_key
    from workstation.config import ArchiveEndpoint, save_archives

    reason = orthanc_mod.orthanc_available()
    if reason:
        _unavailable(reason)
    monkeypatch.setenv("WORKSTATION_NO_KEYRING", "1")
    server = orthanc_mod.OrthancServer(workdir=tmp_path_factory.mktemp("orthanc-annotate"))
    server.start()
    try:
        server.upload(orthanc_mod.dicom_files(shared_case(CASE) / "dicom"))
        save_archives(settings.home, [ArchiveEndpoint("PACS", "dicomweb", url=server.dicomweb_url, auth="basic",
                                                      user=server.auth[0], timeout=20)])
        SecretStore(settings.home, use_keyring=False).set(password_key("PACS"), server.auth[1])
        window = main_window_factory()
        window.browser.archive_combo.setCurrentText("PACS")
        assert window.browser.is_remote() and len(window.browser.studies) == 1
        window.browser.table.selectRow(0)
        yield window, server
    finally:
        server.stop()


def test_a_save_goes_back_to_the_remote_archive_the_series_came_from(remote_ct_window, qtbot):
    from tests.gui.conftest import open_first_series

    window, server = remote_ct_window
    vp = open_first_series(window)
    assert vp.volume.shape[0] == 3
    ctl = window.annotation
    ctl.panel.annotator.setText("dr test")
    ctl.start()
    ctl.set_tool(Tool.BRUSH)
    k = vp.view.slice_index()
    drag(vp, [qpoint(vp, (k, 250, 250)), qpoint(vp, (k, 250, 270))])
    for w in ctl.panel.attribute_widgets.values():
        w.setCurrentIndex(w.count() - 1)
    ctl.save()
    assert "sending to PACS" in ctl.panel.status.text(), ctl.panel.status.text()
    qtbot.waitUntil(_sent(window, 2), timeout=30000)
    assert {i.archive for i in window.sync.items()} == {"PACS"}
    study = vp.volume.info.study_instance_uid
    (mine,) = list_sets(window.archive.client("PACS"), study)  # read back from Orthanc itself
    assert (mine.annotator, mine.revision) == ("dr test", 1)
    assert int(np.count_nonzero(read_seg_or_none(mine.seg[0].path).labels)) == int(np.count_nonzero(ctl.doc.labels))
    assert not window.archive.local.find_series(study)  # nothing went to the local archive
