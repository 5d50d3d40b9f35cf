"""AI results on screen: the AI menu, label-map overlays in the 2D views, the findings dock, decisions.

Cheap tests use a label map made by hand on the LIDC chest CT (no model needed); one test runs the real
brainchop model on the MNI "ch2" template (converted to an MR DICOM series) end to end through the menu.
"""

from __future__ import annotations

import getpass
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from tests.gui.conftest import open_first_series
from tests.model_files import shared_model
from workstation.ai.registry import BUILTIN_PLUGINS, Plugin
from workstation.ai.manifest import load_manifest
from workstation.ai.runner import AiResult, RunOptions
from workstation.model.finding import Finding, FindingKind, Provenance, Status
from workstation.model.labelmap import Algorithm, Code, LabelMap, Segment

CH2 = Path("/usr/share/mricron/templates/ch2.nii.gz")
PLUGIN = Plugin(load_manifest(BUILTIN_PLUGINS / "brainchop-tissue" / "plugin.toml"),
                BUILTIN_PLUGINS / "brainchop-tissue", "folder")
BADGE_ROWS = 90  # the AI-generated badge is drawn along the top of a view (at 93% of its height)


def hand_made_result(volume) -> AiResult:
    """A red box label on ``volume``'s grid and one finding at its centre, as a model would return them."""
    labels = np.zeros(volume.shape, np.uint8)
    k0, j0, i0 = (s // 2 for s in volume.shape)
    labels[k0 - 5:k0 + 5, j0 - 40:j0 + 40, i0 - 60:i0 + 20] = 1
    algo = Algorithm("test-model", "0.9")
    seg = Segment(1, "Box", (255, 0, 0), Code("85756007", "SCT", "Tissue"), Code("52988006", "SCT", "Lesion"), algo)
    lm = LabelMap.on_grid_of(volume, labels, (seg,))
    centre = volume.index_to_lps(np.array([i0 - 20.0, j0, k0 - 0.5]))
    lo = volume.index_to_lps(np.array([i0 - 60.0, j0 - 40.0, k0 - 5.0]))
    hi = volume.index_to_lps(np.array([i0 + 19.0, j0 + 39.0, k0 + 4.0]))
    finding = Finding(FindingKind.REGION, "Box", 0.87, tuple(centre), tuple(np.minimum(lo, hi)),
                      tuple(np.maximum(lo, hi)), Provenance("test-model", "0.9"),
                      volume_mm3=lm.volume_mm3(1), segment_number=1)
    return AiResult(lm, (finding,), "test-model", "0.9", ("CPUExecutionProvider",))


def capture(vp) -> np.ndarray:
    vp.render_now()
    return vp.capture().astype(int)


def changed_pixels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.any(np.abs(a[..., :3] - b[..., :3]) > 10, axis=-1)


def label_mask_on_screen(vp, labelmap, values) -> np.ndarray:
    """Capture-shaped mask (top row first) of display pixels over voxels with one of ``values``."""
    view = vp.view
    w, h = view.renderer.GetRenderWindow().GetSize()
    p0 = view.display_to_lps(0.5, 0.5)
    dx, dy = view.display_to_lps(1.5, 0.5) - p0, view.display_to_lps(0.5, 1.5) - p0
    ys, xs = np.mgrid[0:h, 0:w]
    ijk = np.rint(view.volume.lps_to_index(p0 + xs.reshape(-1, 1) * dx + ys.reshape(-1, 1) * dy)).astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.array(view.volume.shape[::-1])), axis=1)
    hit = np.zeros(len(ijk), bool)
    i, j, k = ijk[inside].T
    hit[inside] = np.isin(labelmap.labels[k, j, i], values)
    return hit.reshape(h, w)[::-1]


def dilate(mask: np.ndarray, n: int = 1) -> np.ndarray:
    out = mask.copy()
    for _ in range(n):
        grown = out.copy()
        for axis in (0, 1):
            for d in (-1, 1):
                grown |= np.roll(out, d, axis)
        out = grown
    return out


def assert_overlay_only_on_labels(off, on, expected, min_inside=0.9):
    changed = changed_pixels(off, on)
    assert changed.shape == expected.shape
    below = np.zeros_like(changed)
    below[BADGE_ROWS:] = True
    assert expected[below].sum() > 200, "the labels are not on screen"
    assert changed[expected & below].mean() > min_inside
    assert not changed[~dilate(expected) & below].any(), "pixels changed away from the labels"


def click_row(panel, row: int) -> None:
    table = panel.table
    rect = table.visualItemRect(table.item(row, 0))
    QTest.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())


