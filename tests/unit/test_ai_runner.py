"""The runner: grids, normalisation, sliding window, post-processing, and the real brainchop model on 7T MR."""

from dataclasses import replace

import numpy as np
import pytest

from tests.model_files import shared_model
from tests.shared_data import shared_case
from workstation.ai import grid
from workstation.ai.inference import ModelLoadError, OnnxModel, choose_providers, sliding_window, window_starts
from workstation.ai.manifest import Activation, IntensitySpec, Normalisation, load_manifest
from workstation.ai.registry import BUILTIN_PLUGINS, Plugin, discover
from workstation.ai.runner import MemoryBudgetExceeded, RunOptions, WrongInput, run_plugin
from workstation.model.tasks import Cancelled, CancelToken
from workstation.model.volume import Volume, VolumeInfo

MANIFEST = load_manifest(BUILTIN_PLUGINS / "brainchop-tissue" / "plugin.toml")


def test_provider_choice_prefers_accelerators_and_falls_back_to_cpu():
    assert choose_providers(["CPUExecutionProvider", "CUDAExecutionProvider"])[0] == "CUDAExecutionProvider"
    assert choose_providers(["CPUExecutionProvider", "CUDAExecutionProvider"], False) == ["CPUExecutionProvider"]
    assert choose_providers(["AzureExecutionProvider"]) == ["CPUExecutionProvider"]


def test_orientation_and_model_grid_centred_on_the_volume():
    d = grid.orientation_matrix("LIA")
    assert d[:, 0].tolist() == [1, 0, 0] and d[:, 1].tolist() == [0, 0, -1] and d[:, 2].tolist() == [0, -1, 0]
    vol = Volume(np.zeros((10, 20, 30), np.int16), np.diag([0.5, 0.5, 3.0, 1.0]))
    affine, shape = grid.model_grid(vol, MANIFEST.input)
    assert shape == (256, 256, 256)
    centre = affine[:3, :3] @ np.full(3, 127.5) + affine[:3, 3]
    assert np.allclose(centre, vol.center_lps())


def test_resampling_keeps_anatomy_in_place():
    voxels = np.zeros((20, 20, 20), np.float32)
    voxels[5:8, 10:14, 2:6] = 100.0  # a block: k 5..7, j 10..13, i 2..5
    vol = Volume(voxels, np.diag([2.0, 2.0, 2.0, 1.0]))
    spec = replace(MANIFEST.input, size=None, orientation="LIA", spacing_mm=(1.0, 1.0, 1.0))
    data, affine = grid.to_model_grid(vol, spec)
    hot = np.argwhere(data > 50)[:, ::-1]  # (i, j, k) of the model grid
    centre_mm = (hot.mean(axis=0) @ affine[:3, :3].T) + affine[:3, 3]
    assert np.allclose(centre_mm, vol.index_to_lps(np.array([3.5, 11.5, 6.0])), atol=1.0)


def test_normalisations():
    data = np.linspace(0, 100, 1000, dtype=np.float32).reshape(10, 10, 10)
    out = grid.normalise(data.copy(), IntensitySpec(Normalisation.MINMAX))
    assert out.min() == 0 and out.max() == pytest.approx(1)
    out = grid.normalise(data.copy(), IntensitySpec(Normalisation.WINDOW, window=(25.0, 75.0)))
    assert out.min() == 0 and out.max() == 1 and out[5, 0, 0] == pytest.approx(0.5, abs=0.01)
    out = grid.normalise(data.copy(), IntensitySpec(Normalisation.ZSCORE))
    assert abs(float(out.mean())) < 0.3 and 0.8 < float(out.std()) < 1.2  # estimated on a subsample


def test_model_input_is_the_resampled_grid_normalised_in_slabs():
    rng = np.random.default_rng(2)
    voxels = rng.integers(-50, 900, (37, 30, 26)).astype(np.int16)
    angle = np.radians(8.0)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]) * 1.3
    vol = Volume(voxels, affine, VolumeInfo(modality="MR"))
    for intensity in (IntensitySpec(), IntensitySpec(Normalisation.MINMAX), IntensitySpec(Normalisation.ZSCORE),
                      IntensitySpec(Normalisation.WINDOW, window=(100.0, 600.0)), IntensitySpec(Normalisation.NONE)):
        spec = replace(MANIFEST.input, size=(24, 28, 33), intensity=intensity)  # 33 slices: a ragged last slab
        data, affine_a = grid.to_model_grid(vol, spec)
        raw = data.copy()
        want = grid.normalise(data, intensity)  # in place, as before
        got, affine_b = grid.model_input(vol, spec)
        assert got.dtype == np.float32 and got.flags.writeable and got.shape == (33, 28, 24)
        assert np.array_equal(got, want) and np.array_equal(affine_a, affine_b), intensity
        into = np.empty_like(raw)
        assert grid.normalise(raw, intensity, out=into) is into and np.array_equal(into, want)
        assert intensity.normalise is Normalisation.NONE or not np.array_equal(raw, want)  # the source is untouched


