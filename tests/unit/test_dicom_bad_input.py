"""Bad files get a specific reason naming the file, and everything else still loads."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.shared_data import shared_case
from workstation.archive.client import CancelToken, Cancelled
from workstation.dicom.errors import DicomReadError
from workstation.dicom.plan import SeriesKind
from workstation.dicom.reading import read_header
from workstation.dicom.series import examine, load_volume


@pytest.fixture(scope="module")
def lidc_files():
    """Eight LIDC files that are consecutive along z (2.5 mm apart), in position order."""
    plans, _ = examine([shared_case("ct-chest-lidc-0001") / "dicom"])
    return [Path(p) for p in plans[0].files[60:68]]


def _copy(files, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for f in files:
        target = folder / f.name
        shutil.copyfile(f, target)
        out.append(target)
    return out


def _variant(src: Path, target: Path, **changes) -> Path:
    """A copy of ``src`` as a new instance, with attributes changed (None deletes)."""
    ds = pydicom.dcmread(src)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for key, value in changes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(target)
    return target


def _reasons(skipped):
    return {Path(s.path).name: s.reason for s in skipped}


def test_error_message_names_file_and_reason(tmp_path):
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(DicomReadError) as info:
        read_header(empty)
    assert info.value.path == str(empty) and info.value.reason == "empty file (0 bytes)"
    assert str(info.value) == f"{empty}: empty file (0 bytes)"


def test_each_bad_file_is_skipped_with_its_reason_and_the_rest_loads(tmp_path, lidc_files):
    good = _copy(lidc_files, tmp_path / "in")
    raw = lidc_files[0].read_bytes()
    (tmp_path / "in" / "truncated.dcm").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "in" / "header-cut.dcm").write_bytes(raw[:900])
    (tmp_path / "in" / "notes.txt").write_text("this is not an image\n" * 20)
    (tmp_path / "in" / "zero.dcm").write_bytes(b"")
    sr = pydicom.dcmread(lidc_files[0])
    del sr.PixelData
    for key in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation"):
        delattr(sr, key)
    sr.SOPClassUID = sr.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"
    sr.SOPInstanceUID = generate_uid()
    sr.save_as(tmp_path / "in" / "report.dcm")
    plans, skipped = examine([tmp_path / "in"])
    reasons = _reasons(skipped)
    assert reasons["truncated.dcm"].startswith("truncated file: pixel data needs 524288 bytes")
    assert reasons["header-cut.dcm"].startswith("truncated file")
    assert reasons["notes.txt"] == "not a DICOM file (no DICM preamble and not parseable as DICOM)"
    assert reasons["zero.dcm"] == "empty file (0 bytes)"
    assert reasons["report.dcm"] == "no pixel data (SOP class Enhanced SR Storage, e.g. a structured report)"
    assert all(str(tmp_path) in s.path for s in skipped)
    assert len(plans) == 1 and len(plans[0].slices) == len(good)
    vol = load_volume(plans[0])
    assert vol.shape == (8, 512, 512)


def test_missing_image_position_skips_that_file(tmp_path, lidc_files):
    _copy(lidc_files[:4], tmp_path)
    _variant(lidc_files[4], tmp_path / "nopos.dcm", ImagePositionPatient=None)
    plans, skipped = examine([tmp_path])
    assert _reasons(skipped) == {"nopos.dcm": "missing ImagePositionPatient"}
    assert len(plans) == 1 and len(plans[0].slices) == 4


def test_all_positions_missing_falls_back_to_images(tmp_path, lidc_files):
    for n, f in enumerate(lidc_files[:3]):
        _variant(f, tmp_path / f"nopos{n}.dcm", ImagePositionPatient=None)
    plans, skipped = examine([tmp_path])
    assert skipped == [] and len(plans) == 3
    assert all(p.kind is SeriesKind.IMAGES for p in plans)
    assert all("no ImagePositionPatient" in p.warnings[0] for p in plans)
    assert load_volume(plans[0]).shape == (1, 512, 512)


def test_mixed_orientations_in_one_series_are_split(tmp_path, lidc_files):
    _copy(lidc_files[:4], tmp_path)
    for n, f in enumerate(lidc_files[:3]):
        _variant(f, tmp_path / f"sag{n}.dcm", ImageOrientationPatient=[0, 1, 0, 0, 0, -1],
                 ImagePositionPatient=[float(n * 3), -100.0, 50.0])
    plans, skipped = examine([tmp_path])
    assert skipped == [] and len(plans) == 2
    sizes = sorted(len(p.slices) for p in plans)
    assert sizes == [3, 4]
    for p in plans:
        assert p.stack_key.startswith("orientation")
        assert any("split into 2 stacks by orientation/size" in w for w in p.warnings)
        assert load_volume(p).shape[0] == len(p.slices)


def test_two_echoes_at_the_same_positions_are_split(tmp_path, lidc_files):
    for n, f in enumerate(lidc_files[:3]):
        _variant(f, tmp_path / f"e1_{n}.dcm", EchoNumbers=1)
        _variant(f, tmp_path / f"e2_{n}.dcm", EchoNumbers=2)
    plans, _ = examine([tmp_path])
    assert len(plans) == 2 and all(len(p.slices) == 3 for p in plans)
    assert sorted(p.stack_key.rsplit(";", 1)[-1].strip() for p in plans) == ["echo 1", "echo 2"]
    assert all("split into 2 stacks by echo" in p.warnings[0] for p in plans)


def test_duplicate_sop_instance_uid_is_kept_once(tmp_path, lidc_files):
    _copy(lidc_files[:4], tmp_path)
    shutil.copyfile(lidc_files[1], tmp_path / "copy-of-second.dcm")
    plans, skipped = examine([tmp_path])
    assert skipped == [] and len(plans) == 1 and len(plans[0].slices) == 4
    assert any("duplicate SOP Instance UID" in w for w in plans[0].warnings)


def test_same_position_different_instance_warns(tmp_path, lidc_files):
    _copy(lidc_files[:4], tmp_path)
    _variant(lidc_files[2], tmp_path / "again.dcm")
    plans, _ = examine([tmp_path])
    assert len(plans[0].slices) == 4
    assert any("share position" in w and "different SOP Instance UIDs" in w for w in plans[0].warnings)


def test_missing_slice_gives_a_gap_warning_and_even_grid(tmp_path, lidc_files):
    files = lidc_files[:4] + lidc_files[5:8]  # the 5th is missing: one 5 mm step among 2.5 mm steps
    _copy(files, tmp_path)
    plans, _ = examine([tmp_path])
    plan = plans[0]
    gap = [w for w in plan.warnings if w.startswith("gap of 5.0 mm")]
    assert gap and "expected ~2.5 mm" in gap[0] and "possibly missing slices" in gap[0]
    vol = load_volume(plan)
    assert vol.shape[0] == 8 and vol.spacing[2] == pytest.approx(2.5)
    # the interpolated slice lies between its neighbours
    assert np.corrcoef(vol.voxels[4].ravel(), vol.voxels[3].ravel())[0, 1] > 0.9


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="running as root: chmod 000 does not stop root from reading")
def test_unreadable_file_is_permission_denied(tmp_path, lidc_files):
    files = _copy(lidc_files[:3], tmp_path)
    os.chmod(files[0], 0)
    try:
        plans, skipped = examine([tmp_path])
    finally:
        os.chmod(files[0], 0o644)
    assert _reasons(skipped) == {files[0].name: "permission denied"}
    assert len(plans[0].slices) == 2


def test_progress_into_and_cancel(tmp_path, lidc_files):
    _copy(lidc_files, tmp_path)
    plan = examine([tmp_path])[0][0]
    seen, calls = [], []

    def into(partial):
        calls.append(partial)

    def on_slice(done, total):
        if done == 1:  # the middle slice is already there when the first progress arrives
            assert calls[0].voxels[total // 2].any()
        seen.append((done, total))

    vol = load_volume(plan, on_slice=on_slice, into=into)
    assert len(calls) == 1 and calls[0].voxels is vol.voxels
    assert np.allclose(calls[0].affine, vol.affine)
    assert seen[-1] == (8, 8) and len(seen) == 8
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        load_volume(plan, cancel=token)
    with pytest.raises(Cancelled):
        examine([tmp_path], cancel=token)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="running as root: chmod 000 does not stop root from listing a folder")
def test_unreadable_folder_is_reported_and_the_rest_loads(tmp_path, lidc_files):
    _copy(lidc_files[:3], tmp_path / "ok")
    locked = tmp_path / "locked"
    _copy(lidc_files[3:5], locked)
    os.chmod(locked, 0)
    try:
        plans, skipped = examine([tmp_path])
    finally:
        os.chmod(locked, 0o755)
    assert [(Path(s.path).name, s.reason) for s in skipped] == [("locked", "permission denied")]
    assert len(plans[0].slices) == 3


def test_missing_path_is_reported(tmp_path, lidc_files):
    _copy(lidc_files[:2], tmp_path)
    plans, skipped = examine([tmp_path, tmp_path / "gone.dcm"])
    assert _reasons(skipped) == {"gone.dcm": "file not found"}
    assert len(plans[0].slices) == 2


def test_permission_denied_file_simulated(tmp_path, lidc_files, monkeypatch):
    """The same path as the chmod test, runnable as root: open() refuses one file."""
    from workstation.dicom import reading

    files = _copy(lidc_files[:3], tmp_path)
    real_open = open

    def guarded_open(path, *args, **kwargs):
        if str(path) == str(files[0]):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(reading, "open", guarded_open, raising=False)
    plans, skipped = examine([tmp_path])
    assert _reasons(skipped) == {files[0].name: "permission denied"}
    assert len(plans[0].slices) == 2


def test_unreadable_folder_simulated(tmp_path, lidc_files, monkeypatch):
    from workstation.dicom import series

    _copy(lidc_files[:3], tmp_path / "ok")
    locked = tmp_path / "locked"
    _copy(lidc_files[3:5], locked)
    real_access = os.access
    monkeypatch.setattr(series.os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    plans, skipped = examine([tmp_path / "ok", locked])
    assert [(Path(s.path).name, s.reason) for s in skipped] == [("locked", "permission denied")]
    assert len(plans[0].slices) == 3
