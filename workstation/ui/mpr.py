"""MPR 1+3: axial, coronal and sagittal views linked by an :class:`MprController`, plus a 3D pane.

Left click/drag in any plane moves the shared point (the other planes follow); Ctrl+left drag rotates
the other two planes about this plane's normal (oblique MPR).  A slab thickness and mode apply to all
three planes.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QGridLayout, QHBoxLayout, QLabel, QPushButton,
                               QVBoxLayout, QWidget)

from workstation.model.volume import Volume
from workstation.render.mpr import MprController
from workstation.render.slice_view import Orientation, SlabMode
from workstation.ui.qt_compat import emit
from workstation.ui.tools import Tool
from workstation.ui.viewport import SliceViewport, _Handler
from workstation.ui.volume_viewport import VolumeViewport

SLAB_MODES = (("Thin", SlabMode.NONE), ("MIP", SlabMode.MIP), ("MinIP", SlabMode.MINIP), ("Average", SlabMode.MEAN))


class _MprHandler(_Handler):
    """Ctrl+left drag rotates the oblique planes about this view's normal."""

    def __init__(self, vp: SliceViewport, panel: MprPanel) -> None:
        super().__init__(vp)
        self.panel = panel
        self._rotating: tuple[float, float] | None = None

    def on_press(self, button, x, y, mods) -> None:
        if button == Qt.MouseButton.LeftButton and (mods & Qt.KeyboardModifier.ControlModifier
                                                     or self.panel.rotate_mode):
            emit(self.vp.activated, self.vp)
            self._rotating = (x, y)
            return
        super().on_press(button, x, y, mods)

    def on_move(self, buttons, x, y, mods) -> None:
        if self._rotating is not None:
            self.panel.rotate_drag(self.vp, self._rotating, (x, y))
            self._rotating = (x, y)
            return
        super().on_move(buttons, x, y, mods)

    def on_release(self, button, x, y, mods) -> None:
        if self._rotating is not None:
            self._rotating = None
            return
        super().on_release(button, x, y, mods)


class MprPanel(QWidget):
    activated = Signal(object)
    status = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.axial = SliceViewport(Orientation.AXIAL)
        self.coronal = SliceViewport(Orientation.CORONAL)
        self.sagittal = SliceViewport(Orientation.SAGITTAL)
        self.volume_pane = VolumeViewport()
        self.controller = MprController(self.axial.view, self.coronal.view, self.sagittal.view)
        self.rotate_mode = False
        for vp in self.slice_viewports():
            vp.canvas.handler = _MprHandler(vp, self)
            vp.tools.left_tool = Tool.CROSSHAIR
            vp.tools.on_point = self.set_point
            vp.slice_changed.connect(lambda v=vp: self._on_scrolled(v))
            vp.activated.connect(self.activated)
            vp.status.connect(self.status)
        self.volume_pane.activated.connect(self.activated)
        self._build()

    def _build(self) -> None:
        self.slab_thickness = QDoubleSpinBox()
        self.slab_thickness.setRange(0.0, 100.0)
        self.slab_thickness.setSuffix(" mm")
        self.slab_thickness.setValue(10.0)
        self.slab_mode = QComboBox()
        for label, mode in SLAB_MODES:
            self.slab_mode.addItem(label, mode)
        self.slab_thickness.valueChanged.connect(self._apply_slab)
        self.slab_mode.currentIndexChanged.connect(self._apply_slab)
        self.reset_button = QPushButton("Reset MPR")
        self.reset_button.clicked.connect(self.reset)
        bar = QHBoxLayout()
        for w in (QLabel("Slab"), self.slab_thickness, self.slab_mode, self.reset_button):
            bar.addWidget(w)
        bar.addStretch(1)
        grid = QGridLayout()
        grid.setSpacing(2)
        grid.addWidget(self.axial, 0, 0)
        grid.addWidget(self.coronal, 0, 1)
        grid.addWidget(self.sagittal, 1, 0)
        grid.addWidget(self.volume_pane, 1, 1)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.addLayout(bar)
        col.addLayout(grid, 1)

    def slice_viewports(self) -> list[SliceViewport]:
        return [self.axial, self.coronal, self.sagittal]

    @property
    def volume(self) -> Volume | None:
        return self.axial.volume

    def set_volume(self, volume: Volume, *, with_3d: bool = True) -> None:
        for vp in self.slice_viewports():
            vp.set_volume(volume)
        self.controller.set_volume(volume)
        for vp in self.slice_viewports():
            vp.view.fit()
        self._apply_slab()
        if with_3d:
            self.volume_pane.set_volume(volume)
        self._refresh_all()

    def set_point(self, xyz: np.ndarray) -> None:
        """Move the shared point; every plane passes through it."""
        self.controller.set_point(xyz)
        self._refresh_all()

    def _on_scrolled(self, vp: SliceViewport) -> None:
        """Scrolling one plane moves the shared point along its normal."""
        p = self.controller.point
        n = vp.view.normal
        moved = p + ((vp.view.position_mm - p) @ n) * n
        if not np.allclose(moved, p):
            self.set_point(moved)

    def rotate_drag(self, vp: SliceViewport, a: tuple[float, float], b: tuple[float, float]) -> None:
        """Rotate by the angle the drag sweeps around the crosshair centre (on screen)."""
        cx, cy = vp.view.lps_to_display(self.controller.point)
        ang = np.degrees(np.arctan2(b[1] - cy, b[0] - cx) - np.arctan2(a[1] - cy, a[0] - cx))
        ang = (ang + 180.0) % 360.0 - 180.0
        if abs(ang) > 1e-3:
            self.controller.rotate(vp.view.orientation, float(ang))
            self._refresh_all()

    def reset(self) -> None:
        if self.volume is None:
            return
        self.controller.reset_rotation()
        self.controller.set_point(self.volume.middle_voxel_lps())
        for vp in self.slice_viewports():
            vp.view.fit()
        self._refresh_all()

    def _apply_slab(self) -> None:
        mode = self.slab_mode.currentData()
        for vp in self.slice_viewports():
            vp.view.set_slab(self.slab_thickness.value(), mode)
        self._refresh_all()

    def _refresh_all(self) -> None:
        for vp in self.slice_viewports():
            vp.refresh()
