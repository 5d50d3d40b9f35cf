"""MPR 1+3 and the 3D pane on the LIDC chest CT."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from tests.gui.conftest import open_first_series
from workstation.render.slice_view import SlabMode
from workstation.ui.viewer_area import Layout

pytestmark = pytest.mark.shared_data


@pytest.fixture
def mpr(main_window):
    open_first_series(main_window)
    action = main_window.layout_actions[Layout.MPR]
    assert action.shortcut().toString() == "Ctrl+4"
    action.trigger()
    assert main_window.viewer.layout_kind is Layout.MPR
    panel = main_window.viewer.mpr
    assert panel.volume is not None
    return panel


def test_click_in_axial_moves_coronal_and_sagittal(mpr):
    cor0, sag0 = mpr.coronal.view.position_mm, mpr.sagittal.view.position_mm
    cor_px, sag_px = mpr.coronal.capture(), mpr.sagittal.capture()
    canvas = mpr.axial.canvas
    target = QPoint(canvas.width() // 2 + 60, canvas.height() // 2 + 50)  # patient left, posterior
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, target)
    p = mpr.controller.point
    cor1, sag1 = mpr.coronal.view.position_mm, mpr.sagittal.view.position_mm
    assert abs(cor1[1] - cor0[1]) > 10  # coronal plane moved along y (posterior)
    assert abs(sag1[0] - sag0[0]) > 10  # sagittal plane moved along x (left)
    assert cor1[1] > cor0[1] and sag1[0] > sag0[0]  # LPS: +x left, +y posterior
    assert np.allclose(mpr.coronal.view.position_mm @ mpr.coronal.view.normal, p @ mpr.coronal.view.normal)
    assert np.abs(mpr.coronal.capture().astype(int) - cor_px).mean() > 1.0
    assert np.abs(mpr.sagittal.capture().astype(int) - sag_px).mean() > 1.0


def test_ctrl_drag_rotates_the_other_planes(mpr):
    canvas = mpr.axial.canvas
    c = QPoint(canvas.width() // 2, canvas.height() // 2)
    a, b = c + QPoint(80, 0), c + QPoint(0, -80)
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier, a)
    QTest.mouseMove(canvas, c + QPoint(60, -60))
    QTest.mouseMove(canvas, b)
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier, b)
    assert not np.allclose(mpr.coronal.view.oblique, np.eye(3))
    assert np.allclose(mpr.axial.view.oblique, np.eye(3))
    mpr.reset()
    assert np.allclose(mpr.coronal.view.oblique, np.eye(3))


def test_slab_mip_changes_picture(mpr):
    before = mpr.axial.capture()
    mpr.slab_thickness.setValue(20.0)
    mpr.slab_mode.setCurrentIndex(mpr.slab_mode.findData(SlabMode.MIP))
    after = mpr.axial.capture()
    assert np.abs(after.astype(int) - before).mean() > 0.5


def test_volume_rendering_is_not_blank(mpr):
    pane = mpr.volume_pane
    pixels = pane.capture()
    assert pixels.std() > 5, "3D view is blank"
    assert (pixels.max(axis=2) > 40).mean() > 0.02  # something lit covers a part of the view
    i = pane.presets.findData("ct-soft-tissue")
    pane.presets.setCurrentIndex(i)
    assert pane.view.preset == "ct-soft-tissue"
    canvas = pane.canvas
    c = QPoint(canvas.width() // 2, canvas.height() // 2)
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, c)
    QTest.mouseMove(canvas, c + QPoint(40, 0))
    assert pane.view.interactive  # coarse while dragging
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, c + QPoint(40, 0))
    rotated = pane.capture()
    assert np.abs(rotated.astype(int) - pixels).mean() > 0.5
