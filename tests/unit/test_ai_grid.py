"""Grid helpers of the runner: labels mapped back to the source grid, and findings looked for in a box."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import SimpleITK as sitk

from workstation.ai import grid
from workstation.ai.manifest import load_manifest
from workstation.ai.registry import BUILTIN_PLUGINS
from workstation.model.volume import Volume, VolumeInfo


def _oblique_case():
    rng = np.random.default_rng(11)
    labels = np.zeros((40, 44, 48), np.uint8)  # the model grid [k, j, i]
    labels[10:22, 12:30, 15:33] = 1
    labels[25:31, 20:26, 30:40] = 2
    confidence = rng.integers(0, 256, labels.shape, dtype=np.uint8)
    model_affine = np.eye(4)
    model_affine[:3, :3] = grid.orientation_matrix("LIA") * 1.5
    model_affine[:3, 3] = (-40.0, 30.0, 35.0)
    c, s = np.cos(0.3), np.sin(0.3)
    source = np.array([[0.7 * c, -0.6 * s, 0, -50], [0.7 * s, 0.6 * c, 0, -40], [0, 0, 1.2, -30], [0, 0, 0, 1]])
    volume = Volume(np.zeros((70, 110, 120), np.int16), source, VolumeInfo(modality="MR"))
    return labels, confidence, model_affine, volume


def _full_nearest(values, model_affine, volume):
    return grid.resample(grid.to_sitk(values, model_affine), volume.affine, volume.shape, labels=True)


def _placed(mapped, volume, dtype=np.uint8):
    out = np.zeros(volume.shape, dtype)
    if mapped is not None:
        part, target = mapped
        out[target] = part
    return out


def test_mapping_back_onto_an_oblique_grid_within_the_label_box_equals_a_full_resampling():
    labels, confidence, model_affine, volume = _oblique_case()
    packed = (labels.astype(np.uint16) << 8) | confidence  # label and confidence travel together
    full = _full_nearest(packed, model_affine, volume)
    got = _placed(grid.nearest_to_source(packed * (labels > 0), model_affine, volume), volume, np.uint16)
    assert np.count_nonzero(full >> 8) > 1000
    assert np.array_equal(got >> 8, full >> 8)
    inside = (full >> 8) > 0
    assert np.array_equal((got & 255)[inside], (full & 255)[inside])  # where findings read it


def test_mapping_back_onto_a_grid_with_parallel_axes_is_exactly_simpleitks_nearest_neighbour():
    rng = np.random.default_rng(0)
    for _ in range(25):
        model_shape = tuple(int(v) for v in rng.integers(20, 40, 3))
        model_affine = np.eye(4)
        model_affine[:3, :3] = grid.orientation_matrix(rng.choice(["LIA", "RAS", "SAR", "PLI"])) * rng.uniform(0.8, 2, 3)
        model_affine[:3, 3] = rng.uniform(-5, 5, 3) - model_affine[:3, :3] @ (np.array(model_shape[::-1]) / 2)
        source_shape = tuple(int(v) for v in rng.integers(25, 60, 3))
        affine = np.eye(4)
        affine[:3, :3] = grid.orientation_matrix(rng.choice(["LPS", "RAS", "SAR", "IPL"])) * rng.uniform(0.5, 1.7, 3)
        affine[:3, 3] = rng.uniform(-5, 5, 3) - affine[:3, :3] @ (np.array(source_shape[::-1]) / 2)
        volume = Volume(np.zeros(source_shape, np.int16), affine, VolumeInfo(modality="MR"))
        labels = np.zeros(model_shape, np.uint8)
        labels[3:-4, 5:-2, 2:-6] = rng.integers(0, 4, (model_shape[0] - 7, model_shape[1] - 7, model_shape[2] - 8))
        assert grid.nearest_sampling(model_affine, model_shape, volume) is not None
        got = _placed(grid.nearest_to_source(labels, model_affine, volume), volume)
        assert np.array_equal(got, _full_nearest(labels, model_affine, volume))


def test_mapping_back_nothing():
    labels, confidence, model_affine, volume = _oblique_case()
    assert grid.nearest_to_source(np.zeros_like(labels), model_affine, volume) is None
    assert grid.nearest_sampling(model_affine, labels.shape, volume) is None  # oblique: no axis-by-axis sampling


def test_nonzero_box_and_sub_volume_keep_positions():
    labels = np.zeros((10, 12, 14), np.uint8)
    labels[2:5, 3:9, 4:6] = 3
    assert grid.nonzero_box(labels) == (slice(2, 5), slice(3, 9), slice(4, 6))
    assert grid.nonzero_box(np.zeros_like(labels)) is None
    volume = Volume(np.arange(labels.size, dtype=np.int16).reshape(labels.shape), np.diag([0.5, 0.6, 2.0, 1.0]))
    box = grid.nonzero_box(labels)
    sub = grid.sub_volume(volume, box)
    assert sub.shape == (3, 6, 2) and sub.voxels[0, 0, 0] == volume.voxels[2, 3, 4]
    assert np.allclose(sub.index_to_lps(np.zeros(3)), volume.index_to_lps(np.array([4.0, 3.0, 2.0])))


def test_findings_in_the_labelled_box_equal_those_over_the_whole_grid():
    from workstation.ai.postprocess import region_findings

    rng = np.random.default_rng(3)
    labels = np.zeros((30, 34, 38), np.uint8)
    labels[5:12, 8:20, 10:17] = 1
    labels[20:26, 22:30, 25:33] = 1
    confidence = rng.integers(0, 256, labels.shape, dtype=np.uint8)
    affine = np.array([[0.7, 0.1, 0, -90], [0, 0.6, 0.2, 30], [0.05, 0, 1.5, 12], [0, 0, 0, 1]])
    volume = Volume(np.zeros(labels.shape, np.int16), affine, VolumeInfo(modality="MR", series_instance_uid="1.2.3"))
    base = load_manifest(BUILTIN_PLUGINS / "brain-extraction" / "plugin.toml")
    m = replace(base, output=replace(base.output, min_volume_mm3=0.0, max_findings_per_label=5))
    whole = region_findings(labels, confidence, volume, m)
    boxed = grid.region_findings_in_box(region_findings, labels, confidence, volume, m)
    assert len(whole) == 2
    for a, b in zip(whole, boxed, strict=True):
        same = ("label", "score", "volume_mm3", "series_instance_uid")
        assert [getattr(a, n) for n in same] == [getattr(b, n) for n in same]
        for p, q in ((a.centroid_mm, b.centroid_mm), (a.bbox_min_mm, b.bbox_min_mm), (a.bbox_max_mm, b.bbox_max_mm)):
            assert np.allclose(p, q, atol=1e-9)
    assert grid.region_findings_in_box(region_findings, np.zeros_like(labels), confidence, volume, m) == []


def test_labels_from_scores_in_threaded_slabs_equal_one_pass_over_the_whole_array():
    from workstation.ai.manifest import Activation
    from workstation.ai.postprocess import labels_from_scores

    rng = np.random.default_rng(5)
    scores = rng.normal(size=(3, 37, 20, 24)).astype(np.float32)  # 37 slices: several slabs, a ragged last one
    scores[:, 3] = scores[0, 3]  # exact ties between channels: the first wins, as argmax says
    for activation in (Activation.SOFTMAX, Activation.SIGMOID, Activation.NONE):
        labels, confidence = labels_from_scores(scores, activation, 0.6)
        s = scores.copy()
        if activation is Activation.SOFTMAX:
            s -= s.max(axis=0, keepdims=True)
            np.exp(s, out=s)
            s /= s.sum(axis=0, keepdims=True)
        elif activation is Activation.SIGMOID:
            s = 1.0 / (1.0 + np.exp(-s))
        best = s.argmax(axis=0)
        p = np.take_along_axis(s, best[None], axis=0)[0]
        if activation is Activation.SIGMOID:
            best = np.where(p >= 0.6, best + 1, 0)
        assert np.array_equal(labels, best.astype(np.uint8)), activation
        assert np.array_equal(confidence, np.clip(np.rint(p * 255.0), 0, 255).astype(np.uint8)), activation
        assert len(np.unique(labels)) >= 2
