"""A VTK viewport for Qt that behaves the same on screen, offscreen and in tests.

Two implementations share one interface (:class:`VtkCanvas`):

* :class:`OffscreenVtkWidget` -- used when Qt runs on the ``offscreen`` (or ``minimal``) platform.  There
  Qt hands VTK a fake window id and ``QVTKRenderWindowInteractor`` over EGL renders blank, so the render
  window renders offscreen and the widget paints the captured pixels itself (so ``QWidget.grab`` works too).
* :class:`OnscreenVtkWidget` -- ``QVTKRenderWindowInteractor`` for real windows (X11/xvfb, Wayland,
  Windows, macOS).

Neither uses VTK interactor styles: Qt mouse, wheel and key events go to a handler object
(:class:`CanvasHandler`) so tools act identically everywhere.  Renders are coalesced: ``request_render``
marks the view dirty and one render happens on the next event-loop turn; ``render_now`` renders at once.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt, QTimer
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

from workstation.render import _vtk as vtk

from workstation.render.offscreen import capture, make_render_window

_OFFSCREEN_PLATFORMS = ("offscreen", "minimal")


def qt_is_offscreen() -> bool:
    """True when Qt runs without a real window system (``QT_QPA_PLATFORM=offscreen``)."""
    name = QGuiApplication.platformName().lower() if QGuiApplication.instance() else ""
    return name in _OFFSCREEN_PLATFORMS


class CanvasHandler:
    """Receives the canvas' input.  Positions are VTK display pixels: origin bottom-left."""

    def on_press(self, button: Qt.MouseButton, x: float, y: float, mods: Qt.KeyboardModifier) -> None: ...

    def on_move(self, buttons: Qt.MouseButton, x: float, y: float, mods: Qt.KeyboardModifier) -> None: ...

    def on_release(self, button: Qt.MouseButton, x: float, y: float, mods: Qt.KeyboardModifier) -> None: ...

    def on_wheel(self, steps: int, x: float, y: float, mods: Qt.KeyboardModifier) -> None: ...

    def on_key(self, key: int, mods: Qt.KeyboardModifier, text: str) -> bool:
        """Return True when the key was used."""
        return False

    def on_leave(self) -> None: ...


class _CanvasMixin:
    """Event routing, render coalescing and pixel capture shared by both widgets."""

    handler: CanvasHandler | None
    render_window: vtk.vtkRenderWindow
    renderer: vtk.vtkRenderer

    def _init_canvas(self) -> None:
        self.handler = None
        self._dirty = False
        self._render_timer = QTimer(self)  # type: ignore[arg-type]
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(0)
        self._render_timer.timeout.connect(self._flush_render)
        self.renderer = vtk.vtkRenderer()
        self.renderer.SetBackground(0.0, 0.0, 0.0)
        self.render_window.AddRenderer(self.renderer)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # type: ignore[attr-defined]
        self.setMouseTracking(True)  # type: ignore[attr-defined]
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)  # type: ignore[attr-defined]
        self.setMinimumSize(64, 64)  # type: ignore[attr-defined]

    # -- rendering -------------------------------------------------------------------------------
    def request_render(self) -> None:
        """Render on the next event-loop turn (many requests -> one render)."""
        self._dirty = True
        if not self._render_timer.isActive():
            self._render_timer.start()

    def _flush_render(self) -> None:
        if self._dirty:
            self.render_now()

    def render_now(self) -> None:
        raise NotImplementedError

    def capture(self) -> np.ndarray:
        """The viewport's pixels as (H, W, 3) uint8, top row first, freshly rendered."""
        self.render_now()
        return _grab(self.render_window)

    def display_size(self) -> tuple[int, int]:
        w, h = self.render_window.GetSize()
        return int(w), int(h)

    # -- input -------------------------------------------------------------------------------------
    def _display_xy(self, pos: QPointF) -> tuple[float, float]:
        ratio = self._pixel_ratio()
        h = self.display_size()[1]
        return float(pos.x()) * ratio, float(h - 1) - float(pos.y()) * ratio

    def _pixel_ratio(self) -> float:
        return 1.0

    def mousePressEvent(self, ev) -> None:  # noqa: N802 (Qt names)
        self.setFocus()  # type: ignore[attr-defined]
        if self.handler is not None:
            self.handler.on_press(ev.button(), *self._display_xy(ev.position()), ev.modifiers())

    def mouseMoveEvent(self, ev) -> None:  # noqa: N802
        if self.handler is not None:
            self.handler.on_move(ev.buttons(), *self._display_xy(ev.position()), ev.modifiers())

    def mouseReleaseEvent(self, ev) -> None:  # noqa: N802
        if self.handler is not None:
            self.handler.on_release(ev.button(), *self._display_xy(ev.position()), ev.modifiers())

    def wheelEvent(self, ev) -> None:  # noqa: N802
        delta = ev.angleDelta().y()
        steps = int(delta / 120) or (1 if delta > 0 else -1 if delta < 0 else 0)
        if self.handler is not None and steps:
            self.handler.on_wheel(steps, *self._display_xy(ev.position()), ev.modifiers())
        ev.accept()

    def keyPressEvent(self, ev) -> None:  # noqa: N802
        if self.handler is not None and self.handler.on_key(ev.key(), ev.modifiers(), ev.text()):
            ev.accept()
            return
        ev.ignore()  # let the parent (viewport, main window) see it

    def keyReleaseEvent(self, ev) -> None:  # noqa: N802
        ev.ignore()

    def leaveEvent(self, ev) -> None:  # noqa: N802
        if self.handler is not None:
            self.handler.on_leave()


