"""AI label maps in the 3D view: one surface per label (vtkDiscreteFlyingEdges3D), in the segment colours.

The surfaces are extracted on the label map's own grid (placed by the same prop matrix as the volume, so
they sit exactly in the rendered anatomy) and coloured through the label lookup table of the 2D layer.
"""

from __future__ import annotations

from workstation.model.labelmap import LabelMap
from workstation.render import _vtk as vtk
from workstation.render._layer import ContourSurface, grid_image
from workstation.render.labelmap_layer import label_lookup_table


class LabelSurfaces(ContourSurface):
    """The surfaces of one label map in a renderer; :attr:`labels_shown` lists the label values drawn."""

    def __init__(self, renderer: vtk.vtkRenderer) -> None:
        from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D

        extract = vtkDiscreteFlyingEdges3D()
        extract.ComputeScalarsOn()
        extract.ComputeNormalsOn()
        extract.ComputeGradientsOff()
        super().__init__(renderer, extract)
        self.labelmap: LabelMap | None = None
        self.mapper.ScalarVisibilityOn()
        self.mapper.SetScalarModeToUsePointData()
        self.mapper.SetColorModeToMapScalars()
        self.mapper.UseLookupTableScalarRangeOn()
        self.labels_shown: tuple[int, ...] = ()

    def set_labelmap(self, labelmap: LabelMap | None) -> None:
        self.labelmap = labelmap
        if labelmap is None:
            self.extract.RemoveAllInputs()
            self.labels_shown = ()
        else:
            self._image, matrix = grid_image(labelmap.labels, labelmap.affine)
            present = [number for number, count in labelmap.counts().items() if count]
            self.extract.SetInputData(self._image)
            self.extract.SetNumberOfContours(len(present))
            for n, value in enumerate(present):
                self.extract.SetValue(n, float(value))
            self.mapper.SetLookupTable(label_lookup_table(labelmap))
            self.actor.SetUserMatrix(matrix)
            self.labels_shown = tuple(present)
        self._apply()

    def _has_content(self) -> bool:
        return bool(self.labels_shown)
