"""The 2D viewer on the real LIDC chest CT: open, scroll, window/level, presets, measurements."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from tests.gui.conftest import open_first_series
from workstation.render.presets import WINDOW_PRESETS
from workstation.ui.tools import Tool

pytestmark = pytest.mark.shared_data


def _qt_point(vp, x_display: float, y_display: float) -> QPoint:
    """Widget position of a VTK display position (origin bottom-left)."""
    h = vp.canvas.display_size()[1]
    return QPoint(int(round(x_display)), int(round(h - 1 - y_display)))


def _drag(canvas, a: QPoint, b: QPoint, button=Qt.MouseButton.LeftButton, steps: int = 5) -> None:
    QTest.mousePress(canvas, button, Qt.KeyboardModifier.NoModifier, a)
    for t in np.linspace(0, 1, steps + 1)[1:]:
        QTest.mouseMove(canvas, QPoint(int(a.x() + (b.x() - a.x()) * t), int(a.y() + (b.y() - a.y()) * t)))
    QTest.mouseRelease(canvas, button, Qt.KeyboardModifier.NoModifier, b)


def _wheel(canvas, notches: int) -> None:
    pos = QPointF(canvas.width() / 2, canvas.height() / 2)
    ev = QWheelEvent(pos, canvas.mapToGlobal(pos), QPoint(0, 0), QPoint(0, 120 * notches),
                     Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(canvas, ev)


def test_double_click_series_shows_the_slice(main_window):
    assert len(main_window.browser.studies) == 1
    vp = open_first_series(main_window)
    assert vp.volume.shape == (133, 512, 512)
    pixels = vp.capture()
    assert pixels.std() > 20, "viewport is blank after opening the series"
    assert "LIDC-IDRI-0001" in main_window.windowTitle()
    assert vp.view.slice_count() == 133
    assert vp.scrollbar.maximum() == 132
    labels = vp.view.orientation_labels()
    assert (labels["left"], labels["top"]) == ("R", "A"), labels  # radiological convention


def test_thumbnail_is_made_and_cached(main_window):
    uid = main_window.browser.series[0].series_instance_uid
    thumb = main_window.browser.thumbnails[uid]
    assert 32 <= max(thumb.width(), thumb.height()) <= 96
    assert not main_window.browser.series_list.item(0).icon().isNull()


def test_wheel_and_keys_scroll_slices(main_window):
    vp = open_first_series(main_window)
    before, k0 = vp.capture(), vp.image_index()
    z0 = vp.view.position_mm[2]
    _wheel(vp.canvas, -3)  # wheel towards the user: next images
    assert vp.image_index() == k0 + 3
    assert vp.view.position_mm[2] == pytest.approx(z0 - 3 * 2.5, abs=0.01)  # axial: next = towards the feet
    after = vp.capture()
    assert np.abs(after.astype(int) - before).mean() > 1.0, "scrolling did not change the picture"
    QTest.keyClick(vp.canvas, Qt.Key.Key_Down)
    assert vp.image_index() == k0 + 4
    QTest.keyClick(vp.canvas, Qt.Key.Key_Home)
    assert vp.image_index() == 0
    top = vp.view.position_mm[2]
    QTest.keyClick(vp.canvas, Qt.Key.Key_End)
    assert vp.image_index() == 132
    assert vp.view.position_mm[2] < top  # image 1 is the most cranial
    assert vp.scrollbar.value() == 132
    assert "Im 133/133" in vp.view.corners.GetText(0)
    vp.scrollbar.setValue(10)
    assert vp.image_index() == 10


def test_left_drag_changes_window(main_window):
    vp = open_first_series(main_window)
    w0 = vp.view.window
    before = vp.capture()
    c = QPoint(vp.canvas.width() // 2, vp.canvas.height() // 2)
    _drag(vp.canvas, c, c + QPoint(80, -40))
    w1 = vp.view.window
    assert w1.width > w0.width  # right = wider
    assert w1.center != w0.center  # vertical = level
    assert np.abs(vp.capture().astype(int) - before).mean() > 1.0
    assert f"W {w1.width:.0f}" in vp.view.corners.GetText(0)


def test_preset_keys(main_window):
    vp = open_first_series(main_window)
    QTest.keyClick(vp.canvas, Qt.Key.Key_3)
    assert vp.view.window == WINDOW_PRESETS["bone"]
    QTest.keyClick(vp.canvas, Qt.Key.Key_1)
    assert vp.view.window == WINDOW_PRESETS["lung"]
    QTest.keyClick(vp.canvas, Qt.Key.Key_0)
    assert vp.view.window == vp.volume.auto_window()


def test_view_keys_flip_and_invert(main_window):
    vp = open_first_series(main_window)
    before = vp.capture()
    QTest.keyClick(vp.canvas, Qt.Key.Key_H)
    assert vp.view.orientation_labels()["left"] == "L"
    QTest.keyClick(vp.canvas, Qt.Key.Key_H)
    QTest.keyClick(vp.canvas, Qt.Key.Key_I)
    assert vp.view.invert
    assert np.abs(vp.capture().astype(int) - before).mean() > 20


def test_length_measurement_of_known_distance(main_window):
    vp = open_first_series(main_window)
    main_window.set_tool(Tool.LENGTH)
    centre = vp.view.position_mm
    right, _up = vp.view.screen_axes()
    p0, p1 = centre - 40.0 * right, centre + 40.0 * right  # 80 mm apart on this slice
    a, b = (_qt_point(vp, *vp.view.lps_to_display(p)) for p in (p0, p1))
    _drag(vp.canvas, a, b)
    assert len(vp.tools.measurements) == 1
    length = vp.tools.measurements[0].measurement.length_mm
    assert length == pytest.approx(80.0, abs=2 * vp.view.mm_per_pixel())
    assert "mm" in vp.tools.measurements[0].text
    QTest.keyClick(vp.canvas, Qt.Key.Key_Delete)
    assert vp.tools.measurements == []


def test_ellipse_roi_in_air_reads_air(main_window):
    vp = open_first_series(main_window)
    main_window.set_tool(Tool.ELLIPSE)
    vol = vp.volume
    # Trachea-free air outside the patient but inside the scan circle: 10 mm left of the volume's edge
    # would be padding, so take a point in front of the chest wall (anterior = screen up).
    centre = vp.view.position_mm
    _right, up = vp.view.screen_axes()
    spot = centre + 150.0 * up
    x, y = vp.view.lps_to_display(spot)
    a, b = _qt_point(vp, x - 10, y - 5), _qt_point(vp, x + 10, y + 5)
    _drag(vp.canvas, a, b)
    stats = vp.tools.measurements[-1].stats
    assert stats is not None and stats.count > 0
    assert vol.info.units == "HU"
    assert stats.mean < -900, stats  # air


def test_cine_plays(main_window, qtbot):
    vp = open_first_series(main_window)
    k0 = vp.image_index()
    vp.cine_fps = 50
    QTest.keyClick(vp.canvas, Qt.Key.Key_C)
    qtbot.waitUntil(lambda: vp.image_index() >= k0 + 2, timeout=3000)
    QTest.keyClick(vp.canvas, Qt.Key.Key_C)
    assert not vp.cine.isActive()


def test_value_under_cursor_in_status_bar(main_window):
    vp = open_first_series(main_window)
    spot = vp.view.position_mm  # the volume centre: inside the body
    q = _qt_point(vp, *vp.view.lps_to_display(spot))
    QTest.mouseMove(vp.canvas, q)
    h = vp.canvas.display_size()[1]
    expected = vp.volume.value_at(vp.view.display_to_lps(q.x(), h - 1 - q.y()))
    message = main_window.statusBar().currentMessage()
    assert message.startswith("HU "), message
    assert abs(float(message.split()[1]) - expected) <= 1.0
    assert "LPS" in vp.view.corners.GetText(0)
