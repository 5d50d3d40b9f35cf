"""SliceView on synthetic phantoms: geometry on screen, window/invert, slab, markers, measurements."""

from __future__ import annotations

import numpy as np
import pytest

from workstation.model.measurement import ellipse_stats
from workstation.model.volume import Volume, Window
from workstation.render.offscreen import capture
from workstation.render.slice_view import Orientation, SlabMode

from ._render_phantoms import blank, monochrome1, rotation_z, with_spheres
from .conftest import RENDER_SIZE as SIZE


def pixel(img: np.ndarray, xy) -> np.ndarray:
    """Captured pixel at VTK display coordinates (origin bottom-left)."""
    x, y = xy
    return img[img.shape[0] - 1 - int(y), int(x)]


def bright_centroid(img: np.ndarray, mask_region=None) -> tuple[float, float]:
    """Display coordinates (pixel centres) of the centroid of bright grey pixels.

    A 45-pixel margin (orientation letters, scale bar) is left out.
    """
    g = img[..., 0].astype(float) * (np.ptp(img.astype(int), axis=-1) < 8)
    g[:45], g[-45:], g[:, :45], g[:, -45:] = 0, 0, 0, 0
    if mask_region is not None:
        g = g * mask_region
    rows, cols = np.nonzero(g > 128)
    h = img.shape[0]
    return float(cols.mean() + 0.5), float(h - 1 - rows.mean() + 0.5)


def test_axial_feature_at_expected_pixel(view):
    sv, rw = view
    p = np.array([-5.0, -20.0, 50.0])
    vol = with_spheres(blank(), [p], 4.0)
    sv.set_volume(vol)
    sv.set_orientation(Orientation.AXIAL)
    sv.set_position_mm(p)
    sv.set_window(Window(0, 400))
    img = capture(rw)
    x, y = sv.lps_to_display(p)
    assert pixel(img, (x, y))[0] > 200
    cx, cy = bright_centroid(img)
    assert abs(cx - x) < 1.0 and abs(cy - y) < 1.0
    far = sv.lps_to_display(p + np.array([15.0, 0, 0]))
    assert pixel(img, far)[0] < 20
    # radiological convention: the patient's left (+x) lies to the right on screen, anterior (-y) up
    xl, _ = sv.lps_to_display(p + [10, 0, 0])
    _, ya = sv.lps_to_display(p + [0, -10, 0])
    assert xl > x and ya > y


@pytest.mark.parametrize("plane", ["acquired", "patient"])
@pytest.mark.parametrize("orientation", [Orientation.CORONAL, Orientation.SAGITTAL])
def test_rotated_affine_distance_in_mm(view, orientation, plane):
    sv, rw = view
    vol0 = blank(shape=(50, 64, 64), spacing=(0.9, 0.9, 1.5), rotation=rotation_z(25), origin=(-20, -40, 0))
    c = vol0.center_lps()
    sv.set_volume(vol0)
    sv.set_orientation(orientation)
    # a grid turned 25 degrees about the patient's z: the standard view shows the grid's own plane, an
    # oblique turn of -25 degrees brings it back to the patient's plane (a reslice across the grid)
    grid_normal = sv.normal
    assert np.isclose(abs(grid_normal @ vol0.direction[:, 0 if orientation is Orientation.SAGITTAL else 1]), 1.0)
    if plane == "patient":
        sv.set_oblique(rotation_z(-25))
        assert np.allclose(sv.plane_axes(), Orientation(orientation).axes(), atol=1e-9)
    right, up = sv.plane_axes()[:, 0], sv.plane_axes()[:, 1]
    a, b = c - 12.0 * right - 10.0 * up, c + 10.0 * right + 14.0 * up
    vol = with_spheres(vol0, [a, b], 3.5)
    sv.set_volume(vol)
    sv.set_position_mm(c)
    sv.set_window(Window(0, 400))
    img = capture(rw)
    # the screen round trip is exact on the plane
    for p in (a, b):
        assert np.allclose(sv.display_to_lps(*sv.lps_to_display(p)), p, atol=1e-6)
    # find each blob on screen and measure between them in mm
    xa, ya = sv.lps_to_display(a)
    xb, yb = sv.lps_to_display(b)
    h, w = img.shape[:2]
    cols, rows = np.meshgrid(np.arange(w) + 0.5, h - np.arange(h) - 0.5)
    near_a = (np.hypot(cols - xa, rows - ya) < 12).astype(float)
    near_b = (np.hypot(cols - xb, rows - yb) < 12).astype(float)
    pa = sv.display_to_lps(*bright_centroid(img, near_a))
    pb = sv.display_to_lps(*bright_centroid(img, near_b))
    measured = np.linalg.norm(pb - pa)
    assert abs(measured - np.linalg.norm(b - a)) < sv.mm_per_pixel()
    assert vol.value_at(pa) == 1000 and sv.value_at_display(xa, ya) == 1000


