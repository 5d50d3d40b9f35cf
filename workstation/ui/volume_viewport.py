"""The 3D pane: a VolumeView in a VTK canvas.  Left drag rotates, wheel zooms, right drag zooms.

While the user drags, the view renders in interactive (coarser) quality; a short timer after the last
move restores full quality, so the GUI stays responsive on software OpenGL.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from workstation.model.volume import Volume
from workstation.render.presets import default_volume_preset
from workstation.render.volume_view import VolumeView
from workstation.ui.qt_compat import emit
from workstation.ui.vtk_widget import CanvasHandler, make_canvas

PRESET_LABELS = {"ct-bone": "CT bone", "ct-soft-tissue": "CT soft tissue", "ct-lung": "CT lung",
                 "ct-angio": "CT angio", "mr-default": "MR"}
_SETTLE_MS = 250


class VolumeViewport(QWidget):
    activated = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = make_canvas(self)
        self.view = VolumeView(self.canvas.renderer)
        self.canvas.handler = _Handler(self)
        self.presets = QComboBox()
        for name in self.view.preset_names():
            self.presets.addItem(PRESET_LABELS.get(name, name), name)
        self.presets.currentIndexChanged.connect(self._on_preset)
        self.reset_button = QPushButton("Reset")
        self.reset_button.clicked.connect(self.reset)
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(_SETTLE_MS)
        self._settle.timeout.connect(self._full_quality)
        bar = QHBoxLayout()
        bar.setContentsMargins(2, 0, 2, 0)
        bar.addWidget(self.presets, 1)
        bar.addWidget(self.reset_button)
        col = QVBoxLayout(self)
        col.setContentsMargins(2, 2, 2, 2)
        col.setSpacing(0)
        col.addLayout(bar)
        col.addWidget(self.canvas, 1)
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)  # the active-view border (QSS)

    @property
    def volume(self) -> Volume | None:
        return self.view.volume

    def set_volume(self, volume: Volume) -> None:
        self.view.set_volume(volume)
        name = default_volume_preset(volume)
        self.set_preset(name)
        self.view.reset_camera()
        self.canvas.request_render()

    def set_preset(self, name: str) -> None:
        i = self.presets.findData(name)
        if i >= 0 and i != self.presets.currentIndex():
            self.presets.setCurrentIndex(i)  # -> _on_preset
        elif self.view.volume is not None:
            self.view.set_preset(name)
            self.canvas.request_render()

    def _on_preset(self, index: int) -> None:
        if self.view.volume is not None:
            self.view.set_preset(self.presets.itemData(index))
            self.canvas.request_render()

    def reset(self) -> None:
        self.view.reset_camera()
        self.canvas.request_render()

    def interact(self) -> None:
        """Enter interactive quality until the drag settles."""
        if not self.view.interactive:
            self.view.set_interactive(True)
        self._settle.start()
        self.canvas.request_render()

    def _full_quality(self) -> None:
        self.view.set_interactive(False)
        self.canvas.request_render()

    def capture(self) -> np.ndarray:
        return self.canvas.capture()


class _Handler(CanvasHandler):
    def __init__(self, vp: VolumeViewport) -> None:
        self.vp = vp
        self._last: tuple[float, float] | None = None
        self._button = None

    def on_press(self, button, x, y, mods) -> None:
        emit(self.vp.activated, self.vp)
        self._last, self._button = (x, y), button

    def on_move(self, buttons, x, y, mods) -> None:
        if self._last is None or self.vp.view.volume is None:
            return
        dx, dy = x - self._last[0], y - self._last[1]
        self._last = (x, y)
        if self._button == Qt.MouseButton.LeftButton:
            self.vp.view.rotate(-dx * 0.5, -dy * 0.5)
        elif self._button == Qt.MouseButton.RightButton:
            self.vp.view.zoom(1.01 ** dy)
        self.vp.interact()

    def on_release(self, button, x, y, mods) -> None:
        self._last = None

    def on_wheel(self, steps, x, y, mods) -> None:
        if self.vp.view.volume is not None:
            self.vp.view.zoom(1.1 ** steps)
            self.vp.interact()

    def on_key(self, key, mods, text) -> bool:
        if key == Qt.Key.Key_F and self.vp.view.volume is not None:
            self.vp.reset()
            return True
        return False
