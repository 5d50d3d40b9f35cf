"""Priors side by side on the real local archive: the LIDC chest CT and two earlier copies of part of it.

The copies hold slices 30..89 of the 133 (new Study / Series / SOP UIDs, earlier Study Dates); one keeps
the Frame of Reference UID (scrolling follows the patient position), the other gets a new one (scrolling
follows the relative position in the stack).
"""

from __future__ import annotations

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from tests.gui.conftest import LIDC, open_first_series
from tests.shared_data import shared_case
from workstation.ui.sync_scroll import SyncMode, normal_extent
from workstation.ui.viewer_area import Layout

pytestmark = pytest.mark.shared_data

FIRST, LAST = 30, 90  # the slices copied into the priors (spatial order, feet first)
SAME_FOR_DATE, OTHER_FOR_DATE = "19980101", "19950101"


def _copy_as_prior(folder, study_date: str, new_frame_of_reference: bool) -> list[float]:
    """Write slices FIRST..LAST-1 of LIDC as a new study of the same patient; returns their z (mm)."""
    files = sorted((shared_case(LIDC) / "dicom").glob("*.dcm"))
    headers = sorted(((float(dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]), f) for f in files))
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    folder.mkdir(parents=True)
    zs = []
    for z, path in headers[FIRST:LAST]:
        ds = dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyDate = ds.SeriesDate = study_date
        ds.StudyDescription = f"prior {study_date}"
        if new_frame_of_reference:
            ds.FrameOfReferenceUID = frame
        ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
        zs.append(z)
    return zs


@pytest.fixture
def with_priors(main_window, tmp_path):
    same_z = _copy_as_prior(tmp_path / "same", SAME_FOR_DATE, new_frame_of_reference=False)
    _copy_as_prior(tmp_path / "other", OTHER_FOR_DATE, new_frame_of_reference=True)
    report = main_window.archive.import_paths([tmp_path / "same", tmp_path / "other"])
    assert len(report.imported) == 2 * (LAST - FIRST) and not report.skipped
    browser = main_window.browser
    browser.refresh()
    row = next(i for i, s in enumerate(browser.studies) if s.study_date == "20000101")
    browser.table.selectRow(row)
    left = open_first_series(main_window)
    return main_window, left, same_z


def _open_prior(window, top: int):
    """Double-click the first series of the ``top``-th prior in the Priors tab; returns the right viewport."""
    tree = window.browser.priors.tree
    item = tree.topLevelItem(top).child(0)
    tree.scrollToItem(item)
    rect = tree.visualItemRect(item)
    QTest.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
    QTest.mouseDClick(tree.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
    right = window.viewer.viewports[1]
    assert right.volume is not None and right.volume.shape[0] == LAST - FIRST
    return right


def _along(vp) -> float:
    return float(vp.view.position_mm @ vp.view.normal)


def test_priors_listed_newest_first(with_priors):
    window, _left, _ = with_priors
    panel = window.browser.priors
    tree = panel.tree
    assert tree.topLevelItemCount() == 2
    dates = [tree.topLevelItem(i).text(0) for i in range(2)]
    descriptions = [tree.topLevelItem(i).text(2) for i in range(2)]
    assert descriptions == [f"prior {SAME_FOR_DATE}", f"prior {OTHER_FOR_DATE}"]
    assert dates[0] > dates[1]
    assert tree.topLevelItem(0).text(1) == "CT" and tree.topLevelItem(0).child(0).text(3) == str(LAST - FIRST)
    assert "2 prior studies" in panel.header.text() and "LIDC-IDRI-0001" in panel.header.text()


def test_same_frame_of_reference_syncs_by_patient_position(with_priors):
    window, left, same_z = with_priors
    current = left.volume
    right = _open_prior(window, 0)
    assert window.viewer.layout_kind is Layout.ONE_BY_TWO
    assert window.layout_actions[Layout.ONE_BY_TWO].isChecked()
    assert window.viewer.viewports[0].volume is current  # current left, prior right
    assert window.viewer.scroll_sync.mode() is SyncMode.POSITION
    lo, hi = normal_extent(right.volume, right.view.normal)
    assert (left.view.normal == right.view.normal).all()
    for index in (0, 20, 66, 80, 110, 132):
        left.scroll_to(index)
        expected = min(max(_along(left), lo), hi)  # beyond the prior's extent: its first or last slice
        assert abs(_along(right) - expected) < 1e-3, (index, _along(left), _along(right))
        assert min(abs(right.view.position_mm[2] - z) for z in same_z) < 1e-3  # on one of the prior's slices
    # scrolling the prior moves the current study too
    right.scroll_to(10)
    assert abs(_along(left) - _along(right)) < 1e-3


def test_other_frame_of_reference_syncs_by_relative_position_and_unlinks(with_priors):
    window, left, _ = with_priors
    right = _open_prior(window, 1)
    assert window.viewer.scroll_sync.mode() is SyncMode.RELATIVE
    n_left, n_right = left.view.slice_count(), right.view.slice_count()
    assert (n_left, n_right) == (133, LAST - FIRST)
    for index in (0, 33, 66, 100, 132):
        left.scroll_to(index)
        assert right.image_index() == round(index / (n_left - 1) * (n_right - 1)), index
    # unlink: the prior stays where it is; link again: it catches up
    window.link_action.trigger()
    assert not window.link_action.isChecked()
    parked = right.image_index()
    left.scroll_to(5)
    assert right.image_index() == parked
    window.link_action.trigger()
    assert right.image_index() == round(5 / (n_left - 1) * (n_right - 1))
    # back to one viewport: the link is dropped, scrolling no longer drives the hidden view
    window.set_layout(Layout.ONE)
    assert window.viewer.scroll_sync.pair is None
    left.scroll_to(100)
    assert right.image_index() == round(5 / (n_left - 1) * (n_right - 1))


def test_series_angled_differently_in_one_frame_follow_by_position():
    # each view shows its series as acquired: an AC-PC angled series beside an axial one of the same frame
    # of reference is followed by position; planes far apart (an axial beside a sagittal) are not
    import dataclasses

    import numpy as np

    from tests.unit._render_phantoms import blank
    from workstation.model.volume import Volume
    from workstation.ui.sync_scroll import sync_mode

    vol = blank()
    same = Volume(vol.voxels, vol.affine, dataclasses.replace(vol.info, frame_of_reference_uid="1.2.3"))
    tilt = np.radians(12.0)
    axial, angled = np.array([0.0, 0.0, 1.0]), np.array([0.0, np.sin(tilt), np.cos(tilt)])
    assert sync_mode(same, same, axial, angled) is SyncMode.POSITION
    assert sync_mode(same, same, axial, np.array([1.0, 0.0, 0.0])) is SyncMode.RELATIVE
    assert sync_mode(vol, same, axial, axial) is SyncMode.RELATIVE  # no common frame of reference