def assert_centred_on(vp, xyz) -> None:
    """The view shows the slice of the grid nearest to ``xyz``, with the voxel there in its middle."""
    view = vp.view
    xyz = vp.volume.nearest_voxel_lps(xyz)
    assert abs((view.position_mm - xyz) @ view.normal) < 1e-6  # the plane passes through it
    k = vp.volume.lps_to_index(view.position_mm)[2]
    assert abs(k - round(k)) < 1e-6  # on a slice, not between two
    x0, y0, w, h = view._viewport()
    x, y = view.lps_to_display(xyz)
    assert abs(x - (x0 + w / 2)) < 1.0 and abs(y - (y0 + h / 2)) < 1.0  # in the middle of the view


# -- cheap: a hand-made label map on the LIDC CT ----------------------------------------------------------
def test_ai_menu_lists_the_discovered_plugins(main_window):
    titles = [a.text() for a in main_window.ai.menu.actions()]
    assert any("Brain tissue segmentation" in t and "1.0.0" in t for t in titles)
    assert "brainchop-tissue" in main_window.ai.run_actions


def test_overlay_panel_jump_and_decisions(main_window, qtbot):
    vp = open_first_series(main_window)
    volume = vp.volume
    result = hand_made_result(volume)
    main_window.ai.show_result(PLUGIN, result, volume)
    vp.view.set_position_mm(result.findings[0].centroid_mm)
    vp.refresh()
    main_window.ai.panel.opacity.setValue(100)
    on = capture(vp)
    assert vp.view.labels.badge_text == "AI-generated: test-model 0.9"
    toggle = main_window.ai.results[PLUGIN.id].toggle
    assert toggle.isChecked() and "Show Brain tissue segmentation" in toggle.text()
    toggle.setChecked(False)
    off = capture(vp)
    assert not vp.view.labels.visible and vp.view.labels.badge_text == ""
    assert_overlay_only_on_labels(off, on, label_mask_on_screen(vp, result.labelmap, [1]), min_inside=0.98)
    red = label_mask_on_screen(vp, result.labelmap, [1])
    red[:BADGE_ROWS] = False
    assert on[red][:, 0].mean() > 200 and on[red][:, 1].mean() < 40  # the segment's colour at full opacity

    panel = main_window.ai.panel
    assert main_window.ai.dock.isVisible() and panel.table.rowCount() == 1
    assert panel.table.item(0, 0).text() == "Box" and panel.table.item(0, 1).text() == "0.87"
    assert panel.table.item(0, 2).text().endswith("mL") and "AI" in panel.table.item(0, 5).text()
    assert "AI-generated" in panel.header.text()
    vp.view.set_position_mm(volume.center_lps() + np.array([30.0, 30.0, 40.0]))
    vp.view.pan(50, -20)
    click_row(panel, 0)
    assert_centred_on(vp, result.findings[0].centroid_mm)

    panel.accept_button.click()
    assert panel.findings[0].status is Status.ACCEPTED and panel.findings[0].decision.by == getpass.getuser()
    assert panel.table.item(0, 4).text() == "Accepted"
    assert getpass.getuser() in panel.table.item(0, 4).toolTip()
    panel.reject_button.click()
    assert panel.findings[0].status is Status.REJECTED and panel.table.item(0, 4).text() == "Rejected"


def test_overlay_follows_into_mpr(main_window):
    vp = open_first_series(main_window)
    result = hand_made_result(vp.volume)
    main_window.ai.show_result(PLUGIN, result, vp.volume)
    from workstation.ui.viewer_area import Layout

    main_window.set_layout(Layout.MPR)
    for pane in main_window.viewer.mpr.slice_viewports():
        assert pane.view.labels is not None and pane.view.labels.labelmap is result.labelmap
        assert pane.view.labels.visible
    main_window.ai.panel.opacity.setValue(30)
    assert all(p.view.labels.opacity == pytest.approx(0.3) for p in main_window.viewer.mpr.slice_viewports())
    click_row(main_window.ai.panel, 0)
    for pane in main_window.viewer.mpr.slice_viewports():
        assert_centred_on(pane, result.findings[0].centroid_mm)


def test_plugin_on_the_wrong_modality_says_so(main_window):
    open_first_series(main_window)
    main_window.ai.run_actions["brainchop-tissue"].trigger()
    assert "made for MR" in main_window.statusBar().currentMessage()
    assert main_window.ai.results == {} and not main_window.ai.progress.isVisible()


