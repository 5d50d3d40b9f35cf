"""A 2D slice / MPR view of a Volume in a vtkRenderer: window/level, slab, oblique, zoom/pan, overlays.

How it works: the volume is a ``vtkImageSlice`` with a ``vtkImageResliceMapper`` that cuts the plane facing
the camera through its focal point.  So the slice plane *is* the camera: orientation, oblique rotation,
flips and 90-degree turns are camera moves, thick slabs come from the mapper, and the mapper reslices only
the pixels on screen (fast for 512^2 at any zoom).  The camera is parallel, so display <-> LPS mapping is a
closed form of focal point, view up and parallel scale.

Screen conventions (radiological): axial seen from the feet (patient right on screen left, anterior up),
coronal seen from the front (right on the left, head up), sagittal seen from the patient's left
(anterior on the left, head up).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from itertools import count, permutations

import numpy as np
from workstation.render import _vtk as vtk

from workstation.model.measurement import EllipseROI, LengthMeasurement, RoiStats
from workstation.model.volume import Photometric, Volume, Window
from workstation.render.bridge import prop_matrix, volume_to_local_vtk
from workstation.render.labelmap_layer import LabelMapLayer
from workstation.render.overlays import PLANE_COLORS, OrientationMarkers, ScaleBar, WorldLabel, WorldLines


class Orientation(enum.Enum):
    """Standard planes; value = (screen right, screen up) in LPS.  The view normal is up x right."""

    AXIAL = ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0))
    CORONAL = ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0))
    SAGITTAL = ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0))

    def axes(self) -> np.ndarray:
        """3x3 with columns (right, up, normal) in LPS; normal is the camera's direction of projection."""
        r, u = (np.asarray(v) for v in self.value)
        return np.column_stack([r, u, np.cross(u, r)])


class SlabMode(enum.Enum):
    NONE = "none"
    MIP = "max"
    MINIP = "min"
    MEAN = "mean"


@dataclass(frozen=True, eq=False)
class MeasurementHandle:
    """What :meth:`SliceView.add_line` / :meth:`SliceView.add_ellipse` return."""

    id: int
    measurement: LengthMeasurement | EllipseROI
    text: str
    stats: RoiStats | None = None


_CAMERA_DISTANCE_MM = 2000.0


