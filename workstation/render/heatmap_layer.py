"""A heatmap overlay on a :class:`~workstation.render.slice_view.SliceView`: a float map 0..1 as colour.

Like the label-map layer it is an image slice in the view's image stack (so it follows plane, oblique, zoom
and pan), but linearly interpolated through a "hot" colour ramp: transparent below ``low``, then dark red
to yellow to white, opacity rising with the value.  An "AI-generated: <model> <version>" badge shows while
it is visible.
"""

from __future__ import annotations

import numpy as np

from workstation.model.heatmap import Heatmap
from workstation.model.volume import Volume, VolumeInfo
from workstation.render import _vtk as vtk
from workstation.render.badges import ai_badge
from workstation.render.bridge import prop_matrix, volume_to_local_vtk

DEFAULT_LOW = 0.1  # values below are not drawn: most of a heatmap is near zero


def heat_lookup_table(low: float = DEFAULT_LOW, entries: int = 256) -> vtk.vtkLookupTable:
    """0..1 -> transparent up to ``low``, then black-red-yellow-white with alpha rising to 1."""
    lut = vtk.vtkLookupTable()
    lut.SetNumberOfTableValues(entries)
    lut.SetTableRange(0.0, 1.0)
    for n in range(entries):
        v = n / (entries - 1)
        if v < low:
            lut.SetTableValue(n, 0.0, 0.0, 0.0, 0.0)
            continue
        t = (v - low) / (1.0 - low)
        r, g, b = min(1.0, 0.4 + 1.8 * t), float(np.clip(2.0 * t - 0.5, 0, 1)), float(np.clip(3.0 * t - 2.0, 0, 1))
        lut.SetTableValue(n, r, g, b, 0.35 + 0.65 * t)
    lut.Build()
    return lut


def heatmap_badge_text(heatmap: Heatmap) -> str:
    return f"AI-generated: {heatmap.model_id} {heatmap.model_version} ({heatmap.label} heatmap)"


class HeatmapLayer:
    """The heat slice and its badge; the owner adds :attr:`slice` to the view's image stack."""

    def __init__(self, renderer: vtk.vtkRenderer, layer_number: int = 2, low: float = DEFAULT_LOW) -> None:
        self.renderer = renderer
        self.heatmap: Heatmap | None = None
        self._visible = True
        self._opacity = 0.6
        self._image = None
        self.mapper = vtk.vtkImageResliceMapper()
        self.mapper.SliceFacesCameraOn()
        self.mapper.SliceAtFocalPointOn()
        self.mapper.SetAutoAdjustImageQuality(False)
        self.property = vtk.vtkImageProperty()
        self.property.SetInterpolationTypeToLinear()
        self.property.SetLookupTable(heat_lookup_table(low))
        self.property.UseLookupTableScalarRangeOn()
        self.property.SetLayerNumber(layer_number)
        self.property.SetOpacity(self._opacity)
        self.slice = vtk.vtkImageSlice()
        self.slice.SetMapper(self.mapper)
        self.slice.SetProperty(self.property)
        self.slice.VisibilityOff()
        self.badge = ai_badge(renderer, row=2)

    def set_heatmap(self, heatmap: Heatmap | None) -> None:
        self.heatmap = heatmap
        if heatmap is None:
            self.mapper.RemoveAllInputs()
            self._image = None
        else:
            grid = Volume(heatmap.values, heatmap.affine, VolumeInfo())
            self._image = volume_to_local_vtk(grid)
            self.mapper.SetInputData(self._image)
            self.slice.SetUserMatrix(prop_matrix(grid))
            self.badge.SetInput(heatmap_badge_text(heatmap))
        self._apply()

    @property
    def opacity(self) -> float:
        return self._opacity

    def set_opacity(self, opacity: float) -> None:
        self._opacity = float(np.clip(opacity, 0.0, 1.0))
        self.property.SetOpacity(self._opacity)

    @property
    def visible(self) -> bool:
        return self._visible and self.heatmap is not None

    def set_visible(self, on: bool) -> None:
        self._visible = bool(on)
        self._apply()

    @property
    def badge_text(self) -> str:
        return (self.badge.GetInput() or "") if self.badge.GetVisibility() else ""

    def _apply(self) -> None:
        self.slice.SetVisibility(self.visible)
        self.badge.SetVisibility(self.visible)

    def remove(self) -> None:
        self.renderer.RemoveViewProp(self.badge)
