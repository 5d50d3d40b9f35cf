"""What the AI overlays share.

In 2D (label map, heatmap): an image slice in the view's image stack with an AI badge, an opacity, and an
on/off switch that shows slice and badge only while there is something to show.  In 3D (label surfaces,
heatmap iso-surface): a contour filter on the overlay's own grid feeding one actor, with the same switch.
"""

from __future__ import annotations

import numpy as np

from workstation.model.volume import Volume, VolumeInfo
from workstation.render import _vtk as vtk
from workstation.render.badges import ai_badge, shown_text
from workstation.render.bridge import prop_matrix, volume_to_local_vtk


def grid_image(values: np.ndarray, affine: np.ndarray) -> tuple[vtk.vtkImageData, vtk.vtkMatrix4x4]:
    """``values`` on the grid ``affine`` as VTK image data in grid-local mm, and the prop matrix placing it."""
    grid = Volume(values, affine, VolumeInfo())
    return volume_to_local_vtk(grid), prop_matrix(grid)


class SliceOverlay:
    """The overlay slice (:attr:`slice`, which the owner adds to the view's image stack) and its badge.

    A subclass says whether it has content (:meth:`_has_content`) and calls :meth:`_apply_visibility` when
    that changes.
    """

    def __init__(self, renderer: vtk.vtkRenderer, layer_number: int, opacity: float, badge_row: int,
                 linear: bool) -> None:
        self.renderer = renderer
        self._opacity = opacity
        self._visible = True
        self.mapper = vtk.vtkImageResliceMapper()
        self.mapper.SliceFacesCameraOn()
        self.mapper.SliceAtFocalPointOn()
        self.mapper.SetAutoAdjustImageQuality(False)
        self.property = vtk.vtkImageProperty()
        if linear:
            self.property.SetInterpolationTypeToLinear()
        else:
            self.property.SetInterpolationTypeToNearest()
        self.property.UseLookupTableScalarRangeOn()
        self.property.SetLayerNumber(layer_number)
        self.property.SetOpacity(self._opacity)
        self.slice = vtk.vtkImageSlice()
        self.slice.SetMapper(self.mapper)
        self.slice.SetProperty(self.property)
        self.slice.VisibilityOff()
        self.badge = ai_badge(renderer, row=badge_row)

    def _has_content(self) -> bool:
        raise NotImplementedError

    @property
    def opacity(self) -> float:
        return self._opacity

    def set_opacity(self, opacity: float) -> None:
        self._opacity = float(np.clip(opacity, 0.0, 1.0))
        self.property.SetOpacity(self._opacity)

    @property
    def visible(self) -> bool:
        """True when the layer has content and is switched on."""
        return self._visible and self._has_content()

    def set_visible(self, on: bool) -> None:
        self._visible = bool(on)
        self._apply_visibility()

    @property
    def badge_text(self) -> str:
        """The AI-generated mark as shown now ("" when hidden or not AI)."""
        return shown_text(self.badge)

    def _apply_visibility(self) -> None:
        shown = self.visible
        self.slice.SetVisibility(shown)
        self.badge.SetVisibility(shown and bool(self.badge.GetInput()))

    def remove(self) -> None:
        self.renderer.RemoveViewProp(self.badge)


class ContourSurface:
    """One actor drawing the output of the contour filter ``extract`` (hidden until there is content).

    A subclass configures :attr:`mapper`, says whether it has content (:meth:`_has_content`) and calls
    :meth:`_apply` when that changes.
    """

    def __init__(self, renderer: vtk.vtkRenderer, extract) -> None:
        from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

        self.renderer = renderer
        self._visible = True
        self.extract = extract
        self.mapper = vtkPolyDataMapper()
        self.mapper.SetInputConnection(extract.GetOutputPort())
        self.actor = vtkActor()
        self.actor.SetMapper(self.mapper)
        self.actor.VisibilityOff()
        renderer.AddActor(self.actor)

    def _has_content(self) -> bool:
        raise NotImplementedError

    @property
    def visible(self) -> bool:
        return self._visible and self._has_content()

    def set_visible(self, on: bool) -> None:
        self._visible = bool(on)
        self._apply()

    def _apply(self) -> None:
        self.actor.SetVisibility(self.visible)

    def polydata(self) -> vtk.vtkPolyData:
        """The surface in overlay-grid mm (before the prop matrix), up to date."""
        self.extract.Update()
        return self.extract.GetOutput()

    def remove(self) -> None:
        self.renderer.RemoveActor(self.actor)
