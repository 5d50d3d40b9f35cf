"""AI label maps in the 3D view: one surface per label (vtkDiscreteFlyingEdges3D), in the segment colours.

The surfaces are extracted on the label map's own grid (placed by the same prop matrix as the volume, so
they sit exactly in the rendered anatomy) and coloured through the label lookup table of the 2D layer.
"""

from __future__ import annotations

from workstation.model.labelmap import LabelMap
from workstation.model.volume import Volume, VolumeInfo
from workstation.render import _vtk as vtk
from workstation.render.bridge import prop_matrix, volume_to_local_vtk
from workstation.render.labelmap_layer import label_lookup_table


class LabelSurfaces:
    """The surfaces of one label map in a renderer; :attr:`labels_shown` lists the label values drawn."""

    def __init__(self, renderer: vtk.vtkRenderer) -> None:
        from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D
        from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

        self.renderer = renderer
        self.labelmap: LabelMap | None = None
        self._visible = True
        self.extract = vtkDiscreteFlyingEdges3D()
        self.extract.ComputeScalarsOn()
        self.extract.ComputeNormalsOn()
        self.extract.ComputeGradientsOff()
        self.mapper = vtkPolyDataMapper()
        self.mapper.SetInputConnection(self.extract.GetOutputPort())
        self.mapper.ScalarVisibilityOn()
        self.mapper.SetScalarModeToUsePointData()
        self.mapper.SetColorModeToMapScalars()
        self.mapper.UseLookupTableScalarRangeOn()
        self.actor = vtkActor()
        self.actor.SetMapper(self.mapper)
        self.actor.VisibilityOff()
        renderer.AddActor(self.actor)
        self.labels_shown: tuple[int, ...] = ()

    def set_labelmap(self, labelmap: LabelMap | None) -> None:
        self.labelmap = labelmap
        if labelmap is None:
            self.extract.RemoveAllInputs()
            self.labels_shown = ()
        else:
            grid = Volume(labelmap.labels, labelmap.affine, VolumeInfo())
            self._image = volume_to_local_vtk(grid)
            present = [number for number, count in labelmap.counts().items() if count]
            self.extract.SetInputData(self._image)
            self.extract.SetNumberOfContours(len(present))
            for n, value in enumerate(present):
                self.extract.SetValue(n, float(value))
            self.mapper.SetLookupTable(label_lookup_table(labelmap))
            self.actor.SetUserMatrix(prop_matrix(grid))
            self.labels_shown = tuple(present)
        self._apply()

    @property
    def visible(self) -> bool:
        return self._visible and bool(self.labels_shown)

    def set_visible(self, on: bool) -> None:
        self._visible = bool(on)
        self._apply()

    def _apply(self) -> None:
        self.actor.SetVisibility(self.visible)

    def polydata(self) -> vtk.vtkPolyData:
        """The surfaces in label-grid mm (before the prop matrix), up to date."""
        self.extract.Update()
        return self.extract.GetOutput()

    def remove(self) -> None:
        self.renderer.RemoveActor(self.actor)