def test_missing_model_file_says_where_it_looked(main_window, tmp_path):
    open_first_series(main_window)
    main_window.ai.options = RunOptions(search_path=(tmp_path,), check_modality=False)
    main_window.ai.run_actions["brainchop-tissue"].trigger()
    message = main_window.statusBar().currentMessage()
    assert "model file 'model.onnx' not found" in message and str(tmp_path) in message
    assert main_window.ai.results == {}


def test_run_without_a_series_asks_for_one(main_window):
    assert main_window.ai.run(PLUGIN) is None
    assert "open a series first" in main_window.statusBar().currentMessage()


# -- real: brainchop on the ch2 template ------------------------------------------------------------------
@pytest.fixture(scope="session")
def ch2_volume(tmp_path_factory):
    if not CH2.is_file():
        pytest.skip(f"{CH2} is missing (Debian package mricron-data)")
    from workstation.dicom.series import examine, load_volume
    from workstation.dicom.volume_import import volume_file_to_dicom

    out = tmp_path_factory.mktemp("ch2") / "dicom"
    volume_file_to_dicom(CH2, out, patient_name="Template^Ch2", patient_id="CH2")
    plans, _ = examine([out])
    return load_volume(plans[0])


def test_brainchop_run_from_the_menu(main_window, ch2_volume):
    shared_model("brainchop-tissue")
    assert ch2_volume.info.modality == "MR"
    vp = main_window.viewer.active_slice_viewport()
    vp.set_volume(ch2_volume)
    main_window.ai.options = RunOptions(threads=2)
    main_window.ai.run_actions["brainchop-tissue"].trigger()  # synchronous in tests
    shown = main_window.ai.results["brainchop-tissue"]
    lm = shown.result.labelmap
    assert lm.is_on_grid_of(ch2_volume) and set(lm.counts()) == {1, 2} and min(lm.counts().values()) > 10000
    assert "done" in main_window.statusBar().currentMessage()
    assert vp.view.labels.labelmap is lm
    assert vp.view.labels.badge_text == "AI-generated: brainchop-tissue 1.0.0"

    panel = main_window.ai.panel
    assert [panel.table.item(r, 0).text() for r in range(panel.table.rowCount())] == ["White matter", "Grey matter"]
    assert all("Brain tissue segmentation (brainchop) 1.0.0" in panel.table.item(r, 5).text() for r in range(2))
    click_row(panel, 1)
    grey = panel.findings[1]
    assert_centred_on(vp, grey.centroid_mm)
    panel.opacity.setValue(100)
    on = capture(vp)
    shown.toggle.setChecked(False)
    off = capture(vp)
    changed = changed_pixels(off, on)
    changed[:BADGE_ROWS] = False
    # every grey-matter pixel takes its colour (white matter, drawn white over bright white matter, may not)
    grey_only = label_mask_on_screen(vp, lm, [2]) & ~dilate(label_mask_on_screen(vp, lm, [1]))
    grey_only[:BADGE_ROWS] = False
    assert grey_only.sum() > 500 and changed[grey_only].mean() > 0.9
    assert not changed[~dilate(label_mask_on_screen(vp, lm, [1, 2]))].any()  # and nothing off the brain
    panel.select(0)
    panel.accept_button.click()
    panel.select(1)
    panel.reject_button.click()
    assert [f.status for f in panel.findings] == [Status.ACCEPTED, Status.REJECTED]
    assert all(f.decision.by == getpass.getuser() for f in panel.findings)
    assert [panel.table.item(r, 4).text() for r in range(2)] == ["Accepted", "Rejected"]


# -- detections, heatmaps, classification, edits, 3D, auto-run ----------------------------------------------
LIDC_FILES = "ct-chest-lidc-0001"
CT_GRID = dict(modalities=("CT",), size=(48, 48, 48), spacing=(8.0, 8.0, 8.0))


def _lidc_sources():
    from tests.shared_data import shared_case

    return sorted((shared_case(LIDC_FILES) / "dicom").glob("*.dcm"))


def _run(window, plugin):
    window.ai.options = RunOptions(threads=1, search_path=())
    handle = window.ai.run(plugin)  # synchronous in tests
    assert handle is not None and handle.error is None, handle and handle.error
    return window.ai.results[plugin.id]


