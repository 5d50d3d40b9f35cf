"""Oblique acquisitions read as acquired: the GE head CT with 18.5 degrees of gantry tilt opens on its own
image plane (one scroll step per slice of its grid, the scanner's pixels), and the label tools draw on it
without any rotation first (they draw on grid planes only, and a reslice along the patient's axes is not one)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.gui.test_annotate import drag, qpoint
from tests.shared_data import shared_case
from workstation.labels.schema import Tool
from workstation.render.slice_view import Orientation
from workstation.ui.viewport_text import LOWER_LEFT, corner_texts


@pytest.fixture
def tilted(main_window):
    report = main_window.archive.import_paths([shared_case("ct-head-ge-tilt") / "dicom"])
    assert report.imported, report.skipped
    ref = next(s for st in main_window.archive.find_studies() for s in main_window.archive.find_series(
        st.study_instance_uid) if s.modality == "CT" and s.number_of_instances == 28)
    main_window.open_series(ref)
    vp = main_window.viewer.active_slice_viewport()
    assert vp.volume is not None and vp.volume.shape[0] < 100  # the tilted head, not the chest
    vp.render_now()
    return main_window, vp


def test_the_tilted_ct_opens_on_its_own_plane(tilted):
    _window, vp = tilted
    vol, view = vp.volume, vp.view
    assert view.orientation is Orientation.AXIAL
    # the view's normal is the grid's slice axis (18.5 degrees from the patient's z), one step one slice
    slice_axis = vol.direction[:, 2]
    assert abs(view.normal @ slice_axis) == pytest.approx(1.0, abs=1e-9)
    assert np.degrees(np.arccos(abs(view.normal[2]))) == pytest.approx(18.5, abs=0.5)
    assert view.slice_count() == vol.shape[0]
    assert view.slice_step_mm() == pytest.approx(vol.spacing[2], abs=1e-6)
    assert corner_texts(view, vp.image_index())[LOWER_LEFT].startswith(f"Im {vp.image_index() + 1}/{vol.shape[0]}")
    # screen right and up are the grid's rows and columns: a pixel on screen is a pixel of the image
    right, up = view.screen_axes()
    assert abs(right @ vol.direction[:, 0]) == pytest.approx(1.0) and abs(up @ vol.direction[:, 1]) == pytest.approx(1.0)


def test_the_brush_paints_the_tilted_ct_without_rotating_first(tilted):
    window, vp = tilted
    ctl = window.annotation
    ctl.panel.annotator.setText("dr tilt")
    doc = ctl.start()
    assert doc is not None
    ctl.panel.brush_mm.setValue(3.0)
    ctl.set_tool(Tool.BRUSH)
    k = int(round(vp.volume.lps_to_index(vp.view.position_mm)[2]))  # the grid slice shown
    _, rows, cols = vp.volume.shape
    a, m, b = (k, rows // 2, cols // 2 - 60), (k, rows // 2, cols // 2), (k, rows // 2, cols // 2 + 60)
    drag(vp, [qpoint(vp, a), qpoint(vp, m), qpoint(vp, b)])
    painted = doc.labels == 1
    assert "image grid only" not in window.statusBar().currentMessage()
    assert np.array_equal(np.flatnonzero(painted.any((1, 2))), [k])  # on the slice shown, and only there
    assert painted[a] and painted[m] and painted[b]


def test_along_the_patients_axes_on_request_and_back(tilted):
    window, vp = tilted
    view, vol = vp.view, vp.volume
    acquired_normal = view.normal.copy()
    window.set_acquired_planes(False)  # View > Show series as acquired, off: the patient's axes (as in Slicer)
    assert not window.acquired_action.isChecked() and not view.acquired_planes
    assert np.allclose(view.normal, [0.0, 0.0, 1.0])
    assert view.slice_count() > vol.shape[0]  # true axial planes across the tilted stack
    index = vol.lps_to_index(view.position_mm)
    assert np.allclose(index, np.rint(index), atol=1e-6)  # through a voxel centre still
    assert all(not v.view.acquired_planes for v in window.viewer.mpr.slice_viewports())
    # the label tools cannot draw across the grid: a clear message, nothing painted
    ctl = window.annotation
    ctl.panel.annotator.setText("dr axes")
    doc = ctl.start()
    ctl.set_tool(Tool.BRUSH)
    k = int(round(index[2]))
    _, rows, cols = vol.shape
    drag(vp, [qpoint(vp, (k, rows // 2, cols // 2)), qpoint(vp, (k, rows // 2, cols // 2 + 40))])
    assert not doc.labels.any()
    assert "Show series as acquired" in ctl.panel.status.text() + window.statusBar().currentMessage()
    window.acquired_action.trigger()  # and back on from the menu
    assert window.acquired_action.isChecked() and view.acquired_planes
    assert np.allclose(view.normal, acquired_normal)
