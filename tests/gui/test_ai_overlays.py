"""AI overlays beyond the filled label map, in the real window: outlined labels, detection boxes and heatmap
surfaces in the 3D pane (each following the model's Show toggle), and the ai_threads setting reaching a run."""

from __future__ import annotations

import numpy as np
import pytest

from tests.gui.conftest import open_first_series
from tests.gui.test_ai_display import (
    BADGE_ROWS, CT_GRID, PLUGIN, _run, capture, changed_pixels, hand_made_result, label_mask_on_screen,
)
from workstation.ai.runner import RunOptions
from workstation.model.finding import FindingKind


def test_outline_action_draws_only_the_rim_of_each_label(main_window):
    vp = open_first_series(main_window)
    result = hand_made_result(vp.volume)
    main_window.ai.show_result(PLUGIN, result, vp.volume)
    vp.view.set_position_mm(result.findings[0].centroid_mm)
    main_window.ai.panel.opacity.setValue(100)
    filled = capture(vp)
    main_window.ai.set_visible(PLUGIN.id, False)
    bare = capture(vp)
    main_window.ai.set_visible(PLUGIN.id, True)
    action = main_window.ai.outline_actions[PLUGIN.id]
    assert action in main_window.ai.menu.actions() and action.isCheckable() and not action.isChecked()
    action.trigger()
    assert main_window.ai.outlined[PLUGIN.id] and vp.view.labels.outline
    outlined = capture(vp)
    red = label_mask_on_screen(vp, result.labelmap, [1])
    red[:BADGE_ROWS] = False
    interior = red.copy()
    for _ in range(6):  # well inside: more than a voxel from the label's edge at this zoom
        for axis in (0, 1):
            for d in (-1, 1):
                interior &= np.roll(interior, d, axis)
    rim = red & ~np.roll(red, 1, 1)  # the label's left edge on screen
    assert interior.sum() > 200 and rim.sum() > 10
    assert not changed_pixels(outlined, bare)[interior].any()  # the image shows through inside
    assert changed_pixels(filled, bare)[interior].all()  # (where the filled label covered it)
    assert outlined[rim][:, 0].mean() > 200 and outlined[rim][:, 1].mean() < 60  # the boundary in the label colour
    action.trigger()
    assert not vp.view.labels.outline and changed_pixels(capture(vp), bare)[interior].all()


def _display_xy(renderer, lps):
    renderer.SetWorldPoint(*(float(v) for v in lps), 1.0)
    renderer.WorldToDisplay()
    return renderer.GetDisplayPoint()[:2]


def test_detection_boxes_show_in_3d_with_the_model_toggle(main_window, tmp_path):
    from tests.synthetic_plugins import write_plugin
    from workstation.render.ai_3d import box_corners
    from workstation.ui.viewer_area import Layout

    det = write_plugin(tmp_path, "test-detector", "detections", **CT_GRID)
    open_first_series(main_window)
    shown = _run(main_window, det)
    main_window.set_layout(Layout.MPR)
    pane = main_window.viewer.mpr.volume_pane
    layer = pane.view.detections
    boxes = [f for f in main_window.ai.panel.findings if f.kind is FindingKind.BOX]
    assert layer is not None and layer.visible and [d.finding for d in layer.items] == boxes
    assert layer.boxes.GetNumberOfCells() == 12 * len(boxes)
    pane.view.rotate(25.0, 15.0)
    on = pane.capture().astype(int)
    yellow = (on[..., 0] > 200) & (on[..., 1] > 160) & (on[..., 1] < 230) & (on[..., 2] < 60)  # (255, 200, 0)
    assert yellow.sum() > 30
    h = on.shape[0]
    corners = np.array([_display_xy(pane.view.renderer, c) for f in boxes
                        for c in box_corners(f.bbox_min_mm, f.bbox_max_mm)])
    rows, cols = np.nonzero(yellow)
    assert np.all((cols >= corners[:, 0].min() - 3) & (cols <= corners[:, 0].max() + 3))
    assert np.all((h - 1 - rows >= corners[:, 1].min() - 3) & (h - 1 - rows <= corners[:, 1].max() + 3))
    shown.toggle.setChecked(False)  # the model's one toggle hides its boxes in 3D too
    assert not layer.visible and layer.items == []
    off = pane.capture().astype(int)
    assert not ((off[..., 0] > 200) & (off[..., 1] > 160) & (off[..., 1] < 230) & (off[..., 2] < 60)).any()


def test_ai_threads_setting_reaches_the_run_options(main_window_factory, settings, monkeypatch):
    monkeypatch.delenv("WORKSTATION_AI_THREADS", raising=False)
    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / "workstation.toml").write_text("ai_threads = 2\n")
    window = main_window_factory()
    assert window.ai.threads == 2
    options = window.ai.run_options()
    assert isinstance(options, RunOptions) and options.threads == 2
    monkeypatch.setenv("WORKSTATION_AI_THREADS", "5")  # the environment still wins, as before
    assert window.ai.run_options().threads == 5
    window.ai.options = RunOptions(threads=1, search_path=())  # options given outright are used as they are
    assert window.ai.run_options().threads == 1
    with pytest.raises(ValueError, match="AI threads must be 0"):
        window.ai.configure(threads=-1)


def test_heatmap_iso_surface_in_3d_at_the_manifest_threshold(main_window, tmp_path):
    from tests.synthetic_plugins import write_plugin
    from workstation.ui.viewer_area import Layout

    heat = write_plugin(tmp_path, "test-heatmap", "heatmap", modalities=("CT",), spacing=(6.0, 6.0, 6.0),
                        labels=(("Bone", (255, 0, 0)),))
    open_first_series(main_window)
    shown = _run(main_window, heat)
    (hm,) = shown.result.heatmaps
    main_window.set_layout(Layout.MPR)
    surface = main_window.viewer.mpr.volume_pane.view.heatmap_surface
    assert surface is not None and surface.heatmap is hm and surface.visible
    assert surface.threshold == pytest.approx(heat.manifest.output.threshold)
    pts = surface.polydata().GetNumberOfPoints()
    assert pts > 100  # the bone-probability surface exists
    shown.toggle.setChecked(False)
    assert not surface.visible and surface.heatmap is None