def test_detections_boxes_panel_jump_decisions_edit_delete_and_sr(main_window, tmp_path):
    from tests.synthetic_plugins import write_plugin
    from workstation.dicom.sr import findings_to_sr, sr_to_findings

    det = write_plugin(tmp_path, "test-detector", "detections", **CT_GRID)
    vp = open_first_series(main_window)
    shown = _run(main_window, det)
    panel = main_window.ai.panel
    rows = [(panel.table.item(r, 0).text(), panel.table.item(r, 1).text()) for r in range(panel.table.rowCount())]
    assert rows == [("Lesion", "0.90"), ("Lesion", "0.60"), ("Mass", "0.70")]  # NMS and threshold applied
    assert panel.table.item(0, 2).text().endswith(" mm") and panel.table.item(0, 3).text().isdigit()
    assert "Test detections 0.3.1 (AI)" in panel.table.item(0, 5).text() and "AI-generated" in panel.header.text()
    assert shown.toggle.isChecked() and shown.labelmap is None

    vp.view.set_position_mm(vp.volume.center_lps() + np.array([40.0, 40.0, 60.0]))
    vp.view.pan(30, 30)
    click_row(panel, 0)
    box = panel.findings[0]
    assert_centred_on(vp, box.centroid_mm)
    layer = main_window.ai.detections_layer(vp.view)
    on = capture(vp)
    assert box in layer.shown and layer.badge_text == "AI-generated: Test detections 0.3.1"
    yellow = (on[..., 0] > 200) & (on[..., 1] > 160) & (on[..., 1] < 230) & (on[..., 2] < 60)  # (255, 200, 0)
    assert yellow.sum() > 100  # the box outline (and its label) in the label's colour

    panel.select(0)
    panel.accept_button.click()
    panel.select(1)
    panel.reject_button.click()
    assert [f.status for f in panel.findings[:2]] == [Status.ACCEPTED, Status.REJECTED]
    capture(vp)
    assert layer.items[1].colour == (0.55, 0.55, 0.55)  # a rejected box is drawn grey

    panel.select(2)
    dialog = panel.edit_selected()
    dialog.label.setCurrentText("Nodule")
    lo = np.array(panel.findings[2].bbox_min_mm)
    dialog.corners[0].setValue(lo[0] + 5.0)
    dialog.buttons.button(dialog.buttons.StandardButton.Ok).click()
    edited = panel.findings[2]
    assert edited.status is Status.EDITED and edited.label == "Nodule" and edited.decision.by == getpass.getuser()
    assert edited.bbox_min_mm[0] == pytest.approx(round(lo[0] + 5.0, 1)) and edited.uid == shown.result.findings[2].uid
    assert panel.table.item(2, 0).text() == "Nodule" and panel.table.item(2, 4).text() == "Edited"
    assert any(d.finding is edited and d.text == "Nodule 0.70 [edited]" for d in layer.items)

    panel.select(1)
    panel.delete_button.click()
    assert [f.label for f in panel.findings] == ["Lesion", "Nodule"] and panel.table.rowCount() == 2
    assert len(panel.removed) == 1 and panel.removed[0].status is Status.REJECTED
    capture(vp)
    assert all(d.finding.uid != panel.removed[0].uid for d in layer.items)

    shown.toggle.setChecked(False)
    capture(vp)
    assert layer.shown == [] and layer.badge_text == ""

    report = main_window.ai.report_findings()
    ds = findings_to_sr(report, [], _lidc_sources(), observer=getpass.getuser())
    back = {f.uid: f for f in sr_to_findings(ds)[0]}
    assert {f.status for f in back.values()} == {Status.ACCEPTED, Status.EDITED, Status.REJECTED}
    again = back[edited.uid]
    assert again.label == "Nodule" and again.decision.by == getpass.getuser() and again.kind.value == "box"
    assert abs((again.decision.at - edited.decision.at).total_seconds()) < 1e-3
    assert np.allclose(again.bbox_min_mm, edited.bbox_min_mm, atol=1e-3)


