"""A heatmap overlay on a :class:`~workstation.render.slice_view.SliceView`: a float map 0..1 as colour.

Like the label-map layer it is an image slice in the view's image stack (so it follows plane, oblique, zoom
and pan), but linearly interpolated through a "hot" colour ramp: transparent below ``low``, then dark red
to yellow to white, opacity rising with the value.  An "AI-generated: <model> <version>" badge shows while
it is visible.
"""

from __future__ import annotations

import numpy as np

from workstation.model.heatmap import Heatmap
from workstation.render import _vtk as vtk
from workstation.render._layer import SliceOverlay, grid_image

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


class HeatmapLayer(SliceOverlay):
    """The heat slice and its badge; the owner adds :attr:`slice` to the view's image stack."""

    def __init__(self, renderer: vtk.vtkRenderer, layer_number: int = 2, low: float = DEFAULT_LOW) -> None:
        super().__init__(renderer, layer_number, opacity=0.6, badge_row=2, linear=True)
        self.heatmap: Heatmap | None = None
        self._image = None
        self.property.SetLookupTable(heat_lookup_table(low))

    def set_heatmap(self, heatmap: Heatmap | None) -> None:
        self.heatmap = heatmap
        if heatmap is None:
            self.mapper.RemoveAllInputs()
            self._image = None
        else:
            self._image, matrix = grid_image(heatmap.values, heatmap.affine)
            self.mapper.SetInputData(self._image)
            self.slice.SetUserMatrix(matrix)
            self.badge.SetInput(heatmap_badge_text(heatmap))
        self._apply_visibility()

    def _has_content(self) -> bool:
        return self.heatmap is not None
