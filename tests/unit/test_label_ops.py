"""Label operations (workstation.model.label_ops, workstation.labels.ops_sitk): sizes in mm on anisotropic
grids, threshold limits, region growing, contour fill, interpolation, smoothing, islands, exact undo."""

from __future__ import annotations

import numpy as np
import pytest

from workstation.labels.ops_sitk import island_sizes, remove_small_islands
from workstation.model import label_ops as ops
from workstation.model.edits import UndoStack

CT = (2.5, 0.7, 0.7)  # (sk, sj, si): 2.5 mm slices of 0.7 mm pixels


def test_spacing_from_affine_is_in_array_order():
    affine = np.diag([0.7, 0.8, 2.5, 1.0])  # columns i, j, k
    assert ops.spacing_kji(affine) == pytest.approx((2.5, 0.8, 0.7))


@pytest.mark.parametrize("radius", [2.0, 5.0, 10.0])
def test_disc_on_0_7_mm_pixels_has_the_area_of_the_circle(radius):
    labels = np.zeros((5, 100, 100), np.uint8)
    edit = ops.brush(labels, (2, 50, 50), radius, CT, 1, axis=0)
    expected = np.pi * radius ** 2 / 0.7 ** 2
    assert edit.changed_voxels == np.count_nonzero(labels)
    assert np.count_nonzero(labels) == pytest.approx(expected, rel=0.08)
    assert np.count_nonzero(labels[2]) == np.count_nonzero(labels)  # one slice only
    # the extent is the radius in pixels: 5 mm / 0.7 mm = 7 pixels each side
    if radius == 5.0:
        rows = np.flatnonzero(labels[2].any(1))
        assert (rows[0], rows[-1]) == (43, 57)


def test_sphere_is_round_in_mm_on_anisotropic_voxels():
    labels = np.zeros((20, 60, 60), np.uint8)
    ops.brush(labels, (10, 30, 30), 6.0, CT, 1)
    assert np.count_nonzero(labels) == pytest.approx(4 / 3 * np.pi * 6.0 ** 3 / (2.5 * 0.7 * 0.7), rel=0.1)
    ks = np.flatnonzero(labels.any((1, 2)))
    assert (ks[0], ks[-1]) == (8, 12)  # 6 mm / 2.5 mm = 2 slices each side
    js = np.flatnonzero(labels.any((0, 2)))
    assert (js[0], js[-1]) == (22, 38)  # 6 / 0.7 = 8.57 -> 8 pixels each side


def test_disc_in_a_coronal_plane_spans_fewer_slices_than_rows():
    labels = np.zeros((20, 60, 60), np.uint8)
    ops.brush(labels, (10, 30, 30), 5.0, CT, 1, axis=1)  # the row plane j = 30
    assert np.count_nonzero(labels) == np.count_nonzero(labels[:, 30, :])
    ks = np.flatnonzero(labels[:, 30, :].any(1))
    cols = np.flatnonzero(labels[:, 30, :].any(0))
    assert (ks[0], ks[-1]) == (8, 12) and (cols[0], cols[-1]) == (23, 37)


def test_threshold_brush_respects_the_hu_range():
    rng = np.random.default_rng(1)
    image = rng.integers(-1000, 400, (3, 50, 50)).astype(np.int16)
    labels = np.zeros(image.shape, np.uint8)
    ops.brush(labels, (1, 25, 25), 8.0, CT, 1, axis=0, image=image, hu_range=(-100, 100))
    disc = np.zeros_like(labels)
    ops.brush(disc, (1, 25, 25), 8.0, CT, 1, axis=0)
    painted = labels == 1
    assert painted.any()
    assert np.all((image[painted] >= -100) & (image[painted] <= 100))
    in_range = (disc == 1) & (image >= -100) & (image <= 100)
    assert np.array_equal(painted, in_range)
    with pytest.raises(ValueError, match="image"):
        ops.brush(labels, (1, 25, 25), 3.0, CT, 1, hu_range=(0, 1))


def test_eraser_limited_to_one_segment_and_brush_that_never_overwrites():
    labels = np.zeros((3, 30, 30), np.uint8)
    labels[1, 10:20, 10:15] = 1
    labels[1, 10:20, 15:20] = 2
    ops.brush(labels, (1, 15, 15), 4.0, CT, 0, axis=0, only_on=2)
    assert np.count_nonzero(labels == 1) == 50 and np.count_nonzero(labels == 2) < 50
    ops.brush(labels, (1, 15, 15), 4.0, CT, 2, axis=0, only_on=0)
    assert np.count_nonzero(labels == 1) == 50