def test_heatmap_overlay_and_classification_line(main_window, tmp_path):
    from tests.synthetic_plugins import write_plugin

    heat = write_plugin(tmp_path, "test-heatmap", "heatmap", modalities=("CT",), spacing=(6.0, 6.0, 6.0),
                        labels=(("Bone", (255, 0, 0)),))
    cls = write_plugin(tmp_path, "test-classifier", "classification", modalities=("CT",), spacing=(8.0, 8.0, 8.0),
                       activation="softmax", labels=(("Abnormal", (255, 0, 0)), ("Normal", (0, 255, 0))))
    vp = open_first_series(main_window)
    shown = _run(main_window, heat)
    (hm,) = shown.result.heatmaps
    assert hm.is_on_grid_of(vp.volume)
    layer = main_window.ai.heatmap_layer(vp.view)
    assert layer.heatmap is hm and layer.visible
    panel = main_window.ai.panel
    panel.opacity.setValue(80)
    assert layer.opacity == pytest.approx(0.8)
    (peak,) = panel.findings
    click_row(panel, 0)
    assert_centred_on(vp, peak.centroid_mm)
    on = capture(vp)
    assert layer.badge_text == "AI-generated: test-heatmap 0.3.1 (Bone heatmap)"
    shown.toggle.setChecked(False)
    off = capture(vp)
    assert not layer.visible and layer.badge_text == ""
    changed = changed_pixels(off, on)
    changed[:BADGE_ROWS] = False
    assert changed.sum() > 200 and on[changed][:, 0].mean() > on[changed][:, 2].mean() + 50  # red-yellow, not blue

    _run(main_window, cls)
    line = panel.classification.text()
    assert panel.classification.isVisible()
    assert line == "Classification by Test classification 0.3.1 (AI-generated): Abnormal 0.88, Normal 0.12"
    rows = [(panel.table.item(r, 0).text(), panel.table.item(r, 2).text()) for r in range(panel.table.rowCount())]
    assert ("Abnormal", "whole series") in rows and ("Normal", "whole series") not in rows  # below threshold


def test_region_edit_is_semiautomatic_in_the_seg_and_surfaces_show_in_3d(main_window):
    from workstation.dicom.seg import labelmap_to_seg, read_source_headers
    from workstation.model.labelmap import AlgorithmType
    from workstation.ui.viewer_area import Layout

    vp = open_first_series(main_window)
    result = hand_made_result(vp.volume)
    main_window.ai.show_result(PLUGIN, result, vp.volume)
    main_window.set_layout(Layout.MPR)
    pane = main_window.viewer.mpr.volume_pane
    surfaces = pane.view.label_surfaces[PLUGIN.id]
    assert surfaces.visible and surfaces.labels_shown == (1,) and surfaces.polydata().GetNumberOfPoints() > 100
    before = pane.capture().astype(int)
    red = (before[..., 0] > 120) & (before[..., 1] < 60) & (before[..., 2] < 60)
    assert red.sum() > 20  # the red segment's surface in 3D
    main_window.ai.set_visible(PLUGIN.id, False)
    assert not surfaces.visible
    main_window.ai.set_visible(PLUGIN.id, True)

    panel = main_window.ai.panel
    panel.edit(0, label="Tumour")
    lm = main_window.ai.current_labelmap(PLUGIN.id)
    seg = lm.segment(1)
    assert seg.name == "Tumour" and seg.algorithm.type is AlgorithmType.SEMIAUTOMATIC
    assert result.labelmap.segment(1).algorithm.type is AlgorithmType.AUTOMATIC  # the model's result is kept
    assert pane.view.label_surfaces[PLUGIN.id].labelmap is lm
    ds = labelmap_to_seg(lm, read_source_headers(_lidc_sources()))
    assert ds.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert ds.SegmentSequence[0].SegmentLabel == "Tumour"


def test_autorun_on_a_matching_series_fills_the_findings(main_window_factory, settings, tmp_path):
    from tests.synthetic_plugins import write_plugin

    plugins = tmp_path / "site-plugins"
    write_plugin(plugins, "test-detector", "detections", **CT_GRID)
    write_plugin(plugins, "test-mr-detector", "detections", **{**CT_GRID, "modalities": ("MR",)})
    write_plugin(plugins, "test-head-detector", "detections", **CT_GRID, body_part="HEAD")
    settings.home.mkdir(parents=True, exist_ok=True)
    wanted = ["test-detector", "test-mr-detector", "test-head-detector"]
    (settings.home / "workstation.toml").write_text(
        f'user_name = "Dr Test"\nplugin_dirs = ["{plugins}"]\nai_autorun = {wanted}\n'.replace("'", '"'))
    window = main_window_factory()
    assert window.ai.autorun == tuple(wanted) and window.ai.panel.user == "Dr Test"
    window.ai.options = RunOptions(threads=1, search_path=())
    open_first_series(window)  # a chest CT: the CT detector runs by itself; the MR and the head ones do not
    assert set(window.ai.results) == {"test-detector"}
    panel = window.ai.panel
    assert panel.table.rowCount() == 3 and window.ai.dock.isVisible()
    first = window.ai.results["test-detector"].result
    panel.select(0)
    panel.accept_button.click()
    assert panel.findings[0].decision.by == "Dr Test"
    open_first_series(window)  # the same series again: no second run
    assert window.ai.results["test-detector"].result is first
