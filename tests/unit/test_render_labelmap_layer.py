"""The label-map layer on a SliceView: colours where labels are, nothing elsewhere, opacity, badge, planes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from workstation.model.labelmap import Algorithm, Code, LabelMap, Segment
from workstation.model.volume import Window
from workstation.render.offscreen import capture
from workstation.render.slice_view import Orientation

from ._render_phantoms import blank, rotation_z

TISSUE = Code("85756007", "SCT", "Tissue")
LESION = Code("52988006", "SCT", "Lesion")


def box_labelmap(volume, algorithm=Algorithm("test-model", "2.1")) -> LabelMap:
    labels = np.zeros(volume.shape, np.uint8)
    labels[10:30, 20:40, 10:30] = 1  # [k, j, i]
    labels[10:30, 45:55, 40:50] = 2
    segs = (Segment(1, "Red", (255, 0, 0), TISSUE, LESION, algorithm),
            Segment(2, "Green", (0, 255, 0), TISSUE, LESION, algorithm))
    return LabelMap.on_grid_of(volume, labels, segs)


def _expected_mask(sv, rw, lm, value) -> np.ndarray:
    """Which display pixels lie over voxels of ``value`` on the current plane (pixel centres)."""
    w, h = rw.GetSize()
    p0 = sv.display_to_lps(0.5, 0.5)
    dx, dy = sv.display_to_lps(1.5, 0.5) - p0, sv.display_to_lps(0.5, 1.5) - p0
    ys, xs = np.mgrid[0:h, 0:w]
    lps = p0 + xs.reshape(-1, 1) * dx + ys.reshape(-1, 1) * dy
    ijk = np.rint(sv.volume.lps_to_index(lps)).astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.array(sv.volume.shape[::-1])), axis=1)
    hit = np.zeros(len(ijk), bool)
    i, j, k = ijk[inside].T
    hit[inside] = lm.labels[k, j, i] == value
    return hit.reshape(h, w)[::-1]  # captures are top row first


@pytest.mark.parametrize("orientation", [Orientation.AXIAL, Orientation.CORONAL])
def test_overlay_colours_only_labelled_pixels(view, orientation):
    sv, rw = view
    vol = blank(rotation=rotation_z(20))
    sv.set_volume(vol)
    sv.set_orientation(orientation)
    sv.set_window(Window(0, 400))
    lm = box_labelmap(vol)
    sv.set_position_mm(vol.index_to_lps(np.array([25.0, 30.0, 20.0])))
    sv.set_labelmap(lm, opacity=1.0)
    sv.labels.set_visible(False)
    off = capture(rw).astype(int)
    sv.labels.set_visible(True)
    on = capture(rw).astype(int)
    changed = np.any(np.abs(on - off) > 10, axis=-1)
    red = _expected_mask(sv, rw, lm, 1)
    assert red.sum() > 100
    inside = changed[red].mean()
    labelled = red | _expected_mask(sv, rw, lm, 2)
    grown = labelled.copy()
    for axis in (0, 1):
        for d in (-1, 1):
            grown |= np.roll(labelled, d, axis)
    assert inside > 0.95
    badge = np.zeros_like(changed)  # the AI badge: right-aligned under the top-right corner text
    badge[50:85] = True
    assert not changed[~grown & ~badge].any()  # nothing changes off the labels (one-pixel edge tolerance)
    assert changed[badge & ~grown].any()  # ... and the badge is there
    r, g, b = on[red].mean(axis=0)
    assert r > 200 and g < 40 and b < 40  # the segment's colour, opaque


def test_opacity_blends_and_badge_names_the_model(view):
    sv, rw = view
    vol = blank()
    sv.set_volume(vol)
    sv.set_window(Window(0, 400))
    lm = box_labelmap(vol)
    sv.set_position_mm(vol.index_to_lps(np.array([20.0, 30.0, 20.0])))
    layer = sv.set_labelmap(lm, opacity=0.5)
    img = capture(rw).astype(int)
    red = _expected_mask(sv, rw, lm, 1)
    r, g, b = img[red].mean(axis=0)
    assert 100 < r < 160 and g < 20  # half red on black
    assert layer.badge_text == "AI-generated: test-model 2.1"
    layer.set_visible(False)
    assert layer.badge_text == ""


def test_labels_leave_when_another_series_is_shown(view):
    sv, _ = view
    vol = blank()
    sv.set_volume(vol)
    sv.set_labelmap(box_labelmap(vol))
    assert sv.labels.visible
    sv.set_volume(blank(shape=(20, 64, 64)))
    assert sv.labels.labelmap is None and not sv.labels.visible


def test_hand_drawn_map_has_no_ai_badge(view):
    sv, _ = view
    vol = blank()
    sv.set_volume(vol)
    layer = sv.set_labelmap(box_labelmap(vol, algorithm=None))
    assert layer.visible and layer.badge_text == ""


# -- detections, heatmaps, 3D surfaces ---------------------------------------------------------------------
def _box_finding(lo, hi, kind=None):
    from workstation.model.finding import Finding, FindingKind, Provenance

    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return Finding(kind or FindingKind.BOX, "Nodule", 0.83, tuple((lo + hi) / 2), tuple(lo), tuple(hi),
                   Provenance("test-detector", "0.3.1"))


def test_box_section_on_standard_and_oblique_planes():
    from workstation.render.detections_layer import box_section

    lo, hi = np.array([0.0, 10.0, 20.0]), np.array([8.0, 14.0, 30.0])
    square = box_section(lo, hi, (5.0, 0.0, 25.0), (0.0, 0.0, 1.0), 0.5)
    assert square.shape == (4, 3) and np.allclose(square[:, 2], 25.0)
    assert np.allclose(square[:, :2].min(axis=0), lo[:2]) and np.allclose(square[:, :2].max(axis=0), hi[:2])
    assert box_section(lo, hi, (0.0, 0.0, 30.4), (0.0, 0.0, 1.0), 0.5) is not None  # within half a slice
    assert box_section(lo, hi, (0.0, 0.0, 31.0), (0.0, 0.0, 1.0), 0.5) is None
    n = np.array([1.0, 1.0, 1.0]) / np.sqrt(3)
    poly = box_section(lo, hi, (lo + hi) / 2, n, 0.5)
    assert len(poly) == 6  # a cube cut through its centre along a diagonal normal: a hexagon
    assert np.allclose((poly - (lo + hi) / 2) @ n, 0.0)
    assert np.all(poly >= lo - 1e-9) and np.all(poly <= hi + 1e-9)


def test_detection_boxes_drawn_where_the_plane_cuts_them(view):
    from workstation.render.detections_layer import DetectionsLayer, Drawn

    sv, rw = view
    vol = blank(rotation=rotation_z(20))
    sv.set_volume(vol)
    # the patient's axial plane across a grid turned 20 degrees (the box lies along the patient's axes,
    # the standard view along the grid's)
    sv.set_oblique(rotation_z(-20))
    sv.set_window(Window(0, 400))
    centre = vol.index_to_lps(np.array([30.0, 30.0, 20.0]))
    f = _box_finding(centre - (12.0, 8.0, 6.0), centre + (12.0, 8.0, 6.0))
    sv.set_position_mm(centre)
    off = capture(rw).astype(int)
    layer = DetectionsLayer(sv)
    layer.set_items([Drawn(f, (0.0, 1.0, 0.0), "Nodule 0.83")], "AI-generated: test-detector 0.3.1")
    on = capture(rw).astype(int)
    assert layer.shown == [f] and layer.badge_text == "AI-generated: test-detector 0.3.1"
    green = (on[..., 1] > 200) & (on[..., 0] < 80) & (on[..., 2] < 80)
    # the rectangle's corners on screen: green pixels run along its edges and nowhere else (label aside)
    xs, ys = zip(*(sv.lps_to_display(centre + (dx, dy, 0.0)) for dx in (-12, 12) for dy in (-8, 8)))
    h = on.shape[0]
    rows, cols = np.nonzero(green)
    y_img = h - 1 - rows
    assert len(rows) > 100
    near_edge = ((np.abs(cols - min(xs)) <= 2) | (np.abs(cols - max(xs)) <= 2)) & (y_img >= min(ys) - 2) & (y_img <= max(ys) + 2)
    near_edge |= ((np.abs(y_img - min(ys)) <= 2) | (np.abs(y_img - max(ys)) <= 2)) & (cols >= min(xs) - 2) & (cols <= max(xs) + 2)
    below_text = y_img <= max(ys) + 2  # the "Nodule 0.83" label sits on top of the box
    assert near_edge[below_text].mean() > 0.98 and (~below_text).sum() > 20
    for x in (min(xs), max(xs)):
        assert green[h - 1 - int(round((min(ys) + max(ys)) / 2)), int(round(x)) - 1:int(round(x)) + 2].any()
    sv.set_position_mm(centre + (0.0, 0.0, 10.0))  # above the box
    above = capture(rw).astype(int)
    assert layer.shown == [] and layer.badge_text == ""
    assert not np.any(np.abs(above - off) > 10)
    sv.set_position_mm(centre)
    layer.set_visible(False)
    assert not np.any(np.abs(capture(rw).astype(int) - off) > 10)


def test_heatmap_overlay_colours_only_hot_voxels(view):
    from workstation.model.heatmap import Heatmap
    from workstation.render.heatmap_layer import HeatmapLayer

    sv, rw = view
    vol = blank()
    sv.set_volume(vol)
    sv.set_window(Window(0, 400))
    values = np.zeros(vol.shape, np.float32)
    values[15:25, 20:40, 20:44] = 1.0
    heat = Heatmap.on_grid_of(vol, values, "Nodule", (255, 0, 0), "test-heatmap", "0.3.1")
    sv.set_position_mm(vol.index_to_lps(np.array([30.0, 30.0, 20.0])))
    layer = HeatmapLayer(sv.renderer)
    sv.add_layer(layer.slice)
    off = capture(rw).astype(int)
    layer.set_heatmap(heat)
    layer.set_opacity(1.0)
    on = capture(rw).astype(int)
    assert layer.badge_text == "AI-generated: test-heatmap 0.3.1 (Nodule heatmap)"
    mask = _expected_mask(sv, rw, SimpleNamespace(labels=(values > 0.5).astype(np.uint8)), 1)
    changed = np.any(np.abs(on - off) > 10, axis=-1)
    assert mask.sum() > 200 and changed[mask].mean() > 0.95
    grown = mask.copy()
    for _ in range(2):
        for axis in (0, 1):
            for d in (-1, 1):
                grown |= np.roll(grown, d, axis)
    off_badge = ~((np.arange(changed.shape[0]) >= 50) & (np.arange(changed.shape[0]) < 110))[:, None]  # 3rd row
    assert not changed[~grown & off_badge].any()
    assert on[mask].mean(axis=0)[0] > 200  # white-hot at 1.0
    layer.set_visible(False)
    assert not np.any(np.abs(capture(rw).astype(int) - off) > 10) and layer.badge_text == ""


def test_label_surfaces_in_3d_sit_on_the_labels_in_their_colours():
    from workstation.render import _vtk as vtk
    from workstation.render.offscreen import make_render_window
    from workstation.render.volume_view import VolumeView

    vol = blank(rotation=rotation_z(20))
    lm = box_labelmap(vol)
    rw = make_render_window((128, 128))
    ren = vtk.vtkRenderer()
    rw.AddRenderer(ren)
    vv = VolumeView(ren)
    vv.set_volume(vol)
    surfaces = vv.set_label_surfaces("test-model", lm)
    assert surfaces.labels_shown == (1, 2) and surfaces.visible
    poly = surfaces.polydata()
    from vtkmodules.util.numpy_support import vtk_to_numpy

    pts = vtk_to_numpy(poly.GetPoints().GetData()) / np.asarray(vol.spacing)  # grid mm -> index
    labels = vtk_to_numpy(poly.GetPointData().GetScalars())
    red = pts[labels == 1]
    assert np.allclose(red.min(axis=0), [9.5, 19.5, 9.5], atol=0.6) and np.allclose(red.max(axis=0), [29.5, 39.5, 29.5], atol=0.6)
    assert set(np.unique(labels).tolist()) == {1, 2}
    img = capture(rw).astype(int)
    assert ((img[..., 0] > 120) & (img[..., 1] < 60)).sum() > 30  # the red segment
    assert ((img[..., 1] > 120) & (img[..., 0] < 60)).sum() > 10  # the green one
    vv.set_label_surfaces("test-model", lm, visible=False)
    img = capture(rw).astype(int)
    assert not ((img[..., 0] > 120) & (img[..., 1] < 60) & (img[..., 2] < 60)).any()
    vv.set_label_surfaces("test-model", None)
    assert vv.label_surfaces == {}
    rw.Finalize()


# -- outline mode ------------------------------------------------------------------------------------------
def _eroded(mask: np.ndarray, pixels: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(pixels):
        for axis in (0, 1):
            for d in (-1, 1):
                out &= np.roll(out, d, axis)
    return out


def test_boundary_labels_keep_the_in_plane_rim_of_each_label():
    from workstation.render.labelmap_layer import boundary_labels, nearest_grid_axis

    labels = np.zeros((5, 8, 8), np.uint8)
    labels[1:4, 2:7, 1:6] = 1
    labels[1:4, 2:7, 6] = 2  # touching label 1 along its right side
    rim = boundary_labels(labels, axis=0)
    one = rim[2] == 1
    assert one[2, 1:6].all() and one[6, 1:6].all() and one[2:7, 1].all() and one[2:7, 5].all()
    assert not one[3:6, 2:5].any()  # the inside of the square is cleared in every axial plane
    assert (rim[2, 2:7, 6] == 2).all()  # a one-voxel-wide label is all rim
    assert (rim[1] == labels[1] * (rim[1] > 0)).all()  # rim values are the labels themselves
    assert boundary_labels(labels, axis=1)[1:4, 4, 3].tolist() == [1, 0, 1]  # coronal planes: rim along k
    assert nearest_grid_axis(np.eye(4), (0.0, 0.0, -1.0)) == 0 and nearest_grid_axis(np.eye(4), (0.1, 0.9, 0.0)) == 1
    with pytest.raises(ValueError, match="3D array"):
        boundary_labels(labels[0], axis=0)


@pytest.mark.parametrize("orientation", [Orientation.AXIAL, Orientation.CORONAL])
def test_outline_mode_shows_the_image_inside_and_the_colour_on_the_rim(view, orientation):
    sv, rw = view
    vol = blank()
    vol = type(vol)(np.zeros(vol.shape, np.int16), vol.affine, vol.info)  # mid grey in a 0/400 window
    sv.set_volume(vol)
    sv.set_orientation(orientation)
    sv.set_window(Window(0, 400))
    lm = box_labelmap(vol)
    sv.set_position_mm(vol.index_to_lps(np.array([25.0, 30.0, 20.0])))
    bare = capture(rw).astype(int)
    layer = sv.set_labelmap(lm, opacity=1.0)
    layer.set_outline(True)
    assert layer.outline
    img = capture(rw).astype(int)
    red = _expected_mask(sv, rw, lm, 1)
    assert red.sum() > 400
    interior = _eroded(red, 8)  # more than one voxel in from the edge
    rim = red & ~_eroded(red, 1)
    assert interior.sum() > 100 and rim.sum() > 50
    assert np.abs(img[interior] - bare[interior]).max() <= 10  # the image, untouched
    assert 100 < bare[interior].mean() < 160  # ... which is the mid-grey phantom, not black
    r, g, b = img[rim].mean(axis=0)
    assert r > 200 and g < 40 and b < 40  # the label colour on the boundary
    layer.set_outline(False)
    filled = capture(rw).astype(int)
    assert filled[interior][:, 0].min() > 200 and filled[interior][:, 1].max() < 40  # filled again


def test_an_edit_brings_the_outline_up_to_date_around_its_box_only():
    from workstation.render.labelmap_layer import boundary_labels, update_boundary

    rng = np.random.default_rng(7)
    for _ in range(200):  # random maps, axes and edit boxes, edges of the grid included
        shape = tuple(int(n) for n in rng.integers(3, 12, 3))
        labels = ((rng.random(shape) < 0.4) * rng.integers(1, 3, shape)).astype(np.uint8)
        axis = int(rng.integers(0, 3))
        rim = boundary_labels(labels, axis).copy()
        box = []
        for n in shape:
            lo = int(rng.integers(0, n))
            box += [lo, int(rng.integers(lo + 1, n + 1))]
        edit = tuple(slice(box[2 * a], box[2 * a + 1]) for a in range(3))
        labels[edit] = rng.integers(0, 3, labels[edit].shape)
        update_boundary(rim, labels, axis, box)
        assert np.array_equal(rim, boundary_labels(labels, axis))


def test_outline_layer_follows_an_edit_with_its_box(view):
    sv, rw = view
    vol = blank()
    vol = type(vol)(np.zeros(vol.shape, np.int16), vol.affine, vol.info)
    sv.set_volume(vol)
    sv.set_window(Window(0, 400))
    lm = box_labelmap(vol)
    sv.set_position_mm(vol.index_to_lps(np.array([25.0, 30.0, 20.0])))
    layer = sv.set_labelmap(lm, opacity=1.0)
    layer.set_outline(True)
    capture(rw)
    k = int(np.rint(vol.lps_to_index(sv.position_mm)[2]))
    lm.labels[k, 2:8, 2:8] = 1  # a new square far from the box, on the plane shown
    layer.modified((k, k + 1, 2, 8, 2, 8))
    img = capture(rw).astype(int)
    shown = layer._shown_image
    from workstation.render.bridge import vtk_to_numpy_image
    from workstation.render.labelmap_layer import boundary_labels

    assert np.array_equal(vtk_to_numpy_image(shown), boundary_labels(lm.labels, 0))
    ring = sv.lps_to_display(vol.index_to_lps(np.array([2.0, 5.0, k])))  # on the new square's edge
    centre = sv.lps_to_display(vol.index_to_lps(np.array([4.5, 4.5, k])))  # inside it
    h = img.shape[0]
    at = lambda xy: img[h - 1 - int(xy[1]), int(xy[0])]  # noqa: E731
    assert at(ring)[0] > 200 and at(ring)[1] < 40
    assert abs(at(centre)[0] - at(centre)[1]) < 10  # grey: the image shows inside
