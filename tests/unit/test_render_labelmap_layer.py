"""The label-map layer on a SliceView: colours where labels are, nothing elsewhere, opacity, badge, planes."""

from __future__ import annotations

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
    below_badge = np.arange(changed.shape[0])[:, None] > 30  # the AI badge is drawn along the top
    assert not changed[~grown & below_badge].any()  # nothing changes off the labels (one-pixel edge tolerance)
    assert changed[:30].any()  # ... and the badge is there
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
