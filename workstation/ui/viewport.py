"""The 2D viewport: a SliceView in a VTK canvas, with scrollbar, tools, presets, cine, overlays, loading.

Keys (when the viewport has focus): wheel / Up / Down / PageUp / PageDown / Home / End scroll;
1..6 window presets (lung, mediastinum, bone, brain, abdomen, liver), 0 or A auto window; F fit,
H / V flip, R rotate 90, I invert, C cine; Delete removes the last measurement.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QProgressBar, QScrollBar, QToolButton, QVBoxLayout, QWidget

from workstation.archive.client import Progress
from workstation.model.volume import Volume
from workstation.render.presets import AUTO, WINDOW_PRESETS, resolve_window
from workstation.render.slice_view import Orientation, SliceView
from workstation.ui.qt_compat import emit, emitter
from workstation.ui.tasks import TaskHandle
from workstation.ui.tools import SliceTools, Tool
from workstation.ui.viewport_text import corner_texts, cursor_text
from workstation.ui.vtk_widget import CanvasHandler, make_canvas

PRESET_KEYS = {Qt.Key.Key_1: "lung", Qt.Key.Key_2: "mediastinum", Qt.Key.Key_3: "bone",
               Qt.Key.Key_4: "brain", Qt.Key.Key_5: "abdomen", Qt.Key.Key_6: "liver",
               Qt.Key.Key_0: AUTO, Qt.Key.Key_A: AUTO}
_REFRESH_MS = 100  # re-render at ~10 Hz while a series streams in


class _Partial(QObject):
    """Brings the partial volume from the loader thread to the GUI thread."""

    arrived = Signal(object)


class SliceViewport(QWidget):
    """One 2D view.  ``activated`` fires on any click (the main window tracks the active viewport)."""

    activated = Signal(object)
    status = Signal(str)  # text for the main window's status bar
    slice_changed = Signal()
    volume_changed = Signal()  # after set_volume (linked views re-align)
    window_changed = Signal()

    def __init__(self, orientation: Orientation = Orientation.AXIAL, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = make_canvas(self)
        self.view = SliceView(self.canvas.renderer)
        self.view.set_orientation(orientation)
        self._overlay_props = _hide_props(self.canvas.renderer)  # no markers or scale bar on an empty view
        self.tools = SliceTools(self.view, self._on_tool_change)
        self.canvas.handler = _Handler(self)
        self.scrollbar = QScrollBar(Qt.Orientation.Vertical, self)
        self.scrollbar.valueChanged.connect(self._on_scrollbar)
        self.progress = QProgressBar(self)
        self.progress.setMaximumHeight(14)
        self.progress.setTextVisible(True)
        self.cancel_button = QToolButton(self)
        self.cancel_button.setText("Cancel")
        self.cancel_button.clicked.connect(self.cancel_loading)
        self._build_layout()
        self._set_loading_visible(False)
        self._task: TaskHandle | None = None
        self._partial = _Partial(self)
        self._partial.arrived.connect(self._on_partial)
        self._refresh = QTimer(self)
        self._refresh.setInterval(_REFRESH_MS)
        self._refresh.timeout.connect(self._refresh_partial)
        self.cine = QTimer(self)
        self.cine_fps = 10
        self.cine.timeout.connect(self._cine_step)
        self.last_cursor: str = ""
        # the window is the volume's own (not set by the user): a volume still loading gets it from its
        # first decoded slice, and the whole volume, once loaded, from all of them
        self._auto_window = True
        self._window_from_slice = False
        self.setFocusProxy(self.canvas)
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)  # the active-view border (QSS)

    def _build_layout(self) -> None:
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.canvas, 1)
        row.addWidget(self.scrollbar)
        bottom = QHBoxLayout()
        bottom.setContentsMargins(2, 0, 2, 0)
        bottom.addWidget(self.progress, 1)
        bottom.addWidget(self.cancel_button)
        col = QVBoxLayout(self)
        col.setContentsMargins(2, 2, 2, 2)
        col.setSpacing(0)
        col.addLayout(row, 1)
        col.addLayout(bottom)

    # -- volume & loading ------------------------------------------------------------------------------
    @property
    def volume(self) -> Volume | None:
        return self.view.volume

    def set_volume(self, volume: Volume, *, keep_view: bool = False) -> None:
        """Show ``volume``; ``keep_view`` keeps position, window and zoom (a refined copy of the same grid),
        except a window the user did not set, which is the new volume's own."""
        state = (self.view.position_mm, self.view.window) if keep_view and self.view.volume is not None else None
        if state is None or self._auto_window:
            self._auto_window, self._window_from_slice = True, False
            state = None if state is None else (state[0], volume.auto_window())
        self.tools.clear()
        for prop in self._overlay_props:
            prop.VisibilityOn()
        self._overlay_props = []
        orientation = self.view.orientation
        self.view.set_volume(volume)
        self.view.set_orientation(orientation)
        self.view.set_position_mm(volume.middle_voxel_lps() if state is None else state[0])
        if state is not None:
            self.view.set_window(state[1])
        self.view.fit()
        self.refresh()
        emit(self.volume_changed)

    def loader_callback(self):
        """What to pass as the loader's ``into``: thread-safe, shows the first slice as soon as it exists."""
        return emitter(self._partial.arrived)

    def watch_loading(self, handle: TaskHandle) -> None:
        """Show progress and a cancel button for ``handle``; show the volume when it is done."""
        self.cancel_loading()
        self._task = handle
        self._set_loading_visible(True)
        self.progress.setRange(0, 0)
        handle.progress.connect(self._on_progress)
        handle.finished.connect(self._on_loaded)
        handle.done.connect(self._on_load_done)
        handle.failed.connect(lambda msg: emit(self.status, f"Loading failed: {msg}"))
        handle.cancelled.connect(lambda: emit(self.status, "Loading cancelled"))
        self._refresh.start()

    def cancel_loading(self) -> None:
        if self._task is not None and not self._task.is_done:
            self._task.cancel()

    def _on_partial(self, volume: Volume) -> None:
        """A series begins to load: its voxel array is there, not one slice decoded yet.  Without a window
        in the file, the window waits for the first decoded slice (:meth:`_on_progress`): one computed from
        the empty array is width 1, which shows an MR as a black and white mask until the load ends."""
        self.set_volume(volume)
        self._window_from_slice = volume.info.default_window is None

    def _refresh_partial(self) -> None:
        self.view.voxels_changed()
        self.canvas.request_render()

    def _on_progress(self, p: Progress) -> None:
        volume = self.view.volume
        if self._window_from_slice and p.done >= 1 and volume is not None:
            # after the partial volume came, progress counts decoded slices: the first is the middle one
            # (dicom.loading decodes it first)
            self._window_from_slice = False
            if self._auto_window:
                self.view.set_window(volume.slice_window(volume.shape[0] // 2))
                self.refresh()
        if p.total:
            self.progress.setRange(0, p.total)
            self.progress.setValue(p.done)
        self.progress.setFormat(p.text or "%v/%m")
        emit(self.status, p.text)

    def _on_loaded(self, volume: Volume) -> None:
        self.set_volume(volume, keep_view=self.view.volume is not None)
        emit(self.status, f"Loaded {volume.info.series_description or 'series'}: {volume.shape[0]} slices")

    def _on_load_done(self) -> None:
        self._refresh.stop()
        self._set_loading_visible(False)
        self._task = None

    def _set_loading_visible(self, on: bool) -> None:
        self.progress.setVisible(on)
        self.cancel_button.setVisible(on)

    @property
    def loading(self) -> bool:
        return self._task is not None

    # -- commands ----------------------------------------------------------------------------------------
    def _reading_sign(self) -> int:
        """+1 when the view's slice index already runs in reading order, -1 when it must be reversed.

        Reading order, as in PACS viewers: axial head to feet, coronal front to back, sagittal right to
        left; "next image" (wheel down, Down) moves along it and image 1 is its start.
        """
        n = self.view.normal
        axis = int(np.argmax(np.abs(n)))
        reading = (1.0, 1.0, -1.0)[axis]  # +x (to the left), +y (to the back), -z (to the feet)
        return 1 if n[axis] * reading > 0 else -1

    def image_index(self) -> int:
        """0-based position in reading order (what "Im k/N" shows, minus one)."""
        k, count = self.view.slice_index(), self.view.slice_count()
        return k if self._reading_sign() > 0 else count - 1 - k

    def scroll(self, n: int) -> None:
        """Move ``n`` images in reading order (positive = next)."""
        self.view.scroll(int(n) * self._reading_sign())
        self._after_slice_move()

    def scroll_to(self, index: int) -> None:
        """Go to image ``index`` (0-based, reading order)."""
        self.scroll(int(index) - self.image_index())

    def apply_preset(self, name: str) -> None:
        if self.view.volume is None:
            return
        self._auto_window = name is None or name == AUTO
        self.view.set_window(resolve_window(self.view.volume, name))
        emit(self.window_changed)
        self.refresh()

    def set_tool(self, tool: Tool) -> None:
        self.tools.left_tool = tool

    def fit(self) -> None:
        self.view.fit()
        self.refresh()

    def reset(self) -> None:
        if self.view.volume is not None:
            self.view.set_orientation(self.view.orientation)
            self._auto_window = True
            self.view.set_window(self.view.volume.auto_window())
            self.view.fit()
        self.refresh()

    def toggle_cine(self) -> None:
        if self.cine.isActive():
            self.cine.stop()
        elif self.view.volume is not None:
            self.cine.start(int(1000 / max(self.cine_fps, 1)))
        emit(self.status, "Cine " + ("playing" if self.cine.isActive() else "stopped"))

    def _cine_step(self) -> None:
        if self.image_index() >= self.view.slice_count() - 1:
            self.scroll_to(0)
        else:
            self.scroll(1)

    # -- updates ------------------------------------------------------------------------------------------
    def _after_slice_move(self) -> None:
        emit(self.slice_changed)
        self.refresh()

    def _on_tool_change(self, what: str) -> None:
        if what == "window":
            self._auto_window = False
            emit(self.window_changed)
        self.refresh()

    def _on_scrollbar(self, value: int) -> None:
        if self.view.volume is not None and value != self.image_index():
            self.scroll_to(value)

    def refresh(self) -> None:
        """Update scrollbar and corner texts, then ask for a render."""
        v = self.view
        if v.volume is not None:
            self.scrollbar.blockSignals(True)
            self.scrollbar.setRange(0, max(v.slice_count() - 1, 0))
            self.scrollbar.setValue(self.image_index())
            self.scrollbar.blockSignals(False)
            for corner, text in corner_texts(v, self.image_index(), self.last_cursor).items():
                v.set_corner_text(corner, text)
        self.canvas.request_render()

    def render_now(self) -> None:
        self.canvas.render_now()

    def capture(self) -> np.ndarray:
        return self.canvas.capture()

    def show_cursor(self, x: float, y: float) -> None:
        self.last_cursor = cursor_text(self.view, x, y)
        if self.last_cursor:
            emit(self.status, self.last_cursor)
        self.refresh()

    # -- keys -------------------------------------------------------------------------------------------
    def handle_key(self, key: int, mods) -> bool:
        scroll = {Qt.Key.Key_Up: -1, Qt.Key.Key_Down: 1, Qt.Key.Key_PageUp: -10, Qt.Key.Key_PageDown: 10}
        if key in scroll:
            self.scroll(scroll[key])
        elif key == Qt.Key.Key_Home:
            self.scroll_to(0)
        elif key == Qt.Key.Key_End:
            self.scroll_to(self.view.slice_count() - 1)
        elif key in PRESET_KEYS and not mods & Qt.KeyboardModifier.ControlModifier:
            self.apply_preset(PRESET_KEYS[key])
        elif key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self.tools.delete_last()
        elif not self._view_key(key, mods):
            return False
        return True

    def _view_key(self, key: int, mods) -> bool:
        if mods & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier):
            return False
        actions = {Qt.Key.Key_F: self.view.fit, Qt.Key.Key_H: self.view.flip_horizontal,
                   Qt.Key.Key_V: self.view.flip_vertical, Qt.Key.Key_R: self.view.rotate_90,
                   Qt.Key.Key_I: lambda: self.view.set_invert(not self.view.invert)}
        if key == Qt.Key.Key_C:
            self.toggle_cine()
            return True
        if key not in actions or self.view.volume is None:
            return False
        actions[key]()
        self.refresh()
        return True


def _hide_props(renderer) -> list:
    """Hide every visible prop of ``renderer``; returns them, to show again later."""
    props = renderer.GetViewProps()
    hidden = []
    for i in range(props.GetNumberOfItems()):
        prop = props.GetItemAsObject(i)
        if prop.GetVisibility():
            prop.VisibilityOff()
            hidden.append(prop)
    return hidden


class _Handler(CanvasHandler):
    """Canvas input -> viewport actions."""

    def __init__(self, vp: SliceViewport) -> None:
        self.vp = vp

    def on_press(self, button, x, y, mods) -> None:
        emit(self.vp.activated, self.vp)
        tool = {Qt.MouseButton.LeftButton: self.vp.tools.left_tool, Qt.MouseButton.RightButton: Tool.ZOOM,
                Qt.MouseButton.MiddleButton: Tool.PAN}.get(button)
        if tool is not None:
            self.vp.tools.press(self._modified(tool, mods), x, y)

    def _modified(self, tool: Tool, mods) -> Tool:
        """Hook for subclasses (MPR: Ctrl+left rotates)."""
        return tool

    def on_move(self, buttons, x, y, mods) -> None:
        if self.vp.tools.dragging:
            self.vp.tools.move(x, y)
        self.vp.show_cursor(x, y)

    def on_release(self, button, x, y, mods) -> None:
        self.vp.tools.release(x, y)

    def on_wheel(self, steps, x, y, mods) -> None:
        if mods & Qt.KeyboardModifier.ControlModifier:
            self.vp.view.zoom(1.1 ** steps)
            self.vp.refresh()
        else:
            self.vp.scroll(-steps)

    def on_key(self, key, mods, text) -> bool:
        return self.vp.handle_key(key, mods)


__all__ = ["PRESET_KEYS", "SliceViewport", "Tool", "WINDOW_PRESETS"]
