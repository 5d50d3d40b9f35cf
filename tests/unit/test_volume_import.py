"""Volume files (NIfTI, NRRD, MetaImage, InVesalius) -> DICOM series -> the same grid and values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.shared_data import shared_case
from workstation.dicom.errors import DicomReadError
from workstation.dicom.series import examine, load_volume
from workstation.dicom.volume_import import read_volume_file, volume_file_to_dicom

CH2 = Path("/usr/share/mricron/templates/ch2.nii.gz")
CRANIUM = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")


def _system_file(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not installed (Debian packages mricron-data / invesalius-examples)")
    return path


def _round_trip(src: Path, out: Path, **kwargs):
    files = volume_file_to_dicom(src, out, **kwargs)
    plans, skipped = examine([out])
    assert skipped == [] and len(plans) == 1
    return files, plans[0], load_volume(plans[0])


def test_nifti_mri_round_trip_keeps_affine_and_values(tmp_path):
    src = _system_file(CH2)
    source = read_volume_file(src)
    files, plan, vol = _round_trip(src, tmp_path, patient_name="Doe^Jane", patient_id="P1")
    assert len(files) == source.voxels.shape[0] == 181
    assert np.abs(vol.affine - source.affine).max() < 1e-3
    assert np.array_equal(vol.voxels, source.voxels)
    assert vol.info.modality == "MR" and vol.info.patient_id == "P1" and vol.info.patient_name == "Doe^Jane"
    ds = pydicom.dcmread(files[0])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
    assert ds.FrameOfReferenceUID and ds.SeriesInstanceUID != ds.StudyInstanceUID
    assert vol.info.default_window is not None and vol.info.default_window.width > 0


def test_invesalius_project_round_trip(tmp_path):
    src = _system_file(CRANIUM)
    source = read_volume_file(src)
    assert source.voxels.shape == (108, 256, 256) and source.voxels.dtype == np.int16
    files, plan, vol = _round_trip(src, tmp_path, study_description="Cranium")
    assert plan.modality == "CT" and vol.info.units == "HU"
    assert np.allclose(vol.spacing, (0.9570312, 0.9570312, 1.5), atol=1e-6)
    assert np.abs(vol.affine - source.affine).max() < 1e-3
    assert np.array_equal(vol.voxels, source.voxels)
    assert vol.info.default_window.center == -18 and vol.info.default_window.width == 406
    assert pydicom.dcmread(files[0]).StudyDescription == "Cranium"


def test_left_handed_nifti_loads_on_the_same_voxel_centres(tmp_path):
    src = shared_case("ct-abdomen-j2k") / "labels-totalsegmentator.nii.gz"
    source = read_volume_file(src)
    _, _, vol = _round_trip(src, tmp_path, modality="CT")
    # the loader orders slices along row x column cosine: here that reverses the slice axis
    flipped = source.affine @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, 19], [0, 0, 0, 1]], float)
    assert np.abs(vol.affine - flipped).max() < 1e-3
    assert np.array_equal(vol.voxels, source.voxels[::-1])


def test_nrrd_mask_round_trip(tmp_path):
    src = shared_case("seg-ct-3slice-dcmqi") / "liver_seg.nrrd"
    source = read_volume_file(src)
    _, _, vol = _round_trip(src, tmp_path)
    assert np.abs(vol.affine - source.affine).max() < 1e-3
    assert np.array_equal(vol.voxels, source.voxels)


def test_float_metaimage_is_rescaled_into_int16(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    rng = np.random.default_rng(3)
    data = (rng.random((4, 5, 6)) * 3.7 - 1.2).astype(np.float32)
    image = sitk.GetImageFromArray(data)
    image.SetSpacing((0.5, 0.75, 2.0))
    image.SetOrigin((10.0, -20.0, 30.0))
    c, s = np.cos(0.3), np.sin(0.3)
    image.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))  # rotated in-plane, right-handed
    src = tmp_path / "float.mha"
    sitk.WriteImage(image, str(src))
    source = read_volume_file(src)
    _, plan, vol = _round_trip(src, tmp_path / "out")
    assert vol.voxels.dtype == np.float32
    assert np.abs(vol.affine - source.affine).max() < 1e-3
    step = (data.max() - data.min()) / 65535
    assert np.abs(vol.voxels - data).max() <= step
    ds = pydicom.dcmread(sorted((tmp_path / "out").iterdir())[0])
    assert ds.PixelRepresentation == 1 and float(ds.RescaleSlope) != 1.0


def test_unreadable_volume_file_raises(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(DicomReadError) as info:
        volume_file_to_dicom(bad, tmp_path / "out")
    assert info.value.path == str(bad) and info.value.reason.startswith("cannot read volume file")
    with pytest.raises(DicomReadError, match="not a volume file"):
        volume_file_to_dicom(tmp_path / "image.png", tmp_path / "out")
    fake = tmp_path / "fake.inv3"
    fake.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DicomReadError, match="not a readable InVesalius project"):
        volume_file_to_dicom(fake, tmp_path / "out")
