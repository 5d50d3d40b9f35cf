"""The label-map path's fast steps against the plain SimpleITK / numpy computations they replace: labels and
confidence from scores, labels mapped back onto oblique source grids, and connected-region findings."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk

from workstation.ai import grid
from workstation.ai.manifest import Activation, load_manifest
from workstation.ai.postprocess import labels_from_scores, region_findings
from workstation.ai.registry import BUILTIN_PLUGINS
from workstation.ai.runner import RunOptions, _split_bytes, run_model
from workstation.model.volume import Volume, VolumeInfo

MANIFEST = load_manifest(BUILTIN_PLUGINS / "brainchop-tissue" / "plugin.toml")


# -- references: the straightforward computations ---------------------------------------------------------------
def _reference_labels(scores: np.ndarray, activation: Activation, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    best = scores.argmax(axis=0)
    top = scores.max(axis=0).astype(np.float32)
    if activation is Activation.SOFTMAX:
        total = np.zeros_like(top)
        for c in range(scores.shape[0]):
            total += np.exp(scores[c].astype(np.float32) - top)
        p = 1.0 / total
    elif activation is Activation.SIGMOID:
        p = 1.0 / (1.0 + np.exp(-top))
        best = np.where(p >= threshold, best + 1, 0)
    else:
        p = top
    return best.astype(np.uint8), np.clip(np.rint(p * np.float32(255.0)), 0, 255).astype(np.uint8)


def _reference_findings(labels, confidence, volume, manifest):
    """Connected regions over the whole image, shape statistics of every region, LabelStatistics means."""
    voxel_mm3 = float(abs(np.linalg.det(volume.affine[:3, :3])))
    min_voxels = max(1, math.ceil(manifest.output.min_volume_mm3 / voxel_mm3))
    out = []
    for spec in manifest.labels:
        regions = sitk.ConnectedComponent(sitk.GetImageFromArray((labels == spec.value).view(np.uint8)))
        shape = sitk.LabelShapeStatisticsImageFilter()
        shape.Execute(regions)
        stats = sitk.LabelStatisticsImageFilter()
        stats.Execute(sitk.GetImageFromArray(confidence), regions)
        sizes = {r: shape.GetNumberOfPixels(r) for r in shape.GetLabels()}
        kept = sorted((r for r, n in sizes.items() if n >= min_voxels), key=lambda r: (-sizes[r], r))
        for r in kept[:manifest.output.max_findings_per_label]:
            i0, j0, k0, ni, nj, nk = shape.GetBoundingBox(r)
            corners = np.array([[i, j, k] for i in (i0, i0 + ni - 1) for j in (j0, j0 + nj - 1)
                                for k in (k0, k0 + nk - 1)], float)
            lps = volume.index_to_lps(corners)
            out.append((spec.name, round(stats.GetMean(r) / 255.0, 4), sizes[r] * voxel_mm3,
                        tuple(float(v) for v in volume.index_to_lps(np.asarray(shape.GetCentroid(r)))),
                        tuple(float(v) for v in lps.min(axis=0)), tuple(float(v) for v in lps.max(axis=0))))
    return out


def _key(f):
    return (f.label, f.score, f.volume_mm3, f.centroid_mm, f.bbox_min_mm, f.bbox_max_mm)


def _blobs(rng, shape, labels=2, smooth=3, level=0.55):
    """A realistic label image: smoothed noise cut into labels -- many regions of every size, a few large."""
    noise = sitk.GetImageFromArray(rng.random(shape).astype(np.float32))
    field = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(noise, smooth))
    field = (field - field.min()) / max(float(np.ptp(field)), 1e-9)
    out = np.zeros(shape, np.uint8)
    for v in range(1, labels + 1):
        lo = level + (v - 1) * (1.0 - level) / labels
        out[(field >= lo) & (field < lo + (1.0 - level) / labels)] = v
    return out


def _oblique(rng, shape, spacing=(0.7, 0.6, 1.1)):
    """A source grid turned by a few degrees about a random axis (as an oblique MR acquisition)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.radians(rng.uniform(3, 20))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    affine = np.eye(4)
    affine[:3, :3] = rotation * np.asarray(spacing)
    affine[:3, 3] = rng.uniform(-20, 20, 3) - affine[:3, :3] @ (np.array(shape[::-1]) / 2.0)
    return affine


