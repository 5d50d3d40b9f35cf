"""Window screenshots that include VTK viewports (``QWidget.grab`` returns garbage for native GL children)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QWidget


def grab_with_viewports(window: QWidget) -> QImage:
    """The window's Qt pixels with every visible VTK canvas painted over from its own framebuffer."""
    from workstation.ui.vtk_widget import _CanvasMixin

    image = window.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    ratio = image.devicePixelRatio() or 1.0
    painter = QPainter(image)
    for canvas in window.findChildren(QWidget):
        if not isinstance(canvas, _CanvasMixin) or not canvas.isVisible():
            continue
        pixels = canvas.capture()
        h, w, _ = pixels.shape
        tile = QImage(pixels.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        tile.setDevicePixelRatio(ratio)
        painter.drawImage(canvas.mapTo(window, QPoint(0, 0)), tile)
    painter.end()
    return image


def save_screenshot(window: QWidget, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not grab_with_viewports(window).save(str(path)):
        raise OSError(f"could not write {path}")
    return path
