"""The brain-extraction plugin (deepbet's networks in ONNX, shipped in plugins/) and the hooks mechanism."""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pytest

from tests.shared_data import shared_case
from workstation.ai import grid
from workstation.ai.hooks import HooksError, load_hooks
from workstation.ai.inference import ModelLoadError
from workstation.ai.manifest import load_manifest
from workstation.ai.registry import BUILTIN_PLUGINS, ModelNotFound, Plugin, discover
from workstation.ai.runner import RunOptions, run_plugin
from workstation.model.tasks import Cancelled, CancelToken
from workstation.model.volume import Volume, VolumeInfo

FOLDER = BUILTIN_PLUGINS / "brain-extraction"
HOOKS_NAME = "_workstation_plugin_hooks.brain_extraction.hooks"


def _plugin() -> Plugin:
    return discover(entry_points=False).get("brain-extraction")


def _hooks():
    return load_hooks(_plugin())


def test_manifest_ships_both_models_and_the_licence():
    m = _plugin().manifest
    assert m.hooks == "hooks" and m.model == "model.onnx" and m.extra_models == ("bbox_model.onnx",)
    assert [(label.name, label.type.code, label.type.scheme) for label in m.labels] == [("Brain", "12738006", "SCT")]
    for name in ("model.onnx", "bbox_model.onnx", "LICENSE", "README.md"):
        assert (FOLDER / name).is_file()
    assert "MIT License" in (FOLDER / "LICENSE").read_text()


def test_hooks_are_imported_only_when_the_plugin_runs():
    sys.modules.pop(HOOKS_NAME, None)
    discover(entry_points=False)
    assert HOOKS_NAME not in sys.modules
    assert callable(_hooks().infer) and HOOKS_NAME in sys.modules


@pytest.mark.parametrize("affine", [
    np.diag([0.7, 0.6, 0.5, 1.0]),  # i -> L, j -> P, k -> S (axial)
    np.array([[0, 0, -1.2, 0], [1.0, 0, 0, 0], [0, -0.9, 0, 0], [0, 0, 0, 1]]),  # sagittal-like, flipped
    np.array([[0.96, 0.28, 0, 0], [-0.28, 0.96, 0, 0], [0, 0, -1, 0], [0, 0, 0, 1]]),  # oblique, inferior
])
def test_reorientation_points_axes_right_anterior_superior_and_inverts(affine):
    h = _hooks()
    voxels = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    perm, flips = h.axis_map(affine, "SAR")
    x = h.reorient(voxels, perm, flips)
    vol = Volume(voxels, affine)
    for n, lps_sign in enumerate([(-1, 0, 0), (0, -1, 0), (0, 0, 1)]):  # R, A, S in LPS
        step = np.zeros(3, int)
        step[n] = 1
        first = np.argwhere(voxels == x[0, 0, 0])[0][::-1]
        after = np.argwhere(voxels == x[tuple(step)])[0][::-1]
        moved = vol.index_to_lps(after.astype(float)) - vol.index_to_lps(first.astype(float))
        assert float(moved @ np.array(lps_sign)) > 0.5 * np.linalg.norm(moved)
    assert np.array_equal(h.restore(x, perm, flips), voxels)
    box = (slice(1, 3), slice(0, 2), slice(2, 4))
    marked = np.zeros(x.shape, bool)
    marked[box] = True
    back = np.zeros(voxels.shape, bool)
    back[h.restore_box(box, perm, flips, voxels.shape)] = True
    assert np.array_equal(h.restore(marked, perm, flips), back)


def test_nearest_resize_samples_voxel_centres():
    h = _hooks()
    x = np.arange(8, dtype=np.float32).reshape(8, 1, 1)
    assert h.resize_nearest(x, (4, 1, 1)).ravel().tolist() == [1, 3, 5, 7]  # (n + 0.5) * 2 -> 1, 3, 5, 7
    assert h.resize_nearest(x[:4], (8, 1, 1)).ravel().tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_resizing_a_transposed_view_and_repeating_read_voxels_equal_plain_nearest_resizing():
    h = _hooks()
    rng = np.random.default_rng(1)
    x = rng.integers(0, 100, (40, 50, 60)).astype(np.int16).transpose(2, 1, 0)[::-1, :, ::-1]  # as reorient() gives
    shape = (33, 47, 70)
    want = x[np.ix_(*[h.nearest_index(n, o) for n, o in zip(x.shape, shape)])]
    got = h.resize_nearest(x, shape)
    assert got.flags.c_contiguous and np.array_equal(got, want)
    for n, o in ((229, 256), (256, 320), (256, 256), (256, 200), (10, 37)):  # down, up, same
        v = rng.integers(0, 9, (n, 3))
        picks = h.nearest_index(n, o)
        runs, lengths = grid.runs(picks)
        assert np.array_equal(grid.repeat_runs(v[picks[runs]], [lengths, np.ones(3, int)]), v[picks])