# -- labels and confidence ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [1, 2, 3, 5])
def test_labels_from_scores_equal_argmax_and_the_activations_exactly(dtype, channels):
    rng = np.random.default_rng(channels)
    scores = rng.normal(scale=3.0, size=(channels, 11, 9, 13)).astype(dtype)
    scores[:, 2] = scores[0, 2]  # ties between every channel: the first wins
    scores[:, 4, :, :5] = np.round(scores[:, 4, :, :5])  # ties between some
    if channels > 1:
        scores[1, 6, 2, 3] = np.nan  # a NaN: argmax points at the first one
        scores[0, 7, 1, 1] = np.nan
        scores[channels - 1, 8, 3, 4] = scores[0, 8, 3, 4] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN -> uint8: the same cast on both sides
        for activation in Activation:
            for threshold in (0.3, 0.7):
                got = labels_from_scores(scores, activation, threshold)
                want = _reference_labels(scores, activation, threshold)
                assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), activation


# -- nearest-neighbour mapping onto oblique grids ----------------------------------------------------------------
def test_mapping_back_onto_random_oblique_grids_equals_simpleitks_nearest_neighbour_everywhere():
    rng = np.random.default_rng(21)
    for case in range(12):
        model_shape = tuple(int(v) for v in rng.integers(24, 40, 3))
        labels = _blobs(rng, model_shape, labels=2, smooth=2.5, level=rng.uniform(0.4, 0.7))
        confidence = rng.integers(1, 256, model_shape, dtype=np.uint8)
        packed = (labels.astype(np.uint16) << 8) | (confidence * (labels != 0))  # as the runner packs them
        model_affine = np.eye(4)
        model_affine[:3, :3] = grid.orientation_matrix(str(rng.choice(["LIA", "RAS", "LPS"]))) * rng.uniform(0.9, 1.6)
        model_affine[:3, 3] = rng.uniform(-5, 5, 3) - model_affine[:3, :3] @ (np.array(model_shape[::-1]) / 2.0)
        source_shape = tuple(int(v) for v in rng.integers(30, 64, 3))
        volume = Volume(np.zeros(source_shape, np.int16), _oblique(rng, source_shape), VolumeInfo(modality="MR"))
        full = grid.resample(grid.to_sitk(packed, model_affine), volume.affine, volume.shape, labels=True)
        mapped = grid.nearest_to_source(packed, model_affine, volume)
        got = np.zeros(volume.shape, np.uint16)
        if mapped is not None:
            part, target = mapped
            got[target] = part
            # the part is bounded by where the labels land, not by the corners of the model's box
            wide = grid.source_box_of(grid.nonzero_box(packed), model_affine, volume)
            assert all(t.start >= w.start and t.stop <= w.stop for t, w in zip(target, wide))
        assert np.array_equal(got, full), case
        assert np.count_nonzero(full) > 0 or mapped is None


def test_the_tight_source_box_holds_every_voxel_a_label_reaches():
    rng = np.random.default_rng(4)
    for _ in range(20):
        values = np.zeros(tuple(int(v) for v in rng.integers(8, 20, 3)), np.uint8)
        for _ in range(3):  # a few isolated voxels: the extremes are single voxels, not box corners
            values[tuple(int(rng.integers(0, n)) for n in values.shape)] = 1
        model_affine = np.eye(4)
        model_affine[:3, :3] = grid.orientation_matrix("LIA") * 2.0
        volume = Volume(np.zeros((60, 60, 60), np.int16), _oblique(rng, (60, 60, 60), (0.5, 0.5, 0.5)))
        model_affine[:3, 3] = volume.center_lps() - model_affine[:3, :3] @ (np.array(values.shape[::-1]) / 2.0)
        full = grid.resample(grid.to_sitk(values, model_affine), volume.affine, volume.shape, labels=True)
        box = grid.source_box_of_voxels(values, model_affine, volume)
        outside = full.copy()
        outside[box] = 0
        assert np.count_nonzero(full) > 0 and not outside.any()


def test_split_bytes_are_views_of_the_label_and_confidence():
    packed = (np.arange(60, dtype=np.uint16).reshape(3, 4, 5) << 8) | np.uint16(7)
    high, low = _split_bytes(packed)
    assert np.array_equal(high, packed >> 8) and np.array_equal(low, packed & 255)
    assert np.shares_memory(high, packed) and high.dtype == low.dtype == np.uint8
    swapped = packed.astype(">u2")
    assert np.array_equal(_split_bytes(swapped)[0], packed >> 8)


