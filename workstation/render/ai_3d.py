"""AI results in the 3D view besides label surfaces: detection boxes and points, and a heatmap iso-surface.

Boxes are wireframes of their axis-aligned LPS extent (the 12 edges) and points small spheres, each in its
finding's colour, unlit so the colour reads the same from every side.  A heatmap is shown as the surface
where its value crosses the model's threshold (``output.threshold`` of the manifest), semi-transparent in the
heatmap's colour, so the anatomy and any boxes inside stay visible.  Everything is given in LPS mm: the
world coordinates of the volume view, so no prop matrix is needed for boxes; the heatmap's surface is
extracted on its own grid and placed by the same prop matrix as the volume.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workstation.model.finding import FindingKind
from workstation.model.heatmap import Heatmap
from workstation.render import _vtk as vtk
from workstation.render._layer import ContourSurface, grid_image
from workstation.render.detections_layer import _EDGES, Drawn

#: Radius of the sphere drawn for a point finding (mm).
POINT_RADIUS_MM = 3.0
HEATMAP_OPACITY = 0.4


def box_corners(lo, hi) -> np.ndarray:
    """The 8 corners of the box [lo, hi] (LPS mm), corner c taking hi on axis a where bit (2 - a) of c is set."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return np.array([[(hi if c >> 2 & 1 else lo)[0], (hi if c >> 1 & 1 else lo)[1], (hi if c & 1 else lo)[2]]
                     for c in range(8)])


def _rgb(colour: tuple[float, float, float]) -> tuple[int, int, int]:
    return tuple(int(round(255 * float(np.clip(c, 0.0, 1.0)))) for c in colour)


class Detections3D:
    """Wireframe boxes and point spheres of AI findings in a 3D renderer; :meth:`set_items` replaces them."""

    def __init__(self, renderer: vtk.vtkRenderer) -> None:
        from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

        self.renderer = renderer
        self.items: list[Drawn] = []
        self._visible = True
        self.boxes = vtk.vtkPolyData()
        self.spheres = vtk.vtkPolyData()
        self.actors = []
        for data, width in ((self.boxes, 2.5), (self.spheres, 1.0)):
            mapper = vtkPolyDataMapper()
            mapper.SetInputData(data)
            mapper.ScalarVisibilityOn()
            mapper.SetScalarModeToUseCellData()
            mapper.SetColorModeToDirectScalars()
            actor = vtkActor()
            actor.SetMapper(mapper)
            actor.GetProperty().SetLineWidth(width)
            actor.GetProperty().LightingOff()  # the finding's colour as it is, from every side
            actor.VisibilityOff()
            renderer.AddActor(actor)
            self.actors.append(actor)

    def set_items(self, items: Sequence[Drawn]) -> None:
        """Draw ``items`` (boxes and points; other kinds are skipped)."""
        self.items = [d for d in items if d.finding.kind in (FindingKind.BOX, FindingKind.POINT)]
        self._build_boxes([d for d in self.items if d.finding.kind is FindingKind.BOX])
        self._build_spheres([d for d in self.items if d.finding.kind is FindingKind.POINT])
        self._apply()

    def _build_boxes(self, boxes: list[Drawn]) -> None:
        points, lines, colours = vtk.vtkPoints(), vtk.vtkCellArray(), vtk.vtkUnsignedCharArray()
        colours.SetNumberOfComponents(3)
        colours.SetName("colour")
        for n, d in enumerate(boxes):
            for corner in box_corners(d.finding.bbox_min_mm, d.finding.bbox_max_mm):
                points.InsertNextPoint(*corner)
            rgb = _rgb(d.colour)
            for a, b in _EDGES:
                lines.InsertNextCell(2)
                lines.InsertCellPoint(8 * n + a)
                lines.InsertCellPoint(8 * n + b)
                colours.InsertNextTuple3(*rgb)
        self.boxes.Initialize()
        self.boxes.SetPoints(points)
        self.boxes.SetLines(lines)
        self.boxes.GetCellData().SetScalars(colours)
        self.boxes.Modified()

    def _build_spheres(self, marks: list[Drawn]) -> None:
        from vtkmodules.vtkFiltersCore import vtkAppendPolyData
        from vtkmodules.vtkFiltersSources import vtkSphereSource

        self.spheres.Initialize()
        if not marks:
            return
        append = vtkAppendPolyData()
        for d in marks:
            sphere = vtkSphereSource()
            sphere.SetCenter(*(float(v) for v in d.finding.centroid_mm))
            sphere.SetRadius(POINT_RADIUS_MM)
            sphere.SetThetaResolution(16)
            sphere.SetPhiResolution(12)
            sphere.Update()
            piece = vtk.vtkPolyData()
            piece.ShallowCopy(sphere.GetOutput())
            piece.GetPointData().Initialize()  # only points and polygons: the pieces must carry the same arrays
            colours = vtk.vtkUnsignedCharArray()
            colours.SetNumberOfComponents(3)
            colours.SetName("colour")
            rgb = _rgb(d.colour)
            for _ in range(piece.GetNumberOfCells()):
                colours.InsertNextTuple3(*rgb)
            piece.GetCellData().SetScalars(colours)
            append.AddInputData(piece)
        append.Update()
        self.spheres.ShallowCopy(append.GetOutput())

    @property
    def visible(self) -> bool:
        return self._visible and bool(self.items)

    def set_visible(self, on: bool) -> None:
        self._visible = bool(on)
        self._apply()

    def _apply(self) -> None:
        self.actors[0].SetVisibility(self._visible and self.boxes.GetNumberOfCells() > 0)
        self.actors[1].SetVisibility(self._visible and self.spheres.GetNumberOfCells() > 0)

    def remove(self) -> None:
        for actor in self.actors:
            self.renderer.RemoveActor(actor)


class HeatmapSurface3D(ContourSurface):
    """The surface where a heatmap crosses a threshold, semi-transparent in the heatmap's colour."""

    def __init__(self, renderer: vtk.vtkRenderer) -> None:
        from vtkmodules.vtkFiltersCore import vtkFlyingEdges3D

        extract = vtkFlyingEdges3D()
        extract.ComputeNormalsOn()
        extract.ComputeScalarsOff()
        super().__init__(renderer, extract)
        self.heatmap: Heatmap | None = None
        self.threshold = 0.5
        self.mapper.ScalarVisibilityOff()
        self.actor.GetProperty().SetOpacity(HEATMAP_OPACITY)

    def set_heatmap(self, heatmap: Heatmap | None, threshold: float = 0.5) -> None:
        """Show ``heatmap``'s iso-surface at ``threshold`` (0..1); None removes it."""
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"heatmap threshold must be within 0..1, got {threshold}")
        self.heatmap, self.threshold = heatmap, float(threshold)
        if heatmap is None:
            self.extract.RemoveAllInputs()
        else:
            self._image, matrix = grid_image(heatmap.values, heatmap.affine)
            self.extract.SetInputData(self._image)
            self.extract.SetValue(0, self.threshold)
            self.actor.SetUserMatrix(matrix)
            self.actor.GetProperty().SetColor(*(c / 255.0 for c in heatmap.colour))
        self._apply()

    def _has_content(self) -> bool:
        return self.heatmap is not None
