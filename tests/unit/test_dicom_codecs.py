"""Transfer syntaxes, the raw fast path, enhanced multi-frame, RGB and MONOCHROME1 images."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.shared_data import shared_case
from workstation.dicom import reading
from workstation.dicom.errors import DicomReadError
from workstation.dicom.plan import SeriesKind
from workstation.dicom.series import examine, load_volume
from workstation.model.volume import Photometric


def _load_file(path):
    plans, skipped = examine([path])
    assert skipped == [] and len(plans) == 1
    return load_volume(plans[0])


def test_mr_slice_codecs_all_decode_to_identical_pixels():
    folder = shared_case("mr-slice-codecs") / "dicom"
    reference = pydicom.dcmread(folder / "1.dcm").pixel_array
    syntaxes = set()
    for n in range(1, 10):
        path = folder / f"{n}.dcm"
        syntaxes.add(str(reading.read_header(path).file_meta.TransferSyntaxUID))
        vol = _load_file(path)
        assert vol.shape == (1, 384, 384), path
        assert np.array_equal(vol.voxels[0], reference), f"{path.name} decodes differently"
    assert len(syntaxes) == 7  # JPEG lossless and JPEG-LS each appear twice (different encoders)


def test_mr_slice_codecs_in_one_folder_share_a_position_and_warn():
    plans, _ = examine([shared_case("mr-slice-codecs") / "dicom"])
    assert len(plans) == 1
    assert any("share position" in w for w in plans[0].warnings)


def test_raw_fast_path_equals_pydicom_decode_with_rescale():
    folder = shared_case("ct-chest-lidc-0001") / "dicom"
    vol = _load_file(folder / "000010.dcm")
    ds = pydicom.dcmread(folder / "000010.dcm")
    expected = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    assert vol.voxels.dtype == np.int16
    assert np.array_equal(vol.voxels[0], expected)


def test_j2k_abdomen_decodes_twenty_slices():
    folder = shared_case("ct-abdomen-j2k") / "dicom"
    plans, skipped = examine([folder])
    assert skipped == [] and len(plans) == 1
    vol = load_volume(plans[0])
    assert vol.shape == (20, 512, 512) and vol.voxels.dtype == np.int16
    assert np.allclose(np.diff(plans[0].positions_mm), 2.0)
    first = sorted(folder.iterdir())[0]
    ds = pydicom.dcmread(first)
    hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    k = plans[0].files.index(str(first))
    assert np.array_equal(vol.voxels[k], hu)
    assert -1100 < float(vol.voxels.min()) and float(vol.voxels.max()) > 500


def test_missing_codec_names_the_package(monkeypatch):
    path = shared_case("ct-abdomen-j2k") / "dicom"
    path = sorted(path.iterdir())[0]

    def no_decoder(self):
        raise RuntimeError("Unable to decode the pixel data as the following plugins are missing dependencies")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_decoder))
    with pytest.raises(DicomReadError) as info:
        reading.decode_all_frames(str(path))
    assert "JPEG 2000 needs pylibjpeg-openjpeg or python-gdcm" in info.value.reason
    assert info.value.path == str(path)


def _file_meta(sop_class, sop_uid):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _image_base(sop_class, modality, rows, cols):
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = _file_meta(sop_class, ds.SOPInstanceUID)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = modality
    ds.PatientName, ds.PatientID = "Test^Synthetic", "SYN1"
    ds.SeriesNumber = 7
    ds.Rows, ds.Columns = rows, cols
    return ds


def _enhanced_ct(path, positions, rows=6, cols=5):
    """A tiny Enhanced CT object: shared orientation/spacing, per-frame position, rescale and window."""
    ds = _image_base("1.2.840.10008.5.1.4.1.1.2.1", "CT", rows, cols)
    ds.FrameOfReferenceUID = generate_uid()
    ds.NumberOfFrames = len(positions)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    shared = Dataset()
    orient, measures = Dataset(), Dataset()
    orient.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # sagittal
    measures.PixelSpacing, measures.SliceThickness = [0.5, 0.8], 2.0
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = Sequence([orient]), Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for n, x in enumerate(positions):
        item, pos, lut, voi = Dataset(), Dataset(), Dataset(), Dataset()
        pos.ImagePositionPatient = [x, -10.0, 20.0]
        lut.RescaleSlope, lut.RescaleIntercept, lut.RescaleType = 1, -1024, "HU"
        voi.WindowCenter, voi.WindowWidth = [40, 400], [400, 1500]
        item.PlanePositionSequence, item.PixelValueTransformationSequence = Sequence([pos]), Sequence([lut])
        item.FrameVOILUTSequence = Sequence([voi])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    stored = np.stack([np.full((rows, cols), 1000 + 10 * n, np.uint16) for n in range(len(positions))])
    stored[:, 0, 0] = 4095
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return stored


def test_enhanced_multiframe_sorted_by_position_with_functional_groups(tmp_path):
    path = tmp_path / "enhanced.dcm"
    positions = [4.0, 0.0, 8.0, 2.0, 6.0]  # frames stored out of order on purpose
    stored = _enhanced_ct(path, positions)
    plans, skipped = examine([path])
    assert skipped == [] and len(plans) == 1
    plan = plans[0]
    assert plan.kind is SeriesKind.MULTIFRAME and plan.files == (str(path),)
    vol = load_volume(plan)
    assert vol.shape == (5, 6, 5) and vol.voxels.dtype == np.int16
    # normal of a sagittal (0,1,0)x(0,0,-1) plane is -x: slices run from x=8 down to x=0
    assert np.allclose(vol.direction, [[0, 0, -1], [1, 0, 0], [0, -1, 0]], atol=1e-9)
    assert np.allclose(vol.spacing, (0.8, 0.5, 2.0))
    assert np.allclose(vol.origin, (8.0, -10.0, 20.0))
    order = np.argsort([-x for x in positions])
    for k, f in enumerate(order):
        assert vol.voxels[k, 1, 1] == int(stored[f, 1, 1]) - 1024
    assert vol.voxels[0, 0, 0] == 4095 - 1024
    assert vol.info.default_window.center == 40 and vol.info.default_window.width == 400
    assert vol.info.units == "HU"


def test_rgb_ultrasound_cine_is_images_kind(tmp_path):
    ds = _image_base("1.2.840.10008.5.1.4.1.1.3.1", "US", 4, 3)
    ds.NumberOfFrames = 2
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    pixels = np.arange(2 * 4 * 3 * 3, dtype=np.uint8).reshape(2, 4, 3, 3)
    ds.PixelData = pixels.tobytes()
    ds.save_as(tmp_path / "us.dcm", enforce_file_format=True)
    plans, _ = examine([tmp_path])
    assert plans[0].kind is SeriesKind.IMAGES
    vol = load_volume(plans[0])
    assert vol.voxels.shape == (2, 4, 3, 3) and vol.voxels.dtype == np.uint8
    assert np.array_equal(vol.voxels, pixels)
    assert vol.info.photometric is Photometric.RGB
    assert any("1 mm" in w for w in vol.info.warnings)


def test_monochrome1_radiograph_uses_imager_pixel_spacing(tmp_path):
    ds = _image_base("1.2.840.10008.5.1.4.1.1.1", "CR", 8, 10)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.ImagerPixelSpacing = [0.15, 0.2]
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    pixels = (np.arange(80, dtype=np.uint16).reshape(8, 10) * 50) | 0xF000  # junk above bit 12
    ds.PixelData = pixels.tobytes()
    ds.save_as(tmp_path / "cr.dcm", enforce_file_format=True)
    plans, _ = examine([tmp_path / "cr.dcm"])
    vol = load_volume(plans[0])
    assert plans[0].kind is SeriesKind.IMAGES and vol.shape == (1, 8, 10)
    assert vol.info.photometric is Photometric.MONOCHROME1
    assert np.allclose(vol.spacing[:2], (0.2, 0.15))
    assert np.array_equal(vol.voxels[0], pixels & 0x0FFF)  # bits above BitsStored masked off
    assert vol.info.default_window.width == 4096
