"""2D overlays drawn on top of a slice view: world-anchored lines and labels, orientation letters, scale bar.

Everything here is a ``vtkActor2D`` (or text actor) so overlays are never hidden behind the image slice
nor cut by the camera's clipping planes, whatever the slab or oblique angle.
"""

from __future__ import annotations

import numpy as np
from workstation.render import _vtk as vtk

#: Letter for the positive direction of each LPS axis, and for the negative one.
_POS_LETTERS = ("L", "P", "H")
_NEG_LETTERS = ("R", "A", "F")

#: Colour of the line a plane leaves on another view, by the plane's dominant normal axis (x, y, z).
PLANE_COLORS = ((0.95, 0.85, 0.2), (0.3, 0.85, 0.3), (0.95, 0.3, 0.3))

SCALE_BAR_STEPS_MM = (1.0, 5.0, 10.0, 50.0, 100.0)


def orientation_letters(direction: np.ndarray, minor: float = 0.3) -> str:
    """Patient-direction letters for an LPS vector, strongest first (e.g. "L", "AH" for an oblique)."""
    v = np.asarray(direction, float)
    v = v / (np.linalg.norm(v) or 1.0)
    order = np.argsort(-np.abs(v))
    letters = []
    for axis in order:
        c = v[axis]
        if axis != order[0] and abs(c) < minor:
            break
        letters.append(_POS_LETTERS[axis] if c > 0 else _NEG_LETTERS[axis])
    return "".join(letters)


def _text_actor(size: int = 14, color=(1.0, 1.0, 1.0)) -> vtk.vtkTextActor:
    actor = vtk.vtkTextActor()
    prop = actor.GetTextProperty()
    prop.SetFontSize(size)
    prop.SetColor(*color)
    prop.SetBold(True)
    prop.SetShadow(True)
    return actor


class WorldLines:
    """Line segments and polylines given in LPS mm, projected by the renderer's camera, drawn on top."""

    def __init__(self, renderer: vtk.vtkRenderer, color=(1.0, 1.0, 0.0), width: float = 1.5) -> None:
        self.polydata = vtk.vtkPolyData()
        coord = vtk.vtkCoordinate()
        coord.SetCoordinateSystemToWorld()
        mapper = vtk.vtkPolyDataMapper2D()
        mapper.SetInputData(self.polydata)
        mapper.SetTransformCoordinate(coord)
        mapper.SetTransformCoordinateUseDouble(True)
        mapper.ScalarVisibilityOn()
        self.actor = vtk.vtkActor2D()
        self.actor.SetMapper(mapper)
        self.actor.GetProperty().SetLineWidth(width)
        self.actor.GetProperty().SetColor(*color)
        renderer.AddViewProp(self.actor)
        self.set_polylines([])

    def set_polylines(self, polylines: list[np.ndarray], colors: list[tuple[float, float, float]] | None = None) -> None:
        """Replace the drawing with ``polylines`` (each an (n, 3) array in mm), optionally one colour each."""
        points = vtk.vtkPoints()
        points.SetDataTypeToDouble()
        cells = vtk.vtkCellArray()
        rgb = vtk.vtkUnsignedCharArray()
        rgb.SetNumberOfComponents(3)
        for n, line in enumerate(polylines):
            line = np.asarray(line, float)
            ids = [points.InsertNextPoint(*p) for p in line]
            cells.InsertNextCell(len(ids), ids)
            c = colors[n] if colors else self.actor.GetProperty().GetColor()
            rgb.InsertNextTuple3(*(int(255 * x) for x in c))
        self.polydata.SetPoints(points)
        self.polydata.SetLines(cells)
        self.polydata.GetCellData().SetScalars(rgb if colors else None)
        self.polydata.Modified()

    def remove(self, renderer: vtk.vtkRenderer) -> None:
        renderer.RemoveViewProp(self.actor)