def _grab(render_window: vtk.vtkRenderWindow) -> np.ndarray:
    return capture(render_window, render=False)


class OffscreenVtkWidget(_CanvasMixin, QWidget):
    """Renders into an offscreen VTK window and paints the pixels with QPainter."""

    def __init__(self, parent: QWidget | None = None) -> None:
        QWidget.__init__(self, parent)
        self.render_window = make_render_window((max(self.width(), 64), max(self.height(), 64)), offscreen=True)
        self._image: QImage | None = None
        self._init_canvas()
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)

    def render_now(self) -> None:
        self._dirty = False
        self.render_window.Render()
        pixels = _grab(self.render_window)
        h, w, _ = pixels.shape
        self._pixels = pixels  # QImage does not own the buffer
        self._image = QImage(pixels.data, w, h, 3 * w, QImage.Format.Format_RGB888)
        self.update()

    def resizeEvent(self, ev) -> None:  # noqa: N802
        w, h = max(ev.size().width(), 1), max(ev.size().height(), 1)
        self.render_window.SetSize(w, h)
        self.request_render()

    def paintEvent(self, ev) -> None:  # noqa: N802
        painter = QPainter(self)
        if self._image is not None:
            painter.drawImage(0, 0, self._image)
        else:
            painter.fillRect(self.rect(), Qt.GlobalColor.black)
        painter.end()

    def close_canvas(self) -> None:
        self.render_window.Finalize()


def _onscreen_class():
    from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor

    class OnscreenVtkWidget(_CanvasMixin, QVTKRenderWindowInteractor):
        """QVTKRenderWindowInteractor with VTK's own interaction switched off."""

        def __init__(self, parent: QWidget | None = None) -> None:
            rw = vtk.vtkRenderWindow()
            rw.SetMultiSamples(0)
            QVTKRenderWindowInteractor.__init__(self, parent, rw=rw)
            self.render_window = rw
            self._init_canvas()
            self._Iren.SetInteractorStyle(None)
            self._Iren.Initialize()

        def render_now(self) -> None:
            self._dirty = False
            if not self.__dict__.get("_closed"):  # a render queued before the window closed: GL is gone
                self.render_window.Render()

        def _pixel_ratio(self) -> float:
            return float(self.devicePixelRatioF())

        def enterEvent(self, ev) -> None:  # noqa: N802
            pass

        def close_canvas(self) -> None:
            """Release the GL context and X window now, not at some later garbage collection."""
            rw = self.__dict__.get("render_window")
            if rw is not None and not self.__dict__.get("_closed"):
                self._closed = True
                self._render_timer.stop()
                rw.Finalize()

        def closeEvent(self, ev) -> None:  # noqa: N802
            self.close_canvas()  # the base class' version fails once Python attributes are gone
            ev.accept()

    return OnscreenVtkWidget


def make_canvas(parent: QWidget | None = None, *, offscreen: bool | None = None):
    """The right VTK canvas for this Qt platform (offscreen when ``offscreen`` is None and Qt is)."""
    if offscreen is None:
        offscreen = qt_is_offscreen()
    if offscreen:
        return OffscreenVtkWidget(parent)
    return _onscreen_class()(parent)


__all__ = ["CanvasHandler", "OffscreenVtkWidget", "make_canvas", "qt_is_offscreen"]
