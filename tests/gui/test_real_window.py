"""One test in a real X window (run separately):

    WORKSTATION_REAL_WINDOW=1 QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" \
        .venv/bin/python -m pytest tests/gui/test_real_window.py -q
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytestmark = [
    pytest.mark.xvfb,
    pytest.mark.shared_data,
    pytest.mark.skipif(os.environ.get("WORKSTATION_REAL_WINDOW") != "1",
                       reason="runs in a child process under xvfb-run (tests/gui/test_real_window_xvfb.py drives it)"),
]



@pytest.fixture
def out_dir(tmp_path) -> Path:
    """Where screenshots go: ``$WORKSTATION_SCREENSHOT_DIR`` or the test's temporary folder."""
    path = Path(os.environ.get("WORKSTATION_SCREENSHOT_DIR") or tmp_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _png_pixels(path: Path) -> np.ndarray:
    from PySide6.QtGui import QImage

    img = QImage(str(path)).convertToFormat(QImage.Format.Format_RGB888)
    w, h = img.width(), img.height()
    buf = np.frombuffer(img.constBits(), np.uint8, count=img.bytesPerLine() * h)
    return buf.reshape(h, img.bytesPerLine())[:, : 3 * w].reshape(h, w, 3).copy()


def test_main_window_on_a_real_display(main_window, qtbot, out_dir):
    from PySide6.QtGui import QGuiApplication

    from tests.gui.conftest import open_first_series
    from workstation.ui.screenshot import save_screenshot
    from workstation.ui.viewport import SliceViewport
    from workstation.ui.vtk_widget import OffscreenVtkWidget

    assert QGuiApplication.platformName() == "xcb"
    vp = open_first_series(main_window)
    assert not isinstance(vp.canvas, OffscreenVtkWidget)  # the real QVTKRenderWindowInteractor
    assert main_window.findChildren(SliceViewport)
    assert main_window.dock.isVisible() and main_window.browser.isVisible()
    main_window.showMaximized()
    qtbot.wait(500)
    vp.render_now()
    pixels = vp.capture()
    assert pixels.std() > 20, "viewport framebuffer is blank"
    shot = save_screenshot(main_window, out_dir / "real_window.png")
    composite = _png_pixels(shot)
    assert composite.std() > 20
    if shutil.which("import"):  # ImageMagick: what the X server really shows
        screen = out_dir / "real_window_screen.png"
        subprocess.run(["import", "-window", "root", str(screen)], check=True, timeout=60)
        screen_px = _png_pixels(screen)
        top_left = vp.canvas.mapToGlobal(vp.canvas.rect().topLeft())
        x, y = top_left.x(), top_left.y()
        crop = screen_px[y: y + vp.canvas.height(), x: x + vp.canvas.width()]
        assert crop.size and crop.std() > 20, "the viewport looks blank on the X screen"
    # MPR 1+3 with the 3D pane, for the record
    from workstation.ui.viewer_area import Layout

    main_window.set_layout(Layout.MPR)
    qtbot.wait(300)
    for canvas_owner in main_window.viewer.visible_viewports():
        assert canvas_owner.capture().std() > 5
    save_screenshot(main_window, out_dir / "real_window_mpr.png")


def test_closing_the_window_while_annotating_does_not_render_on_freed_windows(main_window, qtbot):
    """Closing ends the annotation first (autosave, overlays cleared: renders queued), then frees the GL
    windows; a queued render on a freed X window used to crash the process on quit."""
    from tests.gui.conftest import open_first_series

    vp = open_first_series(main_window)
    ctl = main_window.annotation
    ctl.panel.annotator.setText("dr quit")
    assert ctl.start() is not None
    main_window.close()
    qtbot.wait(300)  # the event loop runs the queued renders: they must be dropped, not drawn
    assert ctl.session is None and main_window.isHidden()
    assert vp.canvas.__dict__.get("_closed") and not vp.canvas._render_timer.isActive()
