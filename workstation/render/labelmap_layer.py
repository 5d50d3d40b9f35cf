"""A label-map overlay on a :class:`~workstation.render.slice_view.SliceView`.

The labels are a second ``vtkImageSlice`` with its own ``vtkImageResliceMapper`` (nearest neighbour) on
the label map's grid, placed by the same prop matrix as the base image.  Both slices sit in one
``vtkImageStack`` (the view puts them there), so the labels are drawn over the image at the same plane
without depth fighting, and they follow the camera -- plane, oblique, zoom, pan -- with no extra code.

Colours come from the segments (label 0 is transparent).  An AI-generated layer carries a badge text
("AI-generated: <model> <version>") shown while the layer is visible: the IHE AI Results profile asks a
display to mark every AI result as such.
"""

from __future__ import annotations

import numpy as np

from workstation.model.labelmap import LabelMap
from workstation.model.volume import Volume, VolumeInfo
from workstation.render import _vtk as vtk
from workstation.render.bridge import prop_matrix, volume_to_local_vtk

DEFAULT_OPACITY = 0.5
BADGE_COLOR = (1.0, 0.65, 0.0)  # orange: stands out on greyscale and on the usual label colours


def ai_badge_text(labelmap: LabelMap) -> str:
    """"AI-generated: <model> <version>" for every AI model behind the segments; "" for hand-drawn maps."""
    models = []
    for s in labelmap.segments:
        a = s.algorithm
        if a is not None and a.family.value == "123110":  # DCM "Artificial Intelligence"
            name = f"{a.name} {a.version}".strip()
            if name not in models:
                models.append(name)
    return "AI-generated: " + ", ".join(models) if models else ""


def label_lookup_table(labelmap: LabelMap) -> vtk.vtkLookupTable:
    """One entry per label value 0..max: segment colours, opaque; 0 and undescribed values transparent."""
    top = max([1] + [s.number for s in labelmap.segments])
    lut = vtk.vtkLookupTable()
    lut.SetNumberOfTableValues(top + 1)
    lut.SetTableRange(0.0, float(top))
    for value in range(top + 1):
        lut.SetTableValue(value, 0.0, 0.0, 0.0, 0.0)
    for s in labelmap.segments:
        r, g, b = (c / 255.0 for c in s.colour)
        lut.SetTableValue(s.number, r, g, b, 1.0)
    lut.Build()
    return lut


class LabelMapLayer:
    """The label slice and its badge.  The owner adds :attr:`slice` to the view's image stack."""

    def __init__(self, renderer: vtk.vtkRenderer, layer_number: int = 1) -> None:
        self.renderer = renderer
        self.labelmap: LabelMap | None = None
        self._opacity = DEFAULT_OPACITY
        self._visible = True
        self._image: vtk.vtkImageData | None = None
        self.mapper = vtk.vtkImageResliceMapper()
        self.mapper.SliceFacesCameraOn()
        self.mapper.SliceAtFocalPointOn()
        self.mapper.SetAutoAdjustImageQuality(False)
        self.property = vtk.vtkImageProperty()
        self.property.SetInterpolationTypeToNearest()
        self.property.UseLookupTableScalarRangeOn()
        self.property.SetLayerNumber(layer_number)
        self.property.SetOpacity(self._opacity)
        self.slice = vtk.vtkImageSlice()
        self.slice.SetMapper(self.mapper)
        self.slice.SetProperty(self.property)
        self.slice.VisibilityOff()
        self.badge = vtk.vtkTextActor()
        self.badge.GetTextProperty().SetFontSize(14)
        self.badge.GetTextProperty().SetBold(True)
        self.badge.GetTextProperty().SetShadow(True)
        self.badge.GetTextProperty().SetColor(*BADGE_COLOR)
        self.badge.GetTextProperty().SetJustificationToCentered()
        self.badge.GetTextProperty().SetVerticalJustificationToTop()
        self.badge.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
        self.badge.SetPosition(0.5, 0.93)  # below the top orientation letter, which sits at 0.99
        self.badge.VisibilityOff()
        renderer.AddViewProp(self.badge)

    # -- content -----------------------------------------------------------------------------------------
    def set_labelmap(self, labelmap: LabelMap | None) -> None:
        """Show ``labelmap`` (None removes it).  A new map rebuilds the image, colours and badge."""
        self.labelmap = labelmap
        if labelmap is None:
            self.mapper.RemoveAllInputs()
            self._image = None
        else:
            grid = Volume(labelmap.labels, labelmap.affine, VolumeInfo())
            self._image = volume_to_local_vtk(grid)
            self.mapper.SetInputData(self._image)
            self.slice.SetUserMatrix(prop_matrix(grid))
            self.property.SetLookupTable(label_lookup_table(labelmap))
            self.badge.SetInput(ai_badge_text(labelmap))
        self._apply_visibility()

    def modified(self) -> None:
        """The label voxels were edited in place: redraw them."""
        if self._image is not None:
            self._image.Modified()

    # -- display -----------------------------------------------------------------------------------------
    @property
    def opacity(self) -> float:
        return self._opacity

    def set_opacity(self, opacity: float) -> None:
        self._opacity = float(np.clip(opacity, 0.0, 1.0))
        self.property.SetOpacity(self._opacity)

    @property
    def visible(self) -> bool:
        """True when a label map is set and the layer is switched on."""
        return self._visible and self.labelmap is not None

    def set_visible(self, on: bool) -> None:
        self._visible = bool(on)
        self._apply_visibility()

    @property
    def badge_text(self) -> str:
        """The AI-generated mark as shown now ("" when hidden or not AI)."""
        return self.badge.GetInput() or "" if self.badge.GetVisibility() else ""

    def _apply_visibility(self) -> None:
        shown = self.visible
        self.slice.SetVisibility(shown)
        self.badge.SetVisibility(shown and bool(self.badge.GetInput()))

    def remove(self) -> None:
        self.renderer.RemoveViewProp(self.badge)
