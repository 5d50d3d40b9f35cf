"""Linked three-plane MPR: axial, coronal and sagittal SliceViews sharing one point, optionally oblique.

Pure VTK/numpy: the UI forwards mouse events (click -> :meth:`MprController.set_point` with the clicked
view's ``display_to_lps``; drag on a crosshair line -> :meth:`MprController.rotate`).
"""

from __future__ import annotations

import numpy as np

from workstation.model.volume import Volume
from workstation.render.slice_view import Orientation, SliceView


def rotation_about(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """3x3 rotation by ``angle_deg`` about unit ``axis`` (right hand rule), Rodrigues' formula."""
    a = np.asarray(axis, float)
    a = a / np.linalg.norm(a)
    t = np.radians(angle_deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)


class MprController:
    """Keeps three SliceViews on one point; each shows where the other two planes cut it."""

    def __init__(self, axial: SliceView, coronal: SliceView, sagittal: SliceView) -> None:
        self.views: dict[Orientation, SliceView] = {
            Orientation.AXIAL: axial,
            Orientation.CORONAL: coronal,
            Orientation.SAGITTAL: sagittal,
        }
        for o, v in self.views.items():
            v.set_orientation(o)
        self._point = np.zeros(3)

    @property
    def point(self) -> np.ndarray:
        return self._point.copy()

    def set_volume(self, volume: Volume) -> None:
        for o, v in self.views.items():
            v.set_volume(volume)
            v.set_orientation(o)
        self.set_point(volume.middle_voxel_lps())

    def set_point(self, xyz) -> None:
        """Move all three planes through ``xyz`` (LPS mm) and draw the crosshairs there."""
        self._point = np.asarray(xyz, float).reshape(3).copy()
        for v in self.views.values():
            v.set_position_mm(self._point)
        self._update_crosshairs()

    def rotate(self, axis_view: Orientation, angle_deg: float) -> None:
        """Rotate the two other planes by ``angle_deg`` about ``axis_view``'s normal, through the point."""
        axis = self.views[axis_view].normal
        r = rotation_about(axis, angle_deg)
        for o, v in self.views.items():
            if o is not axis_view:
                v.set_oblique(r @ v.oblique)
                v.set_position_mm(self._point)
        self._update_crosshairs()

    def reset_rotation(self) -> None:
        for v in self.views.values():
            v.set_oblique(np.eye(3))
        self.set_point(self._point)

    def _update_crosshairs(self) -> None:
        for o, v in self.views.items():
            dirs = []
            for other_o, other in self.views.items():
                if other_o is o:
                    continue
                d = np.cross(v.normal, other.normal)  # the line where ``other`` cuts this plane
                if np.linalg.norm(d) > 1e-6:
                    dirs.append(d / np.linalg.norm(d))
            v.set_crosshair(self._point, dirs)