def test_monochrome1_is_inverted(view):
    sv, rw = view
    sv.set_volume(monochrome1(blank()))
    assert sv.invert
    sv.set_window(Window(0, 400))  # -1000 HU is below the window: black normally, white inverted
    img = capture(rw)
    assert pixel(img, (128, 128))[0] > 240
    sv.set_invert(False)
    assert pixel(capture(rw), (128, 128))[0] < 15


def test_slab_mip_shows_thin_line_a_slice_misses(view):
    sv, rw = view
    vol = blank(shape=(20, 64, 64), spacing=(1.0, 1.0, 1.0))
    vox = vol.voxels.copy()
    vox[12, 30:34, 10:54] = 1000  # a one-slice thin bright bar, two slices above the plane
    vol = Volume(vox, vol.affine, vol.info)
    sv.set_volume(vol)
    sv.set_window(Window(0, 400))
    sv.set_position_mm(vol.index_to_lps([32, 32, 10]))
    assert sv.slice_index() == 10
    bar = sv.lps_to_display(vol.index_to_lps([32, 31.5, 12]))
    assert pixel(capture(rw), bar)[0] < 15
    sv.set_slab(8.0, SlabMode.MIP)
    assert pixel(capture(rw), bar)[0] > 240
    sv.set_slab(8.0, SlabMode.NONE)
    assert pixel(capture(rw), bar)[0] < 15


def test_scroll_and_slice_count(view):
    sv, _ = view
    vol = blank(shape=(30, 40, 50), spacing=(0.7, 0.8, 2.5), rotation=rotation_z(30))
    sv.set_volume(vol)
    assert sv.slice_count() == 30 and sv.slice_step_mm() == pytest.approx(2.5)
    sv.set_position_mm(vol.index_to_lps([0, 0, 0]))
    assert sv.slice_index() == 0
    sv.scroll(3)
    assert sv.slice_index() == 3
    assert sv.position_mm[2] == pytest.approx(vol.index_to_lps([0, 0, 3])[2])
    sv.scroll(100)
    assert sv.slice_index() == 29
    sv.set_orientation(Orientation.SAGITTAL)
    assert sv.slice_step_mm() < 0.8  # the rotated grid packs voxels closer along x than either spacing


def test_orientation_markers_follow_flips_and_rotation(view):
    sv, rw = view
    sv.set_volume(blank())
    assert sv.orientation_labels() == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    sv.flip_horizontal()
    assert sv.orientation_labels() == {"left": "L", "right": "R", "top": "A", "bottom": "P"}
    sv.flip_horizontal()
    sv.rotate_90(clockwise=True)  # a quarter turn clockwise: top (A) goes right, left (R) goes up
    assert sv.orientation_labels() == {"left": "P", "right": "A", "top": "R", "bottom": "L"}
    sv.rotate_90(clockwise=False)
    sv.set_orientation(Orientation.CORONAL)
    assert sv.orientation_labels() == {"left": "R", "right": "L", "top": "H", "bottom": "F"}
    sv.set_orientation(Orientation.SAGITTAL)
    assert sv.orientation_labels() == {"left": "A", "right": "P", "top": "H", "bottom": "F"}
    sv.set_oblique(rotation_z(30))
    assert sv.orientation_labels()["left"] in ("AR", "AL")
    capture(rw)  # renders with all overlays


def test_flip_keeps_geometry_and_zoom_pan(view):
    sv, rw = view
    sv.set_volume(blank())
    p = sv.volume.center_lps() + [10, 5, 0]
    x, y = sv.lps_to_display(p)
    sv.flip_horizontal()
    x2, y2 = sv.lps_to_display(p)
    assert x2 == pytest.approx(SIZE[0] - x) and y2 == pytest.approx(y)
    mm = sv.mm_per_pixel()
    sv.zoom(2.0)
    assert sv.mm_per_pixel() == pytest.approx(mm / 2)
    before = sv.lps_to_display(p)
    sv.pan(7, -3)
    after = sv.lps_to_display(p)
    assert after[0] - before[0] == pytest.approx(7) and after[1] - before[1] == pytest.approx(-3)
    capture(rw)
    assert sv.scale_bar.length_mm in (1, 5, 10, 50, 100)
    assert sv.scale_bar.length_mm / sv.mm_per_pixel() <= SIZE[0] / 4