def test_a_stroke_is_one_undo_step_and_undo_is_bit_exact():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, (4, 80, 80)).astype(np.uint8)
    original = labels.copy()
    centres = ops.stroke_centres((1, 10, 10), (1, 60, 70), 3.0, CT)
    assert all(np.linalg.norm((np.subtract(b, a)) * CT) <= 3.0 for a, b in zip(centres, centres[1:]))
    edits = [ops.brush(labels, c, 3.0, CT, 1, axis=0) for c in centres]
    stroke = ops.merge_edits(labels, edits, "stroke")
    painted = labels.copy()
    stack = UndoStack()
    stack.push(stroke)
    stack.undo(labels)
    assert np.array_equal(labels, original)
    stack.redo(labels)
    assert np.array_equal(labels, painted)
    assert labels[1, 35, 40] == 1  # the middle of the line was painted: no gaps


def _blobs():
    image = np.full((10, 60, 60), -800, np.int16)
    image[3:7, 10:20, 10:20] = 40  # blob A
    image[3:7, 10:20, 30:40] = 45  # blob B, not touching A
    image[5, 14, 20:30] = 40  # a bridge A-B on slice 5 only
    return image


def test_region_grow_3d_follows_connection_and_range():
    image = _blobs()
    labels = np.zeros(image.shape, np.uint8)
    edit = ops.region_grow(labels, image, [(4, 15, 15)], 1, CT, intensity_range=(0, 100))
    assert np.count_nonzero(labels) == 4 * 100 * 2 + 10  # both blobs through the bridge
    assert np.all(image[labels == 1] >= 0)
    UndoStack().push(edit)
    image[5, 14, 25] = -800  # break the bridge
    labels[:] = 0
    ops.region_grow(labels, image, [(4, 15, 15)], 1, CT, intensity_range=(0, 100))
    assert np.count_nonzero(labels) == 4 * 100 + 5


def test_region_grow_2d_stays_in_its_plane_and_confidence_range():
    image = _blobs()
    labels = np.zeros(image.shape, np.uint8)
    ops.region_grow(labels, image, [(4, 15, 15)], 1, CT, intensity_range=(0, 100), axis=0)
    assert np.count_nonzero(labels) == np.count_nonzero(labels[4]) == 100
    labels[:] = 0
    ops.region_grow(labels, image, [(5, 15, 15)], 1, CT, confidence=2.5, axis=0)
    # mean 40, std floor 1 -> 37.5..42.5: blob A and the bridge, not blob B (45)
    assert np.count_nonzero(labels) == 100 + 10
    with pytest.raises(ValueError, match="range"):
        ops.region_grow(labels, image, [(4, 15, 15)], 1, CT)
    with pytest.raises(ValueError, match="inside the grid"):
        ops.region_grow(labels, image, [(40, 15, 15)], 1, CT, intensity_range=(0, 1))


def test_region_grow_does_not_enter_other_segments_and_stops_at_max_radius():
    image = np.zeros((1, 100, 100), np.int16)
    labels = np.zeros(image.shape, np.uint8)
    labels[0, :, 60] = 2  # a wall of another segment
    ops.region_grow(labels, image, [(0, 50, 50)], 1, (1.0, 1.0, 1.0), intensity_range=(-1, 1), axis=0,
                    max_radius_mm=20)
    cols = np.flatnonzero((labels[0] == 1).any(0))
    rows = np.flatnonzero((labels[0] == 1).any(1))
    assert (cols[0], cols[-1]) == (30, 59) and (rows[0], rows[-1]) == (30, 70)
    assert np.count_nonzero(labels == 2) == 100


def test_polygon_fill_square_triangle_and_planes():
    labels = np.zeros((8, 20, 20), np.uint8)
    square = [(2, 2), (2, 7), (7, 7), (7, 2)]
    ops.fill_polygon(labels, 0, 3, square, 1)
    assert np.count_nonzero(labels) == 25 and labels[3, 2:7, 2:7].all()
    labels[:] = 0
    triangle = [(0, 0), (0, 19.999), (19.999, 0)]
    ops.fill_polygon(labels, 0, 0, triangle, 1)
    assert np.count_nonzero(labels) == pytest.approx(0.5 * 20 * 20, rel=0.1)
    for axis in (1, 2):  # the same contour on a coronal and a sagittal plane
        plane = np.zeros((8, 20, 20), np.uint8)
        ops.fill_polygon(plane, axis, 5, [(1, 1), (1, 5), (5, 5), (5, 1)], 1)
        assert np.count_nonzero(np.take(plane, 5, axis=axis)) == 16 == np.count_nonzero(plane)
    with pytest.raises(ValueError, match="3 points"):
        ops.fill_polygon(labels, 0, 0, [(0, 0), (1, 1)], 1)