# -- connected-region findings ----------------------------------------------------------------------------------
def test_region_findings_equal_simpleitk_over_the_whole_image_bit_for_bit():
    rng = np.random.default_rng(8)
    labels = _blobs(rng, (46, 52, 58), labels=2)
    # equal-sized regions where the limit cuts: the first in raster order is kept, as over the whole image
    labels[:, :, 50:] = 0
    labels[40:43, 40:43, 52:55] = 3
    labels[20:23, 2:5, 52:55] = 3
    labels[20:23, 44:47, 52:55] = 3
    labels[30:33, 10:13, 50:53] = 3
    confidence = rng.integers(0, 256, labels.shape, dtype=np.uint8)
    affine = _oblique(rng, labels.shape)
    volume = Volume(np.zeros(labels.shape, np.int16), affine, VolumeInfo(modality="MR", series_instance_uid="1.2"))
    spec = replace(MANIFEST.labels[0], value=3, name="Third")
    for limit, min_mm3 in ((1, 0.0), (4, 0.0), (10, 5.0), (100, 0.0), (0, 0.0)):
        m = replace(MANIFEST, labels=MANIFEST.labels + (spec,),
                    output=replace(MANIFEST.output, max_findings_per_label=limit, min_volume_mm3=min_mm3))
        got = [_key(f) for f in region_findings(labels, confidence, volume, m)]
        assert got == _reference_findings(labels, confidence, volume, m), (limit, min_mm3)
        third = [g for g in got if g[0] == "Third"]
        assert len(third) == min(limit, 4) and len(got) >= min(limit, 4) * 3
        if limit == 1:  # of four equal cubes, the one starting first in k, then j, then i
            assert np.allclose(third[0][3], volume.index_to_lps(np.array([53.0, 3.0, 21.0])), atol=1e-9)


def test_region_findings_of_a_label_touching_every_side_and_of_a_missing_label():
    labels = np.zeros((10, 12, 14), np.uint8)
    labels[0, 0, 0] = labels[-1, -1, -1] = 1  # the label's box is the whole image
    labels[3:6, 3:6, 3:6] = 1
    confidence = np.full(labels.shape, 200, np.uint8)
    volume = Volume(np.zeros(labels.shape, np.int16), np.diag([0.5, 0.7, 1.2, 1.0]), VolumeInfo(modality="MR"))
    m = replace(MANIFEST, output=replace(MANIFEST.output, max_findings_per_label=5, min_volume_mm3=0.0))
    got = [_key(f) for f in region_findings(labels, confidence, volume, m)]  # no grey matter at all
    assert got == _reference_findings(labels, confidence, volume, m) and len(got) == 3


# -- the runner's whole label-map path ---------------------------------------------------------------------------
class _Scores:
    """A model standing in for the network: fixed scores [1, C, k, j, i] whatever the input."""

    providers = ("CPUExecutionProvider",)

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = scores

    def predict(self, x, cancel=None):
        assert x.shape[2:] == self.scores.shape[1:]
        return self.scores[None]


def test_the_runner_on_an_oblique_volume_equals_full_resampling_and_whole_image_regions():
    rng = np.random.default_rng(13)
    size = (40, 36, 44)  # (i, j, k) of the model grid
    m = replace(MANIFEST, input=replace(MANIFEST.input, size=size),
                output=replace(MANIFEST.output, min_volume_mm3=2.0, max_findings_per_label=3))
    labels = _blobs(rng, size[::-1], labels=2, smooth=2.0, level=0.45)
    scores = rng.normal(size=(3,) + labels.shape).astype(np.float32)
    for c in (1, 2):
        scores[c][labels == c] += 4.0  # the network's choice: the labels above, with varying confidence
    source_shape = (52, 60, 70)
    volume = Volume(rng.integers(0, 1000, source_shape).astype(np.int16), _oblique(rng, source_shape, (0.8, 0.8, 0.9)),
                    VolumeInfo(modality="MR", series_instance_uid="1.2.3"))
    result = run_model(_Scores(scores), m, volume, RunOptions(threads=1))

    model_affine, _ = grid.model_grid(volume, m.input)
    model_labels, confidence = labels_from_scores(scores, Activation.SOFTMAX, m.output.threshold)
    packed = (model_labels.astype(np.uint16) << 8) | confidence
    full = grid.resample(grid.to_sitk(packed, model_affine), volume.affine, volume.shape, labels=True)
    on_source = (full >> 8).astype(np.uint8)
    assert np.count_nonzero(on_source == 1) > 1000 and np.count_nonzero(on_source == 2) > 1000
    assert np.array_equal(result.labelmap.labels, on_source)
    want = _reference_findings(on_source, (full & 255).astype(np.uint8), volume, m)
    got = [_key(f) for f in result.findings]
    assert len(got) == len(want) >= 4
    for g, w in zip(got, want):
        assert g[:3] == w[:3]  # label, score, volume: exactly
        for p, q in zip(g[3:], w[3:]):  # positions: the same up to the rounding of the boxes' origins
            assert np.allclose(p, q, rtol=0, atol=1e-9)