def grid_aligned(axes: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """The plane of the volume's grid nearest to a standard plane: (right, up, normal) columns in LPS.

    A reading view shows the images as acquired, as Horos, Weasis and OHIF's stack view do: on an oblique
    acquisition (an MR angled along the AC-PC line, a CT with gantry tilt) the "axial" view is the acquired
    plane, not a reslice along the patient's axes. So the pixels are the scanner's, one scroll step is one
    acquired slice, and the label tools, which draw on grid planes, work without rotating anything. For a
    grid along the patient's axes this is the standard plane itself.

    Each patient axis is paired with one grid axis (:func:`grid_axis_of_patient_axes`), so the three
    standard views stay three different, orthogonal grid planes even for a grid turned 45 degrees; each of
    right, up and normal (unit patient axes, possibly negated) becomes its paired grid axis, pointing the
    same way; the normal stays up x right."""
    d = np.asarray(direction, float)
    pair = grid_axis_of_patient_axes(d)
    cols = []
    for c in range(2):
        v = np.asarray(axes, float)[:, c]
        g = pair[int(np.argmax(np.abs(v)))]
        cols.append(d[:, g] * (1.0 if d[:, g] @ v >= 0 else -1.0))
    r, u = cols
    return np.column_stack([r, u, np.cross(u, r)])


def grid_axis_of_patient_axes(direction: np.ndarray) -> tuple[int, int, int]:
    """For the patient's x, y and z, the grid axis (0 = i, 1 = j, 2 = k) paired with each: the one-to-one
    pairing whose grid axes lie closest to them (largest sum of |cos|)."""
    closeness = np.abs(np.asarray(direction, float))  # [patient axis, grid axis]
    best = max(permutations(range(3)), key=lambda p: sum(closeness[a, p[a]] for a in range(3)))
    return tuple(int(g) for g in best)


class SliceView:
    """One slice (or slab) view; the owner calls ``render_window.Render()``."""

    def __init__(self, renderer: vtk.vtkRenderer) -> None:
        self.renderer = renderer
        self._volume: Volume | None = None
        self._orientation = Orientation.AXIAL
        self._oblique = np.eye(3)
        self._acquired = True  # standard views on the grid planes nearest to them (see grid_aligned)
        self._screen = np.eye(2)  # screen (right, up) as combinations of the plane's (right, up)
        self._position = np.zeros(3)
        self._center = np.zeros(3)  # in-plane point at the middle of the viewport
        self._scale = 100.0  # camera parallel scale: half the viewport height in mm
        self._window = Window(40.0, 400.0)
        self._invert = False
        self._crosshair: np.ndarray | None = None
        self._crosshair_dirs: list[np.ndarray] | None = None
        self._measurements: dict[int, tuple[MeasurementHandle, list]] = {}
        self._next_id = count(1)
        self._stack: vtk.vtkImageStack | None = None
        self.labels: LabelMapLayer | None = None
        self._build_pipeline()
        self.crosshair_lines = WorldLines(renderer, width=1.0)
        self.markers = OrientationMarkers(renderer)
        self.scale_bar = ScaleBar(renderer)
        self.corners = vtk.vtkCornerAnnotation()
        self.corners.SetMaximumFontSize(14)
        renderer.AddViewProp(self.corners)
        renderer.GetActiveCamera().ParallelProjectionOn()
        # Overlays that depend on the camera are refreshed on every render, so they stay right whoever moved it.
        renderer.AddObserver(vtk.vtkCommand.StartEvent, lambda *_: self._update_overlays())

    def _build_pipeline(self) -> None:
        self._mapper = vtk.vtkImageResliceMapper()
        self._mapper.SliceFacesCameraOn()
        self._mapper.SliceAtFocalPointOn()
        self._mapper.SetAutoAdjustImageQuality(False)
        self._lut = vtk.vtkLookupTable()
        self._lut.SetNumberOfTableValues(256)
        self._lut.SetHueRange(0.0, 0.0)
        self._lut.SetSaturationRange(0.0, 0.0)
        self._lut.SetRampToLinear()  # the default S-curve ramp would distort the window
        self._property = vtk.vtkImageProperty()
        self._property.SetInterpolationTypeToLinear()
        self._property.SetLookupTable(self._lut)
        self._property.UseLookupTableScalarRangeOff()  # the LUT range follows ColorWindow/ColorLevel
        self._slice = vtk.vtkImageSlice()
        self._slice.SetMapper(self._mapper)
        self._slice.SetProperty(self._property)
        self._slice.VisibilityOff()
        self.renderer.AddViewProp(self._slice)
        self._apply_lut()

    # -- volume ------------------------------------------------------------------------------------
    @property
    def volume(self) -> Volume | None:
        return self._volume

    def voxels_changed(self) -> None:
        """The volume's voxel array was written in place (a series still streaming in): redraw from it.

        The view shares the array with the Volume (no copy), so telling VTK the data is newer is enough.
        """
        if self._volume is not None:
            self._image.Modified()

    def set_volume(self, volume: Volume) -> None:
        """Show ``volume``: centred, fitted, with its own window and MONOCHROME1 inverted."""
        self._image = volume_to_local_vtk(volume)
        self._mapper.SetInputData(self._image)
        self._slice.SetUserMatrix(prop_matrix(volume))
        self._slice.VisibilityOn()
        self._volume = volume
        if self.labels is not None and not _belongs_to(self.labels.labelmap, volume):
            self.set_labelmap(None)  # never show one series' labels on another
        self._position = volume.middle_voxel_lps()
        self.set_window(volume.auto_window())
        self.set_invert(volume.info.photometric is Photometric.MONOCHROME1)
        self.fit()

    # -- layers --------------------------------------------------------------------------------------
    def add_layer(self, image_slice: vtk.vtkImageSlice) -> None:
        """Draw ``image_slice`` over the volume at the same plane (an image stack, so no depth fighting)."""
        if self._stack is None:
            self._stack = vtk.vtkImageStack()
            self.renderer.RemoveViewProp(self._slice)
            self._stack.AddImage(self._slice)
            self._stack.SetActiveLayer(0)
            self.renderer.AddViewProp(self._stack)
        self._stack.AddImage(image_slice)

    def set_labelmap(self, labelmap, opacity: float | None = None) -> LabelMapLayer:
        """Overlay a :class:`~workstation.model.labelmap.LabelMap` on the volume's grid (None removes it)."""
        if self.labels is None:
            self.labels = LabelMapLayer(self.renderer)
            self.add_layer(self.labels.slice)
        self.labels.set_labelmap(labelmap)
        if opacity is not None:
            self.labels.set_opacity(opacity)
        return self.labels

    # -- plane ---------------------------------------------------------------------------------------
    @property
    def orientation(self) -> Orientation:
        return self._orientation

    def set_orientation(self, orientation: Orientation) -> None:
        """Standard plane (the grid plane nearest to it, see :func:`grid_aligned`) through the current position;
        clears oblique, flips and rotation, then fits."""
        self._orientation = Orientation(orientation)
        self._oblique = np.eye(3)
        self._screen = np.eye(2)
        self.fit()

    def set_oblique(self, rotation: np.ndarray) -> None:
        """Rotate the standard plane's axes by a 3x3 rotation (in LPS) for oblique MPR; identity = standard."""
        rotation = np.asarray(rotation, float)
        if rotation.shape != (3, 3) or not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-6):
            raise ValueError("oblique rotation must be a 3x3 orthonormal matrix")
        self._oblique = rotation
        self._apply_camera()

    @property
    def oblique(self) -> np.ndarray:
        return self._oblique.copy()

    def plane_axes(self) -> np.ndarray:
        """3x3, columns = the plane's right, up and normal in LPS (before flips and 90-degree turns)."""
        axes = self._orientation.axes()
        if self._volume is not None and self._acquired:
            axes = grid_aligned(axes, self._volume.direction)
        return self._oblique @ axes

    @property
    def acquired_planes(self) -> bool:
        """True (the default): the standard views are the planes of the grid nearest to them, the series as
        acquired; False: along the patient's axes (as 3D Slicer shows them), a reslice on an oblique grid."""
        return self._acquired

    def set_acquired_planes(self, on: bool) -> None:
        """Switch between the series as acquired and the patient's axes; the view moves to the voxel nearest
        its point (on a slice of the grid) and is fitted again."""
        self._acquired = bool(on)
        if self._volume is not None:
            self._position = self._volume.nearest_voxel_lps(self._position)
        self.fit()

    @property
    def normal(self) -> np.ndarray:
        return self.plane_axes()[:, 2]

    def screen_axes(self) -> tuple[np.ndarray, np.ndarray]:
        """LPS directions of screen right and screen up (after flips and rotation)."""
        ax = self.plane_axes()
        ru = ax[:, :2] @ self._screen
        return ru[:, 0], ru[:, 1]

    @property
    def position_mm(self) -> np.ndarray:
        return self._position.copy()

    def set_position_mm(self, xyz) -> None:
        """Move the plane so it passes through ``xyz`` (LPS mm); the in-plane view (pan) is kept."""
        self._position = np.asarray(xyz, float).reshape(3).copy()
        self._apply_camera()

    def center_on(self, xyz) -> None:
        """Move the plane through ``xyz`` and pan so that it lies in the middle of the viewport."""
        self._position = np.asarray(xyz, float).reshape(3).copy()
        self._center = self._position.copy()
        self._apply_camera()

    def slice_step_mm(self) -> float:
        """Voxel spacing along the plane normal (the distance one scroll step moves)."""
        if self._volume is None:
            return 1.0
        n_idx = self._volume.direction.T @ self.normal  # normal in the grid's unit axes
        return float(1.0 / np.sqrt(np.sum((n_idx / np.asarray(self._volume.spacing)) ** 2)))

    def _normal_range(self) -> tuple[float, float]:
        """Min and max of voxel-centre positions along the normal."""
        corners = self._corner_points(0.0)
        d = corners @ self.normal
        return float(d.min()), float(d.max())

    def slice_count(self) -> int:
        if self._volume is None:
            return 0
        lo, hi = self._normal_range()
        return int(np.floor((hi - lo) / self.slice_step_mm() + 1e-6)) + 1

    def slice_index(self) -> int:
        if self._volume is None:
            return 0
        lo, _ = self._normal_range()
        return int(np.rint((self._position @ self.normal - lo) / self.slice_step_mm()))

    def scroll(self, n: int) -> None:
        """Move the plane ``n`` slice steps along the normal, stopping at the volume's ends."""
        if self._volume is None:
            return
        target = min(max(self.slice_index() + int(n), 0), self.slice_count() - 1)
        lo, _ = self._normal_range()
        along = lo + target * self.slice_step_mm()
        self.set_position_mm(self._position + (along - self._position @ self.normal) * self.normal)

    # -- display ------------------------------------------------------------------------------------
    @property
    def window(self) -> Window:
        return self._window

    def set_window(self, window: Window) -> None:
        self._window = window
        self._property.SetColorWindow(max(float(window.width), 1e-3))
        self._property.SetColorLevel(float(window.center))

    @property
    def invert(self) -> bool:
        return self._invert

    def set_invert(self, invert: bool) -> None:
        self._invert = bool(invert)
        self._apply_lut()

    def _apply_lut(self) -> None:
        self._lut.SetValueRange((1.0, 0.0) if self._invert else (0.0, 1.0))
        self._lut.ForceBuild()

    def set_slab(self, thickness_mm: float, mode: SlabMode) -> None:
        """Thick slab (MIP/MinIP/mean) of ``thickness_mm`` centred on the plane; NONE or 0 = thin slice."""
        mode = SlabMode(mode)
        thickness = 0.0 if mode is SlabMode.NONE else max(float(thickness_mm), 0.0)
        self._mapper.SetSlabThickness(thickness)
        {
            SlabMode.NONE: self._mapper.SetSlabTypeToMean,
            SlabMode.MIP: self._mapper.SetSlabTypeToMax,
            SlabMode.MINIP: self._mapper.SetSlabTypeToMin,
            SlabMode.MEAN: self._mapper.SetSlabTypeToMean,
        }[mode]()

    # -- camera ---------------------------------------------------------------------------------------
    def _apply_camera(self) -> None:
        right, up = self.screen_axes()
        view_dir = np.cross(up, right)
        n = self.normal
        focal = self._center + ((self._position - self._center) @ n) * n
        self._center = focal
        cam = self.renderer.GetActiveCamera()
        cam.ParallelProjectionOn()
        cam.SetFocalPoint(*focal)
        cam.SetPosition(*(focal - _CAMERA_DISTANCE_MM * view_dir))
        cam.SetViewUp(*up)
        cam.SetParallelScale(self._scale)
        cam.SetClippingRange(_CAMERA_DISTANCE_MM * 0.5, _CAMERA_DISTANCE_MM * 1.5)

    def _corner_points(self, pad: float = 0.5) -> np.ndarray:
        k, j, i = self._volume.shape
        lo, hi = -pad, np.array([i, j, k]) - 1 + pad
        grid = np.array([[x, y, z] for x in (lo, hi[0]) for y in (lo, hi[1]) for z in (lo, hi[2])], float)
        return self._volume.index_to_lps(grid)

    def _viewport(self) -> tuple[float, float, float, float]:
        """(x0, y0, width, height) of this renderer in display pixels."""
        w, h = self.renderer.GetRenderWindow().GetSize() if self.renderer.GetRenderWindow() else (1, 1)
        vx0, vy0, vx1, vy1 = self.renderer.GetViewport()
        return vx0 * w, vy0 * h, max((vx1 - vx0) * w, 1.0), max((vy1 - vy0) * h, 1.0)

    def fit(self) -> None:
        """Centre the volume's section and zoom so it fills the viewport."""
        if self._volume is None:
            self._apply_camera()
            return
        right, up = self.screen_axes()
        pts = self._corner_points()
        _, _, vw, vh = self._viewport()
        ext_r = np.ptp(pts @ right)
        ext_u = np.ptp(pts @ up)
        self._center = self._volume.center_lps()
        self._scale = 0.5 * max(ext_u, ext_r * vh / vw) * 1.02
        self._apply_camera()

    def zoom(self, factor: float) -> None:
        """Magnify by ``factor`` (> 1 zooms in) about the viewport centre."""
        if factor <= 0:
            raise ValueError("zoom factor must be positive")
        self._scale /= float(factor)
        self._apply_camera()

    def pan(self, dx_px: float, dy_px: float) -> None:
        """Move the image by (dx, dy) display pixels (y up)."""
        right, up = self.screen_axes()
        mm = self.mm_per_pixel()
        self._center = self._center - dx_px * mm * right - dy_px * mm * up
        self._apply_camera()

    def flip_horizontal(self) -> None:
        self._screen = self._screen @ np.diag([-1.0, 1.0])
        self._apply_camera()

    def flip_vertical(self) -> None:
        self._screen = self._screen @ np.diag([1.0, -1.0])
        self._apply_camera()

    def rotate_90(self, clockwise: bool = True) -> None:
        """Turn the image a quarter turn on screen (clockwise: what was at the top goes to the right)."""
        turn = np.array([[0.0, -1.0], [1.0, 0.0]])
        self._screen = self._screen @ (turn if clockwise else turn.T)
        self._apply_camera()

    def mm_per_pixel(self) -> float:
        _, _, _, vh = self._viewport()
        return 2.0 * self.renderer.GetActiveCamera().GetParallelScale() / vh

    # -- coordinates ----------------------------------------------------------------------------------
    def _camera_frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Focal point, screen right and screen up as the camera has them now."""
        cam = self.renderer.GetActiveCamera()
        up = np.asarray(cam.GetViewUp())
        right = np.cross(np.asarray(cam.GetDirectionOfProjection()), up)
        return np.asarray(cam.GetFocalPoint()), right / np.linalg.norm(right), up / np.linalg.norm(up)

    def display_to_lps(self, x_px: float, y_px: float) -> np.ndarray:
        """LPS point on the plane under display position (x, y) (VTK display, origin bottom-left)."""
        focal, right, up = self._camera_frame()
        x0, y0, vw, vh = self._viewport()
        mm = self.mm_per_pixel()
        return focal + (x_px - x0 - vw / 2.0) * mm * right + (y_px - y0 - vh / 2.0) * mm * up

    def lps_to_display(self, xyz) -> tuple[float, float]:
        """Display position of an LPS point (projected along the normal onto the plane)."""
        focal, right, up = self._camera_frame()
        x0, y0, vw, vh = self._viewport()
        d = np.asarray(xyz, float) - focal
        mm = self.mm_per_pixel()
        return float(x0 + vw / 2.0 + d @ right / mm), float(y0 + vh / 2.0 + d @ up / mm)

    def value_at_display(self, x: float, y: float) -> float | None:
        """Voxel value (nearest) under a display position, or None outside the volume."""
        if self._volume is None:
            return None
        return self._volume.value_at(self.display_to_lps(x, y))

    # -- overlays -------------------------------------------------------------------------------------
    def set_crosshair(self, xyz, directions: list[np.ndarray] | None = None) -> None:
        """Show two lines through ``xyz`` in the plane (None hides them).

        ``directions`` (in-plane LPS vectors) default to the plane's axes; the MPR passes the lines where
        the other planes cut this one.  Each line takes the colour of the plane it stands for.
        """
        self._crosshair = None if xyz is None else np.asarray(xyz, float).reshape(3)
        self._crosshair_dirs = None if directions is None else [np.asarray(d, float) for d in directions]

    def set_corner_text(self, corner: int, text: str) -> None:
        """Text in a corner: 0 lower left, 1 lower right, 2 upper left, 3 upper right."""
        if corner not in (0, 1, 2, 3):
            raise ValueError(f"corner must be 0..3, got {corner}")
        self.corners.SetText(corner, text)

    def orientation_labels(self) -> dict[str, str]:
        """Letters currently shown at the 'left', 'right', 'top' and 'bottom' edges."""
        self._update_overlays()
        return dict(self.markers.labels)

    def _update_overlays(self) -> None:
        # an empty viewport shows no letters or scale: they would describe an image that is not there
        shown = self._volume is not None
        self.markers.set_visible(shown)
        self.scale_bar.set_visible(shown)
        _, right, up = self._camera_frame()
        self.markers.update(right, up)
        _, _, vw, vh = self._viewport()
        self.scale_bar.update(self.mm_per_pixel(), (int(vw), int(vh)))
        self._update_crosshair()
        self._update_measurement_visibility()

    def _update_crosshair(self) -> None:
        if self._crosshair is None or self._volume is None:
            self.crosshair_lines.set_polylines([])
            return
        n = self.normal
        p = self._crosshair - ((self._crosshair - self._position) @ n) * n  # onto the plane
        dirs = self._crosshair_dirs or [self.plane_axes()[:, 0], self.plane_axes()[:, 1]]
        half = float(np.linalg.norm(np.ptp(self._corner_points(), axis=0))) * 2.0
        lines, colors = [], []
        for d in dirs:
            d = d / np.linalg.norm(d)
            lines.append(np.array([p - half * d, p + half * d]))
            colors.append(PLANE_COLORS[int(np.argmax(np.abs(np.cross(n, d))))])
        self.crosshair_lines.set_polylines(lines, colors)

    # -- measurements -----------------------------------------------------------------------------------
    def add_line(self, p0_lps, p1_lps) -> MeasurementHandle:
        """Draw a length measurement; its label shows the length in mm."""
        m = LengthMeasurement(np.asarray(p0_lps, float), np.asarray(p1_lps, float))
        text = f"{m.length_mm:.1f} mm"
        line = WorldLines(self.renderer)
        line.set_polylines([np.array([m.p0, m.p1])])
        label = WorldLabel(self.renderer, text, m.p1)
        handle = MeasurementHandle(next(self._next_id), m, text)
        self._measurements[handle.id] = (handle, [line, label])
        return handle

    def add_ellipse(self, center_lps, radius_a_mm: float, radius_b_mm: float) -> MeasurementHandle:
        """Draw an ellipse ROI in the current plane (radii along screen right / up) with its statistics."""
        right, up = self.screen_axes()
        roi = EllipseROI(np.asarray(center_lps, float), right, up, float(radius_a_mm), float(radius_b_mm))
        stats = roi.stats(self._volume) if self._volume is not None else None
        units = self._volume.info.units if self._volume is not None else ""
        text = stats.text(units) if stats else f"area {roi.area_mm2:.1f} mm\u00b2"
        t = np.linspace(0, 2 * np.pi, 73)
        pts = roi.center + np.outer(np.cos(t) * roi.radius_a_mm, right) + np.outer(np.sin(t) * roi.radius_b_mm, up)
        outline = WorldLines(self.renderer)
        outline.set_polylines([pts])
        label = WorldLabel(self.renderer, text, roi.center + roi.radius_a_mm * right)
        handle = MeasurementHandle(next(self._next_id), roi, text, stats)
        self._measurements[handle.id] = (handle, [outline, label])
        return handle

    def remove_measurement(self, handle: MeasurementHandle) -> None:
        _, parts = self._measurements.pop(handle.id, (None, []))
        for part in parts:
            part.remove(self.renderer)

    def measurements(self) -> list[MeasurementHandle]:
        return [h for h, _ in self._measurements.values()]

    def _update_measurement_visibility(self) -> None:
        """Show a measurement only on the slice it was drawn on (within half a slice step)."""
        n, tol = self.normal, self.slice_step_mm() / 2.0 + 1e-6
        for handle, parts in self._measurements.values():
            m = handle.measurement
            anchor = m.center if isinstance(m, EllipseROI) else (m.p0 + m.p1) / 2.0
            visible = bool(abs((anchor - self._position) @ n) <= tol)
            for part in parts:
                part.actor.SetVisibility(visible)


def _belongs_to(labelmap, volume: Volume) -> bool:
    """A label map may be shown on ``volume``: same grid and, when both say, the same series."""
    if labelmap is None:
        return True
    uid = volume.info.series_instance_uid
    if labelmap.source_series_uid and uid and labelmap.source_series_uid != uid:
        return False
    return labelmap.is_on_grid_of(volume)