def _circle(shape, centre, radius_px):
    jj, ii = np.indices(shape)
    return (jj - centre[0]) ** 2 + (ii - centre[1]) ** 2 <= radius_px ** 2


def test_interpolation_gives_intermediate_shapes():
    labels = np.zeros((9, 60, 60), np.uint8)
    labels[0][_circle((60, 60), (30, 30), 4)] = 1
    labels[8][_circle((60, 60), (30, 30), 20)] = 1
    stack = UndoStack()
    before = labels.copy()
    stack.push(ops.interpolate_gaps(labels, 1, 0, (2.0, 1.0, 1.0)))
    areas = [np.count_nonzero(labels[k]) for k in range(9)]
    assert all(a < b for a, b in zip(areas, areas[1:]))  # growing steadily
    r_mid = np.sqrt(areas[4] / np.pi)
    assert r_mid == pytest.approx(12.0, abs=1.0)  # half way between radius 4 and 20
    assert np.array_equal(labels[4], _circle((60, 60), (30, 30), 12)) or \
        np.count_nonzero(labels[4] ^ _circle((60, 60), (30, 30), 12)) < 0.1 * areas[4]
    stack.undo(labels)
    assert np.array_equal(labels, before)


def test_interpolation_slides_a_moving_shape_and_needs_two_drawn_planes():
    labels = np.zeros((5, 40, 60), np.uint8)
    labels[0][_circle((40, 60), (20, 25), 8)] = 1
    labels[4][_circle((40, 60), (20, 33), 8)] = 1  # moved, overlapping its first position
    ops.interpolate_between(labels, 1, 0, 0, 4, (1.0, 1.0, 1.0))
    centre_cols = [np.flatnonzero(labels[k].any(0)).mean() for k in range(5)]
    assert centre_cols == pytest.approx([25, 27, 29, 31, 33], abs=0.6)
    with pytest.raises(ValueError, match="both planes"):
        ops.interpolate_between(np.zeros((5, 5, 5), np.uint8), 1, 0, 0, 4, (1, 1, 1))


def test_smoothing_closes_holes_opens_specks_and_keeps_other_segments():
    labels = np.zeros((1, 40, 40), np.uint8)
    labels[0, 10:30, 10:30] = 1
    labels[0, 20, 20] = 0  # a pinhole
    labels[0, 2, 2] = 1  # a speck
    labels[0, 10:30, 31] = 2  # another segment next to a notch
    before = labels.copy()
    stack = UndoStack()
    stack.push(ops.morphology(labels, 1, 1.5, (1.0, 1.0, 1.0), mode="close", axis=0))
    assert labels[0, 20, 20] == 1 and np.count_nonzero(labels == 2) == 20
    stack.push(ops.morphology(labels, 1, 1.5, (1.0, 1.0, 1.0), mode="open", axis=0))
    assert labels[0, 2, 2] == 0 and labels[0, 15, 15] == 1
    stack.undo(labels)
    stack.undo(labels)
    assert np.array_equal(labels, before)
    with pytest.raises(ValueError, match="mode"):
        ops.morphology(labels, 1, 1.0, (1, 1, 1), mode="blur")


def test_remove_small_islands_by_size_and_keep_largest():
    labels = np.zeros((6, 30, 30), np.uint8)
    labels[1:5, 5:15, 5:15] = 1  # 400 voxels
    labels[2, 20:22, 20:22] = 1  # 4 voxels
    labels[3, 25, 25] = 1  # 1 voxel
    labels[0, 0, 0] = 2
    assert island_sizes(labels, 1) == [400, 4, 1]
    before = labels.copy()
    edit = remove_small_islands(labels, 1, (2.0, 1.0, 1.0), min_size_mm3=5.0)  # 4 voxels = 8 mm3 stay
    assert island_sizes(labels, 1) == [400, 4] and labels[0, 0, 0] == 2
    remove_small_islands(labels, 1, (2.0, 1.0, 1.0), keep_largest=1)
    assert island_sizes(labels, 1) == [400]
    labels[:] = before
    stack = UndoStack()
    stack.push(remove_small_islands(labels, 1, (1, 1, 1), keep_largest=1))
    stack.undo(labels)
    assert np.array_equal(labels, before) and edit is not None
    with pytest.raises(ValueError, match="exactly one"):
        remove_small_islands(labels, 1, (1, 1, 1))
