"""Output kinds beyond label maps, through the real runner and onnxruntime on small ONNX graphs built here:
detections (thresholds, NMS, boxes mapped to LPS mm on a source grid with non-identity direction and
spacing), heatmaps (resampled back onto the source grid), classification (per-class scores)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.synthetic_plugins import write_plugin
from workstation.ai import grid
from workstation.ai.manifest import OutputKind
from workstation.ai.postprocess import OutputMismatch, box_iou, nms
from workstation.ai.registry import Plugin
from workstation.ai.runner import RunOptions, WrongInput, run_plugin
from workstation.model.finding import FindingKind
from workstation.model.volume import Volume, VolumeInfo

OPTIONS = RunOptions(threads=1, search_path=())
SPACING = np.array([0.8, 1.5, 2.0])  # i, j, k
CUBE = (slice(6, 14), slice(7, 17), slice(10, 30))  # k, j, i


def rotation_z(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def phantom(direction: np.ndarray) -> Volume:
    """A bright block on a grid whose columns point right, rows down (inferior), slices posterior."""
    voxels = np.zeros((20, 24, 40), np.int16)
    voxels[CUBE] = 100
    affine = np.eye(4)
    affine[:3, :3] = direction * SPACING
    affine[:3, 3] = (10.0, -20.0, 30.0)
    return Volume(voxels, affine, VolumeInfo(modality="MR", series_instance_uid="1.2.3.4"))


def cube_faces_lps(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    ks, js, is_ = CUBE
    lo = np.array([is_.start, js.start, ks.start]) - 0.5
    hi = np.array([is_.stop, js.stop, ks.stop]) - 0.5
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    lps = volume.index_to_lps(corners)
    return lps.min(axis=0), lps.max(axis=0)


DIRECTIONS = {"permuted": np.array([[-1.0, 0, 0], [0, 0, 1], [0, -1, 0]]).T,
              "permuted+rotated": rotation_z(30) @ np.array([[-1.0, 0, 0], [0, 0, 1], [0, -1, 0]]).T}


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> Plugin:
    return write_plugin(tmp_path_factory.mktemp("plugins"), "test-detector", "detections", size=(48, 48, 48))


def test_nms_keeps_the_best_of_overlapping_boxes_only():
    boxes = np.array([[0, 0, 0, 9, 9, 9], [1, 1, 1, 10, 10, 10], [20, 20, 20, 29, 29, 29], [0, 0, 5, 9, 9, 14]], float)
    scores = np.array([0.8, 0.9, 0.5, 0.7])
    assert box_iou(boxes[0], boxes[1:2])[0] == pytest.approx(729 / (2000 - 729))  # 9^3 shared of 10^3 each
    assert box_iou(boxes[0], boxes[3:4])[0] == pytest.approx(500 / 1500)
    assert nms(boxes, scores) == [1, 3, 2]  # box 0 overlaps the better box 1 by 0.57 > 0.5; box 3 by 0.33
    assert nms(boxes, scores, iou=0.2) == [1, 2]
    assert nms(boxes, scores, limit=2) == [1, 3]


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_detections_thresholds_nms_and_boxes_in_patient_mm(detector, name):
    volume = phantom(DIRECTIONS[name])
    result = run_plugin(detector, volume, OPTIONS)
    assert result.kind is OutputKind.DETECTIONS and result.labelmap is None
    # rows: box 0.9 | shifted copy 0.8 (NMS) | far 0.3 (threshold) | far 0.6 | box as "Mass" 0.7
    assert [(f.label, f.score, f.kind) for f in result.findings] == [
        ("Lesion", 0.9, FindingKind.BOX), ("Lesion", 0.6, FindingKind.BOX), ("Mass", 0.7, FindingKind.BOX)]
    assert all(f.provenance.model_id == "test-detector" and f.provenance.model_version == "0.3.1"
               and f.series_instance_uid == "1.2.3.4" for f in result.findings)
    found, far, mass = result.findings
    lo, hi = cube_faces_lps(volume)
    tol = 1.0 if name == "permuted" else 1.6  # one model voxel (1 mm); rotated corners are cut by interpolation
    got_lo, got_hi = np.array(found.bbox_min_mm), np.array(found.bbox_max_mm)
    assert np.all(got_lo >= lo - 1e-6) and np.all(got_lo - lo <= tol), (got_lo, lo)
    assert np.all(got_hi <= hi + 1e-6) and np.all(hi - got_hi <= tol), (got_hi, hi)
    assert np.allclose(found.centroid_mm, (got_lo + got_hi) / 2)
    assert mass.bbox_min_mm == found.bbox_min_mm and mass.bbox_max_mm == found.bbox_max_mm
    # the far box is given in model-grid indices 43..46: exactly where the model grid's affine puts them
    affine, shape = grid.model_grid(volume, detector.manifest.input)
    assert shape == (48, 48, 48)
    corners = np.array([[43.0] * 3, [46.0] * 3]) @ affine[:3, :3].T + affine[:3, 3]
    assert np.allclose(far.bbox_min_mm, corners.min(axis=0)) and np.allclose(far.bbox_max_mm, corners.max(axis=0))


def test_detection_threshold_comes_from_the_manifest(detector):
    m = detector.manifest
    strict = Plugin(replace(m, output=replace(m.output, threshold=0.65)), detector.folder, "folder")
    result = run_plugin(strict, phantom(DIRECTIONS["permuted"]), OPTIONS)
    assert [(f.label, f.score) for f in result.findings] == [("Lesion", 0.9), ("Mass", 0.7)]
    one = Plugin(replace(m, output=replace(m.output, max_findings_per_label=1, threshold=0.0)), detector.folder, "f")
    assert [(f.label, f.score) for f in run_plugin(one, phantom(DIRECTIONS["permuted"]), OPTIONS).findings] == [
        ("Lesion", 0.9), ("Mass", 0.7)]


def test_nms_overlap_comes_from_the_manifest(detector):
    m = detector.manifest
    assert m.output.nms_iou == 0.5  # the default
    lenient = Plugin(replace(m, output=replace(m.output, nms_iou=0.99)), detector.folder, "folder")
    found = [(f.label, f.score) for f in run_plugin(lenient, phantom(DIRECTIONS["permuted"]), OPTIONS).findings]
    # the 1-voxel-shifted copy overlaps the best box by less than 0.99: kept now, dropped at 0.5
    assert found == [("Lesion", 0.9), ("Lesion", 0.8), ("Lesion", 0.6), ("Mass", 0.7)]


def test_detections_bad_manifests_are_clear_errors(detector):
    m = detector.manifest
    vol = phantom(DIRECTIONS["permuted"])
    one_label = Plugin(replace(m, labels=m.labels[:1]), detector.folder, "folder")
    with pytest.raises(OutputMismatch, match=r"label values \[2\].*manifest does not describe"):
        run_plugin(one_label, vol, OPTIONS)
    softmax = Plugin(replace(m, output=replace(m.output, activation=type(m.output.activation)("softmax"))),
                     detector.folder, "folder")
    with pytest.raises(OutputMismatch, match="not softmax"):
        run_plugin(softmax, vol, OPTIONS)
    patched = Plugin(replace(m, input=replace(m.input, patch=(16, 16, 16))), detector.folder, "folder")
    with pytest.raises(WrongInput, match="remove input.patch"):
        run_plugin(patched, vol, OPTIONS)


def test_heatmap_lands_back_on_the_source_grid(tmp_path):
    plugin = write_plugin(tmp_path, "test-heatmap", "heatmap", patch=(24, 24, 24), labels=(("Lesion", (255, 0, 0)),))
    volume = phantom(DIRECTIONS["permuted+rotated"])
    result = run_plugin(plugin, volume, OPTIONS)
    assert result.kind is OutputKind.HEATMAP and result.labelmap is None and len(result.heatmaps) == 1
    heat = result.heatmaps[0]
    assert heat.is_on_grid_of(volume) and heat.values.dtype == np.float32
    assert (heat.label, heat.model_id, heat.model_version, heat.colour) == ("Lesion", "test-heatmap", "0.3.1", (255, 0, 0))
    inner = tuple(slice(s.start + 1, s.stop - 1) for s in CUBE)
    assert heat.values[inner].min() > 0.95  # the normalised block, back where it was
    outside = np.ones(volume.shape, bool)
    outside[tuple(slice(s.start - 3, s.stop + 3) for s in CUBE)] = False
    assert heat.values[outside].max() < 0.02
    (peak,) = result.findings
    assert peak.kind is FindingKind.POINT and peak.score > 0.95
    i, j, k = volume.lps_to_index(np.array(peak.centroid_mm))
    assert all(s.start <= round(v) < s.stop for s, v in zip(CUBE, (k, j, i)))


def test_classification_scores_for_the_whole_series(tmp_path):
    labels = (("Abnormal", (255, 0, 0)), ("Normal", (0, 255, 0)))
    plugin = write_plugin(tmp_path, "test-classifier", "classification", activation="softmax", labels=labels)
    volume = phantom(DIRECTIONS["permuted"])
    result = run_plugin(plugin, volume, OPTIONS)
    e = np.exp([3.0, 1.0])  # logits [3 * max, 1]; the normalised maximum is 1
    assert result.class_scores == (("Abnormal", round(e[0] / e.sum(), 4)), ("Normal", round(e[1] / e.sum(), 4)))
    (f,) = result.findings  # only the class at or above the 0.5 threshold
    assert f.kind is FindingKind.CLASSIFICATION and f.label == "Abnormal" and f.score == pytest.approx(0.8808)
    assert np.allclose(f.centroid_mm, volume.center_lps())
    three = write_plugin(tmp_path, "test-classifier-3", "classification", activation="softmax",
                         labels=labels + (("Other", (0, 0, 255)),))
    with pytest.raises(OutputMismatch, match="gives 2 channels; the manifest has 3 labels"):
        run_plugin(three, volume, OPTIONS)


def test_an_edit_is_a_decision_with_who_and_when(detector):
    from datetime import datetime, timezone

    from workstation.model.finding import Status

    box = run_plugin(detector, phantom(DIRECTIONS["permuted"]), OPTIONS).findings[0]
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    moved = box.edit("Smith^Jane", label="Nodule", bbox_mm=((10.0, 0.0, 5.0), (0.0, 8.0, 1.0)), at=at)
    assert (moved.status, moved.decision.by, moved.decision.at, moved.uid) == (Status.EDITED, "Smith^Jane", at, box.uid)
    assert moved.label == "Nodule" and moved.bbox_min_mm == (0.0, 0.0, 1.0) and moved.bbox_max_mm == (10.0, 8.0, 5.0)
    assert moved.centroid_mm == (5.0, 4.0, 3.0) and moved.score == box.score and moved.is_ai
    with pytest.raises(ValueError, match="non-empty label"):
        box.edit("Smith^Jane", label="  ")
    with pytest.raises(ValueError, match="must change"):
        box.edit("Smith^Jane")
    with pytest.raises(ValueError, match="who made it"):
        box.edit("", label="Nodule")
