"""Geometry of every series in the shared data: sorting, spacing, affine, tilt, gaps, shape."""

from __future__ import annotations

import numpy as np
import pytest

from tests.shared_data import shared_case
from workstation.dicom.plan import SeriesKind
from workstation.dicom.series import examine, load_volume
from workstation.dicom.stack import unit_axes


def _only_plan(folder):
    plans, skipped = examine([folder])
    assert len(plans) == 1, [p.stack_key for p in plans]
    return plans[0], skipped


@pytest.fixture(scope="module")
def lidc():
    plan, skipped = _only_plan(shared_case("ct-chest-lidc-0001") / "dicom")
    return plan, skipped, load_volume(plan)


def test_lidc_stack_is_sorted_by_position_not_file_name(lidc):
    plan, skipped, vol = lidc
    assert skipped == []
    assert plan.kind is SeriesKind.VOLUME and len(plan.slices) == 133
    steps = np.diff(plan.positions_mm)
    assert np.allclose(steps, 2.5, atol=1e-3)
    # file 000001 is not the first slice along z: the sort must not follow the file names
    assert plan.files[0].endswith("000001.dcm") is False
    assert plan.needs_resampling is False and plan.warnings == ()


def test_lidc_volume_grid(lidc):
    _, _, vol = lidc
    assert vol.shape == (133, 512, 512)
    assert vol.voxels.dtype == np.int16
    assert np.allclose(vol.spacing, (0.703125, 0.703125, 2.5), atol=1e-6)
    assert np.allclose(vol.direction, np.eye(3), atol=1e-9)
    assert np.allclose(vol.origin, (-166.0, -171.699997, -340.0), atol=1e-4)
    assert vol.info.gantry_tilt_deg == 0.0
    assert vol.info.units == "HU"
    assert len(vol.info.source_sop_instance_uids) == 133


def test_lidc_hounsfield_units_and_padding(lidc):
    _, _, vol = lidc
    mid = vol.voxels[66]
    # air above the patient (inside the scan circle) and inside the lungs is near -1000 HU
    assert abs(float(np.median(mid[2:20, 236:276])) + 1000) < 40
    assert float(np.median(mid[256, 100:180])) < -800
    # the -2048 HU padding outside the scan circle is present but excluded from display ranges
    assert (vol.voxels == -2048).any()
    assert vol.info.padding_value == -2048.0
    lo, hi = vol.display_range()
    assert lo > -2048 and lo <= -1000 and hi > 2000
    assert vol.percentile_window().low > -2048
    assert vol.auto_window().center == -600 and vol.auto_window().width == 1600


@pytest.fixture(scope="module")
def tilt():
    plan, skipped = _only_plan(shared_case("ct-head-ge-tilt") / "dicom")
    captured = {}

    def grab(partial):
        captured["acquired"] = partial

    vol = load_volume(plan, into=grab)
    return plan, vol, captured["acquired"]


def test_tilt_reported_and_uneven_spacing_warned(tilt):
    plan, vol, _ = tilt
    assert plan.needs_resampling
    assert vol.info.gantry_tilt_deg == pytest.approx(18.5, abs=0.1)
    text = " | ".join(vol.info.warnings)
    assert "gantry tilt 18.5 deg: resampled onto an orthogonal grid" in text
    assert "uneven slice spacing (4.0, 1.08, 7.0 mm)" in text
    steps = np.round(np.diff(vol.info.acquired_slice_positions_mm), 2)
    assert len(vol.info.acquired_slice_positions_mm) == 28
    # 14 slices 4.0 mm apart, one 1.08 mm step, then 14 slices 7.0 mm apart
    assert list(steps).count(4.0) == 13 and list(steps).count(1.08) == 1 and list(steps).count(7.0) == 13


def test_tilt_resampled_grid_is_orthogonal_and_covers_stack(tilt):
    plan, vol, acquired = tilt
    d = vol.direction
    assert np.allclose(d.T @ d, np.eye(3), atol=1e-9)
    r, c, n = unit_axes(plan.row_cosine, plan.column_cosine)
    assert np.allclose(d[:, 2], n, atol=1e-9)
    assert vol.spacing[2] == pytest.approx(4.0, abs=0.05)
    assert vol.spacing[2] >= min(plan.pixel_spacing)
    assert vol.voxels.dtype == np.int16
    span = plan.positions_mm[-1] - plan.positions_mm[0]
    assert (vol.shape[0] - 1) * vol.spacing[2] == pytest.approx(span, abs=1e-6)
    assert vol.shape[1] > 512  # grown to hold the sideways drift of the tilted stack
    # the acquired grid handed to `into` is the sheared one, as acquired
    assert acquired.shape == (28, 512, 512)


def _bone_centroid_lps(pixels, position, r, c, spacing):
    jj, ii = np.nonzero(pixels > 300)
    dr, dc = spacing
    return position + ii.mean() * dc * r + jj.mean() * dr * c


