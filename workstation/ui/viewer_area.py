"""The central viewer area: 1x1, 1x2 and 2x2 grids of slice viewports, or the MPR 1+3 panel.

:meth:`ViewerArea.side_by_side` readies a comparison: 1x2, the current volume on the left, the right
viewport returned for a prior, the two linked by :attr:`ViewerArea.scroll_sync` (unlinked again when the
layout drops the right viewport).
"""

from __future__ import annotations

import enum

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGridLayout, QStackedWidget, QWidget

from workstation.ui.mpr import MprPanel
from workstation.ui.qt_compat import emit
from workstation.ui.sync_scroll import ScrollSync
from workstation.ui.viewport import SliceViewport


class Layout(enum.Enum):
    ONE = "1x1"
    ONE_BY_TWO = "1x2"
    TWO_BY_TWO = "2x2"
    MPR = "MPR 1+3"

    @property
    def cells(self) -> list[tuple[int, int]]:
        return {Layout.ONE: [(0, 0)], Layout.ONE_BY_TWO: [(0, 0), (0, 1)],
                Layout.TWO_BY_TWO: [(0, 0), (0, 1), (1, 0), (1, 1)], Layout.MPR: []}[self]


class ViewerArea(QStackedWidget):
    """Owns the viewports; tracks which one is active (the last one clicked)."""

    active_changed = Signal(object)
    status = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.grid_page = QWidget()
        self.grid = QGridLayout(self.grid_page)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(2)
        self.viewports = [SliceViewport() for _ in range(4)]
        for vp in self.viewports:
            vp.activated.connect(self.set_active)
            vp.status.connect(self.status)
        self.mpr = MprPanel()
        self.mpr.activated.connect(self.set_active)
        self.mpr.status.connect(self.status)
        self.addWidget(self.grid_page)
        self.addWidget(self.mpr)
        self.layout_kind = Layout.ONE
        self.active = self.viewports[0]
        self.scroll_sync = ScrollSync()
        self.set_layout(Layout.ONE)

    def set_layout(self, layout: Layout) -> None:
        self.layout_kind = Layout(layout)
        if self.layout_kind in (Layout.ONE, Layout.MPR):
            self.scroll_sync.unlink()  # the right viewport is hidden: nothing to keep in step
        if self.layout_kind is Layout.MPR:
            self.setCurrentWidget(self.mpr)
            self.set_active(self.mpr.axial)
            return
        for vp in self.viewports:
            self.grid.removeWidget(vp)
            vp.hide()
        for vp, (r, c) in zip(self.viewports, self.layout_kind.cells):
            self.grid.addWidget(vp, r, c)
            vp.show()
        self.setCurrentWidget(self.grid_page)
        if self.active not in self.visible_viewports():
            self.set_active(self.viewports[0])

    def visible_viewports(self) -> list:
        if self.layout_kind is Layout.MPR:
            return [*self.mpr.slice_viewports(), self.mpr.volume_pane]
        return self.viewports[: len(self.layout_kind.cells)]

    def set_active(self, vp) -> None:
        if vp is self.active:
            return
        self.active = vp
        for other in [*self.viewports, *self.mpr.slice_viewports(), self.mpr.volume_pane]:
            other.setProperty("active", "true" if other is vp else "false")
            other.style().unpolish(other)
            other.style().polish(other)
        emit(self.active_changed, vp)

    def active_slice_viewport(self) -> SliceViewport | None:
        return self.active if isinstance(self.active, SliceViewport) else None

    def side_by_side(self) -> SliceViewport:
        """Switch to 1x2 with the active volume on the left, link scrolling, return the right viewport."""
        current = self.active_slice_viewport()
        left, right = self.viewports[:2]
        self.set_layout(Layout.ONE_BY_TWO)
        if current is not None and current is not left and current.volume is not None:
            left.set_volume(current.volume)
        self.set_active(left)
        self.scroll_sync.link(left, right)
        return right