class WorldLabel:
    """A text label anchored at an LPS point."""

    def __init__(self, renderer: vtk.vtkRenderer, text: str, anchor: np.ndarray, color=(1.0, 1.0, 0.0)) -> None:
        self.actor = _text_actor(13, color)
        self.actor.SetInput(text)
        pos = self.actor.GetPositionCoordinate()
        pos.SetCoordinateSystemToWorld()
        pos.SetValue(*np.asarray(anchor, float))
        renderer.AddViewProp(self.actor)

    def remove(self, renderer: vtk.vtkRenderer) -> None:
        renderer.RemoveViewProp(self.actor)


class OrientationMarkers:
    """Letters at the middle of the four viewport edges saying which patient direction lies there."""

    EDGES = ("left", "right", "top", "bottom")

    def __init__(self, renderer: vtk.vtkRenderer) -> None:
        self.actors: dict[str, vtk.vtkTextActor] = {}
        places = {"left": (0.01, 0.5), "right": (0.99, 0.5), "top": (0.5, 0.99), "bottom": (0.5, 0.01)}
        for edge, (x, y) in places.items():
            a = _text_actor(16, (1.0, 0.85, 0.4))
            a.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
            a.SetPosition(x, y)
            tp = a.GetTextProperty()
            tp.SetJustification({"left": 0, "right": 2}.get(edge, 1))
            tp.SetVerticalJustification({"top": 2, "bottom": 0}.get(edge, 1))
            renderer.AddViewProp(a)
            self.actors[edge] = a
        self.labels = dict.fromkeys(self.EDGES, "")

    def set_visible(self, visible: bool) -> None:
        for a in self.actors.values():
            a.SetVisibility(int(visible))

    def update(self, screen_right: np.ndarray, screen_up: np.ndarray) -> None:
        dirs = {"left": -screen_right, "right": screen_right, "top": screen_up, "bottom": -screen_up}
        for edge, v in dirs.items():
            self.labels[edge] = orientation_letters(v)
            self.actors[edge].SetInput(self.labels[edge])


class ScaleBar:
    """A 1/5/10/50/100 mm bar at the bottom right, the longest that fits a quarter of the viewport width."""

    def __init__(self, renderer: vtk.vtkRenderer) -> None:
        self.polydata = vtk.vtkPolyData()
        mapper = vtk.vtkPolyDataMapper2D()
        mapper.SetInputData(self.polydata)
        self.actor = vtk.vtkActor2D()
        self.actor.SetMapper(mapper)
        self.actor.GetProperty().SetColor(0.9, 0.9, 0.9)
        self.actor.GetProperty().SetLineWidth(2)
        self.label = _text_actor(12, (0.9, 0.9, 0.9))
        self.label.GetTextProperty().SetJustification(1)
        renderer.AddViewProp(self.actor)
        renderer.AddViewProp(self.label)
        self.length_mm = 0.0

    def set_visible(self, visible: bool) -> None:
        self.actor.SetVisibility(int(visible))
        self.label.SetVisibility(int(visible))

    def update(self, mm_per_pixel: float, viewport_size: tuple[int, int]) -> None:
        w, _h = viewport_size
        if mm_per_pixel <= 0 or w <= 0:
            return
        fitting = [s for s in SCALE_BAR_STEPS_MM if s / mm_per_pixel <= 0.25 * w]
        self.length_mm = fitting[-1] if fitting else SCALE_BAR_STEPS_MM[0]
        px = self.length_mm / mm_per_pixel
        x1, y = w - 24.0, 34.0
        x0 = x1 - px
        pts = vtk.vtkPoints()
        for p in ((x0, y + 5), (x0, y), (x1, y), (x1, y + 5)):
            pts.InsertNextPoint(p[0], p[1], 0.0)
        lines = vtk.vtkCellArray()
        lines.InsertNextCell(4, [0, 1, 2, 3])
        self.polydata.SetPoints(pts)
        self.polydata.SetLines(lines)
        self.polydata.Modified()
        self.label.SetInput(f"{self.length_mm:g} mm")
        self.label.SetPosition((x0 + x1) / 2.0, y - 20.0)