def test_tilt_distance_same_in_acquired_and_resampled(tilt):
    """Skull centroids of the first and last slices: same LPS distance before and after resampling."""
    plan, vol, acquired = tilt
    r, c, _ = unit_axes(plan.row_cosine, plan.column_cosine)
    first, last = (np.asarray(plan.slices[k].position) for k in (0, -1))
    a0 = _bone_centroid_lps(acquired.voxels[0], first, r, c, plan.pixel_spacing)
    a1 = _bone_centroid_lps(acquired.voxels[-1], last, r, c, plan.pixel_spacing)
    origin_last = vol.index_to_lps(np.array([0.0, 0.0, vol.shape[0] - 1]))
    b0 = _bone_centroid_lps(vol.voxels[0], vol.origin, r, c, plan.pixel_spacing)
    b1 = _bone_centroid_lps(vol.voxels[-1], origin_last, r, c, plan.pixel_spacing)
    assert np.linalg.norm(a0 - b0) < 1.0 and np.linalg.norm(a1 - b1) < 1.0
    assert np.linalg.norm(a1 - a0) == pytest.approx(np.linalg.norm(b1 - b0), abs=1.0)


def test_tilt_resampled_values_match_acquired_slice(tilt):
    plan, vol, acquired = tilt
    r, c, _ = unit_axes(plan.row_cosine, plan.column_cosine)
    dr, dc = plan.pixel_spacing
    k = 0
    pos = np.asarray(plan.slices[k].position)
    jj, ii = np.mgrid[40:480:16, 40:480:16]
    pts = pos + ii[..., None] * dc * r + jj[..., None] * dr * c
    idx = np.rint(vol.lps_to_index(pts.reshape(-1, 3))).astype(int)
    got = vol.voxels[idx[:, 2], idx[:, 1], idx[:, 0]].astype(float)
    want = acquired.voxels[k][jj, ii].reshape(-1).astype(float)
    assert np.corrcoef(got, want)[0, 1] > 0.95


def test_mr_7t_grid_and_anisotropic_pixels():
    plan, _ = _only_plan(shared_case("mr-head-t1-7t") / "dicom")
    vol = load_volume(plan)
    assert vol.shape == (384, 384, 274)
    assert vol.voxels.dtype == np.int16
    # PixelSpacing is [row spacing 0.667, column spacing 0.700]: the column step is 0.700 mm
    assert vol.spacing[0] == pytest.approx(0.699987828731537, abs=1e-6)
    assert vol.spacing[1] == pytest.approx(0.666666686534882, abs=1e-6)
    assert vol.spacing[2] == pytest.approx(0.6667, abs=2e-3)
    assert np.allclose(vol.direction[:, 0], plan.row_cosine, atol=1e-6)
    assert np.allclose(vol.direction[:, 1], plan.column_cosine, atol=1e-6)
    assert vol.info.modality == "MR" and vol.info.default_window is None
    assert vol.auto_window().width > 0


def test_j2k_abdomen_matches_totalsegmentator_grid():
    sitk = pytest.importorskip("SimpleITK")
    case = shared_case("ct-abdomen-j2k")
    plan, _ = _only_plan(case / "dicom")
    vol = load_volume(plan)
    assert vol.shape == (20, 512, 512)
    labels = sitk.ReadImage(str(case / "labels-totalsegmentator.nii.gz"))
    assert tuple(reversed(labels.GetSize())) == vol.shape
    a = np.eye(4)
    a[:3, :3] = np.array(labels.GetDirection()).reshape(3, 3) * np.array(labels.GetSpacing())
    a[:3, 3] = labels.GetOrigin()
    # same voxel centres (the NIfTI runs its rows and the DICOM its slices the other way)
    corners = np.array([[i, j, k] for i in (0, 511) for j in (0, 511) for k in (0, 19)], float)
    ours = sorted(map(tuple, np.round(vol.index_to_lps(corners), 2)))
    theirs = sorted(map(tuple, np.round(corners @ a[:3, :3].T + a[:3, 3], 2)))
    assert np.allclose(ours, theirs, atol=0.01)
    assert np.allclose(vol.spacing, labels.GetSpacing(), atol=1e-4)


def test_seg_case_loads_images_and_skips_segmentations():
    case = shared_case("seg-ct-3slice-dcmqi")
    plans, skipped = examine([case])
    assert len(plans) == 1 and len(plans[0].slices) == 3
    vol = load_volume(plans[0])
    assert vol.shape == (3, 512, 512)
    assert vol.spacing[2] == pytest.approx(1.0, abs=1e-4)
    reasons = {s.path.rsplit("/", 1)[-1]: s.reason for s in skipped}
    for name in ("liver.dcm", "partial_overlaps.dcm", "sparse-labelmap-noppv.dcm", "sparse-labelmap-ppv5.dcm"):
        assert reasons[name] == "segmentation object, not an image series"
    assert reasons["liver_seg.nrrd"].startswith("not a DICOM file")
    # PixelPaddingValue -2000 stored is -3024 HU after the rescale, and is kept out of display ranges
    assert vol.info.padding_value == -3024.0
    assert vol.display_range()[0] > -3024


def test_load_series_convenience_and_examine_progress():
    from workstation.dicom.series import load_series

    case = shared_case("seg-ct-3slice-dcmqi")
    volumes = load_series([case / "dicom"])
    assert [v.shape for v in volumes] == [(3, 512, 512)]
    seen = []
    examine([case / "dicom"], progress=seen.append)
    assert seen[-1].done == seen[-1].total == 3