def test_window_starts_cover_the_axis():
    assert window_starts(10, 10, 0.5) == [0]
    starts = window_starts(100, 32, 0.25)
    assert starts[0] == 0 and starts[-1] == 68 and all(b - a <= 24 for a, b in zip(starts, starts[1:]))


def _fake_predict(x):
    """A 'model' whose two channels are the input and its complement: blending must reproduce them."""
    return np.concatenate([x, 1.0 - x], axis=1)


def test_sliding_window_blends_patches_back_to_the_whole():
    rng = np.random.default_rng(1)
    data = rng.random((40, 37, 50), dtype=np.float32)
    seen = []
    out = sliding_window(data, (16, 16, 16), 0.5, _fake_predict, progress=seen.append)
    assert out.shape == (2, 40, 37, 50)
    assert np.allclose(out[0], data, atol=1e-5) and np.allclose(out[1], 1 - data, atol=1e-5)
    assert seen[-1].done == seen[-1].total > 1


def test_sliding_window_pads_a_small_volume_and_can_be_cancelled():
    data = np.ones((8, 9, 10), np.float32)
    out = sliding_window(data, (16, 16, 16), 0.25, _fake_predict)
    assert out.shape == (2, 8, 9, 10) and np.allclose(out[0], 1)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        sliding_window(np.ones((40, 40, 40), np.float32), (16, 16, 16), 0.25, _fake_predict, cancel=token)


def test_corrupt_model_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="not a usable ONNX model"):
        OnnxModel(bad, "input", "output")


def test_wrong_modality_and_memory_budget_are_refused_before_work():
    plugin = Plugin(MANIFEST, BUILTIN_PLUGINS / "brainchop-tissue", "folder")
    ct = Volume(np.zeros((4, 4, 4), np.int16), np.eye(4), VolumeInfo(modality="CT"))
    with pytest.raises(WrongInput, match="made for MR"):
        run_plugin(plugin, ct)
    mr = Volume(np.zeros((4, 4, 4), np.int16), np.eye(4), VolumeInfo(modality="MR"))
    with pytest.raises(MemoryBudgetExceeded, match="GiB"):
        run_plugin(plugin, mr, RunOptions(memory_budget_bytes=1 << 20))


@pytest.fixture(scope="module")
def brainchop_run():
    shared_model("brainchop-tissue")
    from workstation.dicom.series import examine, load_volume

    plans, _ = examine([shared_case("mr-head-t1-7t") / "dicom"])
    volume = load_volume(plans[0])
    plugin = discover().get("brainchop-tissue")
    steps = []
    scores = []  # what the network gave, for the reference computations below
    predict = OnnxModel.predict
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(OnnxModel, "predict",
                   lambda self, x, cancel=None: scores.append(predict(self, x, cancel)) or scores[-1])
        result = run_plugin(plugin, volume, RunOptions(threads=2), progress=steps.append)
    return volume, result, steps, scores[0][0]


@pytest.fixture(scope="module")
def brainchop_on_7t(brainchop_run):
    return brainchop_run[:3]


def test_brainchop_tissue_on_7t_head(brainchop_on_7t):
    volume, result, steps = brainchop_on_7t
    lm = result.labelmap
    assert lm.is_on_grid_of(volume) and lm.labels.dtype == np.uint8  # on the SOURCE grid
    counts = lm.counts()
    brain = counts[1] + counts[2]
    assert 0.2 < counts[1] / brain < 0.6 and 0.2 < counts[2] / brain < 0.6
    brain_ml = (lm.volume_mm3(1) + lm.volume_mm3(2)) / 1000.0
    assert 900 < brain_ml < 1800  # an adult brain
    assert all(s.algorithm.name == "brainchop-tissue" and s.algorithm.version == "1.0.0" for s in lm.segments)
    assert [f.label for f in result.findings] == ["White matter", "Grey matter"]
    ks, js, is_ = volume.shape
    for f in result.findings:
        i, j, k = volume.lps_to_index(np.asarray(f.centroid_mm))
        assert 0 <= i < is_ and 0 <= j < js and 0 <= k < ks  # the centroid lies inside the head
        assert all(lo <= c <= hi for lo, c, hi in zip(f.bbox_min_mm, f.centroid_mm, f.bbox_max_mm))
        assert 100 < f.size_mm[0] < 200  # left-right extent of a brain hemisphere pair
        assert 0.5 < f.score <= 1.0 and f.provenance.model_id == "brainchop-tissue"
    assert steps[-1].text == "done" and result.timings_s["total"] > 0