def test_blocked_copy_equals_a_plain_copy_in_every_axis_order():
    import itertools

    h = _hooks()
    x = np.random.default_rng(2).integers(0, 250, (13, 17, 19)).astype(np.uint8)
    for order in itertools.permutations(range(3)):
        for flips in itertools.product((False, True), repeat=3):
            view = x[tuple(slice(None, None, -1) if f else slice(None) for f in flips)].transpose(order)
            out = np.full((24, 24, 24), 7, np.uint8)
            target = out[1:1 + view.shape[0], 2:2 + view.shape[1], 0:view.shape[2]]
            h.copy_blocked(target, view)
            assert np.array_equal(target, view)
            outside = np.ones(out.shape, bool)
            outside[1:1 + view.shape[0], 2:2 + view.shape[1], 0:view.shape[2]] = False
            assert np.all(out[outside] == 7)  # nothing written beside the target


def test_largest_region_filled_in_its_box_equals_the_whole_array():
    h = _hooks()
    rng = np.random.default_rng(8)
    for _ in range(8):
        mask = np.zeros((40, 42, 44), np.uint8)
        lo = rng.integers(1, 8, 3)
        hi = lo + rng.integers(20, 30, 3)
        mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = rng.random(hi - lo) > 0.25  # holes, islands, tunnels
        mask[rng.integers(0, 40), rng.integers(0, 42), rng.integers(0, 44)] = 1  # a stray voxel
        want = h.fill_holes(h.largest_component(mask))
        assert np.array_equal(h.largest_filled(mask), want)
    assert not h.largest_filled(np.zeros((5, 5, 5), bool)).any()


def test_normalisation_equals_the_plain_float_steps():
    h = _hooks()
    rng = np.random.default_rng(6)
    ints = rng.integers(-200, 3000, (40, 200, 190)).astype(np.int16)  # more than one chunk
    floats = rng.normal(100, 50, (23, 31, 17)).astype(np.float32)
    floats[3, 4, 5] = np.nan
    for x, low, high in ((ints, 30.5, 900.25), (floats, 20.0, 180.0)):
        y = np.nan_to_num(x.astype(np.float32))
        y = np.clip((y - np.float32(low)) * np.float32(1.0 / (high - low)), 0.0, 1.0)
        wide = y.astype(np.float64)
        want = (wide - wide.mean()) * (0.226 / wide.std(ddof=1)) + 0.449
        got = h.normalise(x, low, high)
        assert got.dtype == np.float32 and got.shape == x.shape and got.flags.c_contiguous
        assert np.allclose(got, want, atol=2e-6)


def test_largest_component_is_the_one_relabelling_by_size_puts_first():
    import SimpleITK as sitk

    h = _hooks()
    rng = np.random.default_rng(0)
    for _ in range(10):
        mask = (rng.random((30, 31, 32)) > rng.uniform(0.6, 0.8)).astype(np.uint8)
        components = sitk.ConnectedComponent(sitk.GetImageFromArray(mask), True)
        want = sitk.GetArrayFromImage(sitk.RelabelComponent(components, sortByObjectSize=True) == 1)
        assert np.array_equal(h.largest_component(mask), want)
    assert not h.largest_component(np.zeros((4, 4, 4), np.uint8)).any()


def test_holes_are_filled_as_simpleitk_fills_them():
    import SimpleITK as sitk

    h = _hooks()
    rng = np.random.default_rng(4)
    for _ in range(5):
        mask = np.zeros((30, 32, 34), np.uint8)
        mask[4:26, 5:27, 6:28] = 1
        mask[8:22, 9:23, 10:24] = rng.random((14, 14, 14)) > 0.6  # cavities: closed ones and ones that open
        mask[12:14, 0:8, 15:17] = 0  # a tunnel from the border: not a hole
        want = sitk.GetArrayFromImage(sitk.BinaryFillhole(sitk.GetImageFromArray(mask), False, 1))
        got = h.fill_holes(mask)
        assert got.dtype == np.uint8 and np.array_equal(got, want)
        assert np.count_nonzero(got) > np.count_nonzero(mask)


