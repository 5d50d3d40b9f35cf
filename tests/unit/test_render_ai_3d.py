"""AI results in the 3D view: detection boxes as wireframes, points as spheres, a heatmap iso-surface."""

from __future__ import annotations

import numpy as np
import pytest

from workstation.model.finding import Finding, FindingKind, Provenance
from workstation.model.heatmap import Heatmap
from workstation.render import _vtk as vtk
from workstation.render.detections_layer import Drawn
from workstation.render.offscreen import capture, make_render_window
from workstation.render.volume_view import VolumeView

from ._render_phantoms import blank, rotation_z

SIZE = (200, 200)


@pytest.fixture
def volume_view():
    rw = make_render_window(SIZE)
    ren = vtk.vtkRenderer()
    rw.AddRenderer(ren)
    vv = VolumeView(ren)
    vol = blank(rotation=rotation_z(20))
    vv.set_volume(vol)
    yield vv, rw, vol
    rw.Finalize()


def _finding(kind, lo, hi, label="Nodule"):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return Finding(kind, label, 0.9, tuple((lo + hi) / 2), tuple(lo), tuple(hi), Provenance("test-detector", "0.3.1"))


def _display(renderer, lps) -> tuple[float, float]:
    """Display pixel (x, y from the bottom left) of an LPS point in the current camera."""
    renderer.SetWorldPoint(*(float(v) for v in lps), 1.0)
    renderer.WorldToDisplay()
    x, y, _ = renderer.GetDisplayPoint()
    return x, y


def _near(mask: np.ndarray, xy, radius: int = 3) -> bool:
    h = mask.shape[0]
    x, y = int(round(xy[0])), h - 1 - int(round(xy[1]))
    return bool(mask[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1].any())


def test_detection_boxes_are_wireframes_at_their_corners_and_hide(volume_view):
    from workstation.render.ai_3d import box_corners

    vv, rw, vol = volume_view
    centre = vol.center_lps()
    box = _finding(FindingKind.BOX, centre - (15.0, 10.0, 12.0), centre + (10.0, 10.0, 18.0))
    point = _finding(FindingKind.POINT, centre + (25.0, 0.0, -20.0), centre + (25.0, 0.0, -20.0), "Spot")
    vv.rotate(30.0, 20.0)  # an oblique look: all twelve edges apart on screen
    before = capture(rw).astype(int)
    layer = vv.set_detections([Drawn(box, (0.0, 1.0, 0.0), "Nodule 0.90"), Drawn(point, (0.0, 0.4, 1.0), "Spot")])
    assert layer.visible and layer.boxes.GetNumberOfCells() == 12 and layer.spheres.GetNumberOfCells() > 50
    img = capture(rw).astype(int)
    green = (img[..., 1] > 200) & (img[..., 0] < 60) & (img[..., 2] < 60)
    blue = (img[..., 2] > 200) & (img[..., 0] < 60) & (img[..., 1] > 70) & (img[..., 1] < 140)
    corners = [_display(vv.renderer, c) for c in box_corners(box.bbox_min_mm, box.bbox_max_mm)]
    assert all(_near(green, c) for c in corners)  # every corner of the box has its colour beside it
    xs, ys = zip(*corners)
    h = img.shape[0]
    rows, cols = np.nonzero(green)
    inside_hull = (cols >= min(xs) - 3) & (cols <= max(xs) + 3) & (h - 1 - rows >= min(ys) - 3) & (h - 1 - rows <= max(ys) + 3)
    assert green.sum() > 100 and inside_hull.all()  # lines only, and only within the box's screen extent
    mid = np.mean(corners, axis=0)
    assert not green[h - 1 - int(mid[1]) - 2:h - 1 - int(mid[1]) + 3, int(mid[0]) - 2:int(mid[0]) + 3].all()  # a wireframe
    assert _near(blue, _display(vv.renderer, point.centroid_mm), 2)  # the point's sphere
    layer.set_visible(False)
    assert np.abs(capture(rw).astype(int) - before).max() <= 10  # toggled off: the plain rendering
    layer.set_visible(True)
    vv.set_detections([])
    assert not layer.visible and np.abs(capture(rw).astype(int) - before).max() <= 10


def test_heatmap_iso_surface_at_the_threshold(volume_view):
    vv, rw, vol = volume_view
    values = np.zeros(vol.shape, np.float32)
    values[10:30, 20:40, 20:44] = 0.8  # [k, j, i]
    values[14:26, 26:34, 28:36] = 1.0
    heat = Heatmap.on_grid_of(vol, values, "Nodule", (255, 40, 0), "test-heatmap", "0.3.1")
    before = capture(rw).astype(int)
    surface = vv.set_heatmap_surface(heat, threshold=0.5)
    assert surface.visible
    from vtkmodules.util.numpy_support import vtk_to_numpy

    pts = vtk_to_numpy(surface.polydata().GetPoints().GetData()) / np.asarray(vol.spacing)  # grid mm -> index
    assert np.allclose(pts.min(axis=0), [19.5, 19.5, 9.5], atol=0.2)
    assert np.allclose(pts.max(axis=0), [43.5, 39.5, 29.5], atol=0.2)
    vv.set_heatmap_surface(heat, threshold=0.9)  # a higher threshold: the inner core only
    pts = vtk_to_numpy(surface.polydata().GetPoints().GetData()) / np.asarray(vol.spacing)
    assert np.all(pts.min(axis=0) > [27.0, 25.0, 13.0]) and np.all(pts.max(axis=0) < [36.0, 34.0, 26.0])
    img = capture(rw).astype(int)
    centre = _display(vv.renderer, vol.index_to_lps(np.array([31.5, 29.5, 19.5])))
    h = img.shape[0]
    r, g, b = img[h - 1 - int(round(centre[1])), int(round(centre[0]))]
    assert r > 60 and r > 2 * g and r > 2 * b  # semi-transparent red-orange over the dark volume
    assert r < 250  # ... not opaque
    with pytest.raises(ValueError, match="within 0..1"):
        vv.set_heatmap_surface(heat, threshold=1.5)
    vv.set_heatmap_surface(None)
    assert not surface.visible and np.abs(capture(rw).astype(int) - before).max() <= 10
