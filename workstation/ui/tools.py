"""Mouse tools of a 2D viewport: what a drag does, independent of Qt widgets and VTK interactor styles.

A :class:`SliceTools` object receives display-pixel positions (VTK convention: origin bottom-left) and acts
on a :class:`~workstation.render.slice_view.SliceView`.  The left button runs the selected tool; right
drag always zooms and middle drag always pans, as in most PACS viewers.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from workstation.model.volume import Window
from workstation.render.slice_view import MeasurementHandle, SliceView


class Tool(enum.Enum):
    WINDOW = "W/L"
    PAN = "Pan"
    ZOOM = "Zoom"
    LENGTH = "Length"
    ELLIPSE = "Ellipse ROI"
    CROSSHAIR = "Crosshair"  # MPR: click/drag moves the linked point
    ANNOTATE = "Annotate"  # label tools: the drag goes to ``SliceTools.annotator``


@dataclass
class _Drag:
    tool: Tool
    start: tuple[float, float]
    last: tuple[float, float]
    window: Window | None = None
    preview: MeasurementHandle | None = None


def window_after_drag(start: Window, dx: float, dy: float) -> Window:
    """Horizontal drag changes the width, vertical the level; faster for wide windows."""
    step = max(start.width / 400.0, 0.5)
    return Window(center=start.center + dy * step, width=max(start.width + dx * step * 2.0, 1.0))


class SliceTools:
    """Turns drags into window, zoom, pan and measurement edits on one SliceView."""

    def __init__(self, view: SliceView, changed: Callable[[str], None]) -> None:
        self.view = view
        self.left_tool = Tool.WINDOW
        self._changed = changed  # called with what changed: "window", "camera", "measurement", "point"
        self._drag: _Drag | None = None
        self.on_point: Callable[[np.ndarray], None] | None = None  # crosshair tool target
        self.measurements: list[MeasurementHandle] = []
        #: Receives press/move/release (view, x, y) of the ANNOTATE tool (an annotation session), or None.
        self.annotator = None

    @property
    def dragging(self) -> bool:
        return self._drag is not None

    def press(self, tool: Tool, x: float, y: float) -> None:
        if self.view.volume is None:
            return
        self._drag = _Drag(tool, (x, y), (x, y), window=self.view.window)
        if tool is Tool.CROSSHAIR:
            self._move_point(x, y)
        elif tool is Tool.ANNOTATE and self.annotator is not None:
            self.annotator.press(self.view, x, y)

    def move(self, x: float, y: float) -> None:
        d = self._drag
        if d is None:
            return
        dx, dy = x - d.last[0], y - d.last[1]
        d.last = (x, y)
        if d.tool is Tool.WINDOW:
            self.view.set_window(window_after_drag(d.window, x - d.start[0], y - d.start[1]))
            self._changed("window")
        elif d.tool is Tool.ZOOM:
            self.view.zoom(1.01 ** dy)
            self._changed("camera")
        elif d.tool is Tool.PAN:
            self.view.pan(dx, dy)
            self._changed("camera")
        elif d.tool in (Tool.LENGTH, Tool.ELLIPSE):
            if d.preview is not None:
                self.view.remove_measurement(d.preview)
            d.preview = self._measure(d.tool, d.start, (x, y))
            self._changed("measurement")
        elif d.tool is Tool.CROSSHAIR:
            self._move_point(x, y)
        elif d.tool is Tool.ANNOTATE and self.annotator is not None:
            self.annotator.move(self.view, x, y)

    def release(self, x: float, y: float) -> MeasurementHandle | None:
        d, self._drag = self._drag, None
        if d is None:
            return None
        if d.tool is Tool.ANNOTATE and self.annotator is not None:
            self.annotator.release(self.view, x, y)
        if d.tool not in (Tool.LENGTH, Tool.ELLIPSE):
            return None
        if d.preview is not None:
            self.view.remove_measurement(d.preview)
        if abs(x - d.start[0]) + abs(y - d.start[1]) < 3:  # a click, not a drag: nothing to measure
            self._changed("measurement")
            return None
        handle = self._measure(d.tool, d.start, (x, y))
        self.measurements.append(handle)
        self._changed("measurement")
        return handle

    def _measure(self, tool: Tool, a: tuple[float, float], b: tuple[float, float]) -> MeasurementHandle:
        v = self.view
        if tool is Tool.LENGTH:
            return v.add_line(v.display_to_lps(*a), v.display_to_lps(*b))
        mm = v.mm_per_pixel()
        center = v.display_to_lps((a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0)
        ra = max(abs(b[0] - a[0]) * mm / 2.0, mm / 2.0)
        rb = max(abs(b[1] - a[1]) * mm / 2.0, mm / 2.0)
        return v.add_ellipse(center, ra, rb)

    def _move_point(self, x: float, y: float) -> None:
        if self.on_point is not None:
            self.on_point(self.view.display_to_lps(x, y))
            self._changed("point")

    def delete_last(self) -> bool:
        """Remove the most recent measurement; False when there is none."""
        if not self.measurements:
            return False
        self.view.remove_measurement(self.measurements.pop())
        self._changed("measurement")
        return True

    def clear(self) -> None:
        while self.measurements:
            self.view.remove_measurement(self.measurements.pop())