def test_normalisation_clips_then_standardises():
    h = _hooks()
    x = np.linspace(-50, 150, 1000, dtype=np.float32).reshape(10, 10, 10)
    y = h.normalise(x, 0.0, 100.0)
    assert y.dtype == np.float32
    assert float(y.mean()) == pytest.approx(0.449, abs=1e-4) and float(y.std(ddof=1)) == pytest.approx(0.226, abs=1e-4)
    assert np.all(y[x <= 0] == y.min()) and np.all(y[x >= 100] == y.max())  # clipped ends are flat


def test_bounding_box_widens_and_refuses_an_empty_mask():
    h = _hooks()
    small = np.zeros((16, 16, 16), np.uint8)
    small[4:12, 6:10, 2:14] = 1
    box = h.bounding_box(small, (32, 64, 16))
    # centres 16, 32, 8; sizes round(16 * 1.2), round(16 * 1.2), round(12 * 1.2) = 19, 19, 14
    assert box == (slice(6, 25), slice(22, 41), slice(1, 15))
    with pytest.raises(h.NoBrainFound, match="no brain found"):
        h.bounding_box(np.zeros((8, 8, 8), np.uint8), (8, 8, 8))


def test_missing_hooks_module_and_missing_extra_model_are_clear(tmp_path):
    m = load_manifest(FOLDER / "plugin.toml")
    mr = Volume(np.zeros((8, 8, 8), np.int16), np.eye(4), VolumeInfo(modality="MR"))
    with pytest.raises(HooksError, match="hooks module .*hooks.py does not exist"):
        load_hooks(Plugin(m, tmp_path, "folder"))
    (tmp_path / "model.onnx").write_bytes((FOLDER / "model.onnx").read_bytes())
    (tmp_path / "hooks.py").write_text("def infer(volume, context):\n    raise AssertionError('not reached')\n")
    with pytest.raises(ModelNotFound, match="'bbox_model.onnx' not found"):
        run_plugin(Plugin(m, tmp_path, "folder"), mr, RunOptions(search_path=()))
    (tmp_path / "bbox_model.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelLoadError, match="bbox_model.onnx: not a usable ONNX model"):
        run_plugin(Plugin(m, tmp_path, "folder"), mr, RunOptions(search_path=()))


def test_hooks_returning_the_wrong_grid_is_refused(tmp_path):
    m = replace(load_manifest(FOLDER / "plugin.toml"), id="wrong-grid")
    for name in ("model.onnx", "bbox_model.onnx"):
        (tmp_path / name).write_bytes((FOLDER / name).read_bytes())
    (tmp_path / "hooks.py").write_text(
        "import numpy as np\n\ndef infer(volume, context):\n"
        "    return np.zeros((2, 2, 2), np.uint8), np.zeros((2, 2, 2), np.uint8)\n")
    mr = Volume(np.zeros((8, 8, 8), np.int16), np.eye(4), VolumeInfo(modality="MR"))
    with pytest.raises(HooksError, match=r"labels of shape \(2, 2, 2\), not the source grid \(8, 8, 8\)"):
        run_plugin(Plugin(m, tmp_path, "folder"), mr, RunOptions(search_path=()))
    (tmp_path / "hooks.py").write_text(
        "import numpy as np\nfrom workstation.ai.hooks import Measured\n\ndef infer(volume, context):\n"
        "    return Measured(np.zeros(volume.shape, np.uint8), ('not a finding',))\n")
    with pytest.raises(HooksError, match="without a labels array and Finding objects"):
        run_plugin(Plugin(replace(m, id="wrong-findings"), tmp_path, "folder"), mr, RunOptions(search_path=()))


def test_a_volume_without_a_brain_is_refused_clearly():
    from workstation.ai.hooks import InputRefused

    blank = Volume(np.zeros((64, 64, 64), np.int16), np.eye(4), VolumeInfo(modality="MR"))
    with pytest.raises(InputRefused, match="no brain found in this volume"):
        run_plugin(_plugin(), blank, RunOptions(threads=2))


def test_cancel_stops_the_pipeline():
    token = CancelToken()
    token.cancel()
    voxels = np.random.default_rng(0).integers(0, 100, (32, 32, 32)).astype(np.int16)
    mr = Volume(voxels, np.eye(4), VolumeInfo(modality="MR"))
    with pytest.raises(Cancelled):
        run_plugin(_plugin(), mr, RunOptions(threads=2), cancel=token)


@pytest.fixture(scope="module")
def brain_on_7t():
    from workstation.dicom.series import examine, load_volume

    plans, _ = examine([shared_case("mr-head-t1-7t") / "dicom"])
    volume = load_volume(plans[0])
    steps = []
    result = run_plugin(_plugin(), volume, RunOptions(threads=2), progress=steps.append)
    return volume, result, steps


def test_brain_extraction_on_7t_head(brain_on_7t):
    volume, result, steps = brain_on_7t
    lm = result.labelmap
    assert lm.is_on_grid_of(volume) and lm.labels.shape == volume.shape  # on the SOURCE grid
    assert set(np.unique(lm.labels).tolist()) == {0, 1}
    brain_ml = lm.volume_mm3(1) / 1000.0
    assert 1000 < brain_ml < 1900  # an adult brain with its CSF (deepbet itself gives 1791.7 mL here)
    seg = lm.segments[0]
    assert (seg.name, seg.type.value, seg.algorithm.name, seg.algorithm.version) == (
        "Brain", "12738006", "brain-extraction", "1.0.2")
    (finding,) = result.findings
    i, j, k = np.rint(volume.lps_to_index(np.asarray(finding.centroid_mm))).astype(int)
    ks, js, is_ = volume.shape
    assert 0 <= i < is_ and 0 <= j < js and 0 <= k < ks
    head = volume.voxels > np.percentile(volume.voxels, 60)
    assert head[k, j, i] or lm.labels[k, j, i] == 1  # the centroid is in tissue, inside the head
    head_centre = np.argwhere(head).mean(axis=0)
    assert np.linalg.norm((np.array([k, j, i]) - head_centre) * np.array(volume.spacing[::-1])) < 60.0
    inside = volume.voxels[lm.labels == 1].mean()
    assert inside > 2 * volume.voxels[lm.labels == 0].mean()  # brain is brighter than skull + air on T1
    assert 130 < finding.size_mm[0] < 200 and finding.score > 0.9
    # the finding, measured by the hook on the crop grid, is the whole mask on the source grid
    assert finding.volume_mm3 == pytest.approx(lm.volume_mm3(1), rel=1e-12)
    where = np.argwhere(lm.labels == 1)[:, ::-1].astype(float)  # (i, j, k)
    assert np.allclose(finding.centroid_mm, volume.index_to_lps(where.mean(axis=0)), atol=1e-6)
    lo, hi = where.min(axis=0), where.max(axis=0)
    corners = volume.index_to_lps(np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1])
                                            for c in (lo[2], hi[2])]))
    assert np.allclose(finding.bbox_min_mm, corners.min(axis=0)) and np.allclose(finding.bbox_max_mm, corners.max(axis=0))
    assert steps[-1].text == "done"
    assert {"preprocess", "inference", "postprocess", "map_back", "total"} <= set(result.timings_s)