def test_measurements(view):
    sv, rw = view
    vol = blank()
    vox = vol.voxels.copy()
    vox[:, 20:44, 20:44] = 57
    vol = Volume(vox, vol.affine, vol.info)
    sv.set_volume(vol)
    c = vol.index_to_lps([32, 32, 20])
    line = sv.add_line(c, c + [3.0, 4.0, 0.0])
    assert line.measurement.length_mm == pytest.approx(5.0) and line.text == "5.0 mm"
    roi = sv.add_ellipse(c, 8.0, 5.0)
    assert roi.stats.mean == 57 and roi.stats.sd == 0 and roi.stats.min == roi.stats.max == 57
    assert roi.stats.area_mm2 == pytest.approx(np.pi * 40.0)
    capture(rw)
    sv.remove_measurement(line)
    sv.remove_measurement(roi)
    assert sv.measurements() == []
    stats = ellipse_stats(vol, c, (np.array([1.0, 0, 0]), np.array([0, 1.0, 0])), (20.0, 20.0))
    assert stats.min == -1000 and stats.max == 57


def test_crosshair_and_corner_text_render(view):
    sv, rw = view
    sv.set_volume(blank())
    sv.set_crosshair(sv.volume.center_lps())
    sv.set_corner_text(2, "Patient X")
    img = capture(rw)
    x, y = sv.lps_to_display(sv.volume.center_lps())
    # crosshair pixels are coloured, the -1000 HU background under them is black
    assert pixel(img, (x + 40, y)).max() > 100 or pixel(img, (x + 40, y - 1)).max() > 100
    with pytest.raises(ValueError):
        sv.set_corner_text(4, "x")


@pytest.mark.parametrize("value, grey", [(-2048, 0), (-1024, 64), (0, 128), (1024, 191), (2047, 255)])
def test_window_maps_linearly(view, value, grey):
    sv, rw = view
    b = blank()
    sv.set_volume(Volume(np.full(b.shape, value, np.int16), b.affine, b.info))
    sv.set_window(Window(0, 4096))
    assert abs(int(pixel(capture(rw), (128, 128))[0]) - grey) <= 1


def test_display_mapping_agrees_with_vtk_projection(view):
    """Overlays are projected by VTK; the view's closed-form mapping must put points at the same place."""
    sv, rw = view
    sv.set_volume(blank(rotation=rotation_z(35)))
    sv.set_orientation(Orientation.SAGITTAL)
    sv.set_oblique(rotation_z(10))
    sv.zoom(1.7)
    sv.pan(13, -8)
    sv.rotate_90()
    rw.Render()
    ren = sv.renderer
    p = sv.position_mm + [3.0, -4.0, 7.0]
    p = p - ((p - sv.position_mm) @ sv.normal) * sv.normal
    ren.SetWorldPoint(*p, 1.0)
    ren.WorldToDisplay()
    assert np.allclose(ren.GetDisplayPoint()[:2], sv.lps_to_display(p), atol=1e-3)
    assert sv.value_at_display(-5000, -5000) is None


@pytest.mark.parametrize("orientation", list(Orientation))
def test_a_grid_with_an_even_slice_count_opens_on_a_slice(view, orientation):
    # the middle of 40 slices lies between slices 19 and 20: the view opens on 19, not on a blend of both
    sv, _rw = view
    vol = blank(shape=(40, 64, 50), rotation=rotation_z(10))
    sv.set_volume(vol)
    sv.set_orientation(orientation)
    index = vol.lps_to_index(sv.position_mm)
    assert np.allclose(index, np.rint(index), atol=1e-9)
    assert np.allclose(index, [(50 - 1) // 2, (64 - 1) // 2, (40 - 1) // 2])


def test_standard_views_of_a_grid_turned_45_degrees_are_three_different_planes():
    from workstation.render.mpr import rotation_about
    from workstation.render.slice_view import grid_aligned

    # a grid turned 45 degrees about x: its j and k axes are equally near the patient's y and z; the axial
    # and coronal views must still be two different grid planes, and all three orthogonal
    # (and a double oblique, turned 60 degrees about x + y, where the nearest axis of each view alone
    # would give two views the same plane)
    for axis, angle in [([1.0, 0.0, 0.0], a) for a in (45.0, 44.0, 46.0, -45.0, 30.0)] + [([1.0, 1.0, 0.0], 60.0)]:
        d = rotation_about(np.array(axis) / np.linalg.norm(axis), angle)
        planes = [grid_aligned(o.axes(), d) for o in Orientation]
        normals = np.array([p[:, 2] for p in planes])
        assert np.allclose(np.abs(normals @ normals.T), np.eye(3), atol=1e-9)
        for p in planes:  # each one a plane of the grid: right, up and normal along grid axes
            assert np.allclose(np.sort(np.abs(d.T @ p), axis=0)[-1], 1.0)
    # an axis-aligned grid keeps the standard planes, a permuted one (a sagittal acquisition) too
    for d in (np.eye(3), np.array([[0, 0, 1.0], [1.0, 0, 0], [0, -1.0, 0]])):
        for o in Orientation:
            assert np.allclose(grid_aligned(o.axes(), d), o.axes())