def test_brainchop_tissue_on_7t_head_equals_full_resampling_and_whole_grid_regions(brainchop_run):
    """The real, oblique (7.4 deg) 7 T head: the label map equals SimpleITK's nearest-neighbour resampling of the
    model's labels onto the whole source grid; the findings equal connected regions and shape statistics over
    the whole source grid with LabelStatistics means (positions to 1e-9 mm: the boxes' origins round)."""
    from tests.unit.test_ai_map_back import _key, _reference_findings
    from workstation.ai.postprocess import labels_from_scores

    volume, result, _, scores = brainchop_run
    model_affine, _ = grid.model_grid(volume, MANIFEST.input)
    labels, confidence = labels_from_scores(scores, MANIFEST.output.activation, MANIFEST.output.threshold)
    packed = (labels.astype(np.uint16) << 8) | confidence
    full = grid.resample(grid.to_sitk(packed, model_affine), volume.affine, volume.shape, labels=True)
    del packed
    on_source = (full >> 8).astype(np.uint8)
    assert np.array_equal(result.labelmap.labels, on_source)
    want = _reference_findings(on_source, (full & 255).astype(np.uint8), volume, MANIFEST)
    got = [_key(f) for f in result.findings]
    assert len(got) == len(want) == 2
    for g, w in zip(got, want):
        assert g[:3] == w[:3]  # label, score, volume: exactly
        for p, q in zip(g[3:], w[3:]):
            assert np.allclose(p, q, rtol=0, atol=1e-9)


def test_cancel_stops_a_real_run():
    shared_model("brainchop-tissue")
    vol = Volume(np.ones((64, 64, 64), np.int16), np.eye(4), VolumeInfo(modality="MR"))
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        run_plugin(discover().get("brainchop-tissue"), vol, RunOptions(threads=2), cancel=token)


def test_region_findings_match_simpleitk_label_statistics():
    """Scores summed over each region's bounding box equal LabelStatisticsImageFilter's whole-image means."""
    import SimpleITK as sitk

    from workstation.ai.postprocess import region_findings

    rng = np.random.default_rng(7)
    labels = np.zeros((20, 24, 28), np.uint8)
    labels[2:9, 3:12, 4:15] = 1  # two white-matter blobs: the larger one first
    labels[12:15, 15:20, 18:22] = 1
    labels[5:18, 14:22, 2:9] = 2
    confidence = rng.integers(0, 256, labels.shape, dtype=np.uint8)
    volume = Volume(np.zeros(labels.shape, np.int16), np.diag([0.5, 0.7, 1.2, 1.0]), VolumeInfo(modality="MR"))
    manifest = replace(MANIFEST, output=replace(MANIFEST.output, min_volume_mm3=0.0, max_findings_per_label=5))
    findings = region_findings(labels, confidence, volume, manifest)
    assert [(f.label, round(f.volume_mm3 / 0.42)) for f in findings] == [
        ("White matter", 7 * 9 * 11), ("White matter", 3 * 5 * 4), ("Grey matter", 13 * 8 * 7)]
    for f in findings:
        mask = sitk.GetImageFromArray((labels == f.segment_number).view(np.uint8))
        regions = sitk.RelabelComponent(sitk.ConnectedComponent(mask), 1, True)
        stats = sitk.LabelStatisticsImageFilter()
        stats.Execute(sitk.GetImageFromArray(confidence), regions)
        same = [r for r in stats.GetLabels() if r and stats.GetCount(r) * 0.42 == pytest.approx(f.volume_mm3)]
        assert f.score == round(stats.GetMean(same[0]) / 255.0, 4)


def test_memory_estimate_follows_the_output_kind():
    from workstation.ai.manifest import OutputKind
    from workstation.ai.runner import estimate_memory

    vol = Volume(np.zeros((100, 200, 200), np.int16), np.eye(4), VolumeInfo(modality="MR"))
    by_kind = {k: estimate_memory(replace(MANIFEST, output=replace(MANIFEST.output, kind=k)), vol) for k in OutputKind}
    model_voxels = 256 ** 3
    assert by_kind[OutputKind.DETECTIONS] == by_kind[OutputKind.CLASSIFICATION] == model_voxels * 12
    # heatmaps keep a float map per label on the source grid; label maps only bytes
    assert by_kind[OutputKind.HEATMAP] > by_kind[OutputKind.LABELMAP] > by_kind[OutputKind.DETECTIONS]