def test_the_same_head_stored_in_another_axis_order_gives_the_same_mask(brain_on_7t):
    """deepbet works on the scan reoriented to R, A, S: the scan stored slice by slice in another order (and
    direction) must give the same brain, voxel for voxel -- every reorientation, expansion and copy back."""
    volume, result, _ = brain_on_7t
    _, rows, _ = volume.shape
    # stored as [i, reversed j, k]: index (i2, j2, k2) of the copy is (k2, rows - 1 - j2, i2) of the original
    voxels = np.ascontiguousarray(volume.voxels.transpose(2, 1, 0)[:, ::-1, :])
    to_original = np.array([[0, 0, 1, 0], [0, -1, 0, rows - 1], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    stored = Volume(voxels, volume.affine @ to_original, volume.info)
    again = run_plugin(_plugin(), stored, RunOptions(threads=2))
    assert np.array_equal(again.labelmap.labels, result.labelmap.labels.transpose(2, 1, 0)[:, ::-1, :])
    (a,), (b,) = result.findings, again.findings
    assert (a.volume_mm3, a.score) == (b.volume_mm3, b.score)
    for p, q in ((a.centroid_mm, b.centroid_mm), (a.bbox_min_mm, b.bbox_min_mm), (a.bbox_max_mm, b.bbox_max_mm)):
        assert np.allclose(p, q, atol=1e-6)
