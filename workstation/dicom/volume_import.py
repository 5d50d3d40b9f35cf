"""Import volume files (NIfTI, NRRD, MetaImage, InVesalius .inv3) as a new single-frame DICOM series.

SimpleITK reads NIfTI/NRRD/MHA and already reports geometry in LPS (it converts NIfTI's RAS), so
its origin, spacing and direction map straight onto ImagePositionPatient / ImageOrientationPatient /
PixelSpacing.  Each slice k is written at ``origin + k * slice_step``, so the series loads back on the
very same voxel grid.  (A left-handed source grid loads back with its slice axis reversed, because
the loader orders slices along row x column cosine; the voxel centres and values are the same.)
"""

from __future__ import annotations

import datetime as _dt
import gzip
import plistlib
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DSfloat

from workstation.dicom.errors import DicomReadError

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".inv3")
_INT16 = (-32768, 32767)


@dataclass(frozen=True)
class SourceVolume:
    """A volume read from a file: voxels [k, j, i], index->LPS affine, and hints from the file."""

    voxels: np.ndarray
    affine: np.ndarray
    modality: str | None = None
    window: tuple[float, float] | None = None
    description: str = ""


def read_volume_file(path: str | Path) -> SourceVolume:
    """Read a NIfTI / NRRD / MetaImage / .inv3 file into voxels plus an LPS affine."""
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(VOLUME_SUFFIXES):
        raise DicomReadError(str(path), f"not a volume file (expected one of {', '.join(VOLUME_SUFFIXES)})")
    if name.endswith(".inv3"):
        return _read_inv3(path)
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise DicomReadError(str(path), f"cannot read volume file: {str(exc).strip().splitlines()[-1]}") from None
    if image.GetDimension() != 3:
        raise DicomReadError(str(path), f"only 3D volumes can be imported (this one is {image.GetDimension()}D)")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise DicomReadError(str(path), "only single-component (grey-level) volumes can be imported")
    direction = np.array(image.GetDirection(), float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.array(image.GetSpacing(), float)  # columns scaled by spacing
    affine[:3, 3] = image.GetOrigin()
    return SourceVolume(sitk.GetArrayViewFromImage(image).copy(), affine, description=_stem(path))


def _read_inv3(path: Path) -> SourceVolume:
    """InVesalius project: gzip tar with main.plist and matrix.dat (raw int16, [slices, rows, cols])."""
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            main = plistlib.loads(tar.extractfile(members["main.plist"]).read())
            matrix = main["matrix"]
            raw = tar.extractfile(members[matrix.get("filename", "matrix.dat")]).read()
    except (tarfile.TarError, KeyError, plistlib.InvalidFileException, OSError, gzip.BadGzipFile) as exc:
        raise DicomReadError(str(path), f"not a readable InVesalius project ({exc})") from None
    shape = tuple(int(v) for v in matrix["shape"])
    dtype = np.dtype(matrix.get("dtype", "int16")).newbyteorder("<")
    need = int(np.prod(shape)) * dtype.itemsize
    if len(raw) < need:
        raise DicomReadError(str(path), f"truncated file: matrix.dat has {len(raw)} bytes, needs {need}")
    # a raw numpy memmap has no header; anything extra in front (an .npy header) is skipped
    voxels = np.frombuffer(raw, dtype, offset=len(raw) - need).reshape(shape).astype(dtype.newbyteorder("="))
    sx, sy, sz = (float(v) for v in main["spacing"])
    affine = np.diag([sx, sy, sz, 1.0])  # axial, identity cosines (InVesalius keeps its own orientation)
    window = None
    if "window_level" in main and "window_width" in main:
        window = (float(main["window_level"]), float(main["window_width"]))
    return SourceVolume(voxels, affine, str(main.get("modality", "")) or None, window, str(main.get("name", "")))


def _stem(path: Path) -> str:
    name = path.name
    for suffix in VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def guess_modality(path: Path, voxels: np.ndarray) -> str:
    """CT when the file name says so or the values look like Hounsfield units; else MR."""
    tokens = set(re.split(r"[^a-z0-9]+", path.name.lower()))
    if tokens & {"ct", "cta", "hu"}:
        return "CT"
    sample = voxels[:: max(1, voxels.shape[0] // 16)]
    lo, hi = float(sample.min()), float(sample.max())
    return "CT" if lo <= -900 and hi >= 300 else "MR"


def _storage(voxels: np.ndarray) -> tuple[np.ndarray, float, float, bool]:
    """How to store the values: (stored array, slope, intercept, signed).

    Integers that fit int16 (or uint16) are kept as they are; anything else (floats, wider ints) is
    mapped linearly onto int16 with RescaleSlope/Intercept.
    """
    lo, hi = float(voxels.min()), float(voxels.max())
    integral = voxels.dtype.kind in "iub" or bool(np.all(np.mod(voxels[:: max(1, len(voxels) // 8)], 1) == 0))
    if integral and _INT16[0] <= lo and hi <= _INT16[1]:
        return voxels.astype(np.int16, copy=False), 1.0, 0.0, True
    if integral and 0 <= lo and hi <= 65535:
        return voxels.astype(np.uint16, copy=False), 1.0, 0.0, False
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    intercept = lo + 32768.0 * slope
    stored = np.rint((voxels.astype(np.float64) - intercept) / slope)
    return np.clip(stored, *_INT16).astype(np.int16), slope, intercept, True


def _percentile_window(voxels: np.ndarray, modality: str) -> tuple[float, float]:
    sample = voxels[:: max(1, voxels.shape[0] // 32), ::2, ::2].astype(np.float32)
    if modality == "CT":
        sample = sample[sample > -1500]  # ignore padding outside the field of view
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(sample, [1.0, 99.0])
    width = max(float(hi - lo), 1.0)
    return float(lo) + width / 2.0, width


def _ds(v: float) -> DSfloat:
    return DSfloat(float(v), auto_format=True)


def volume_file_to_dicom(
    path: str | Path,
    out_dir: str | Path,
    *,
    patient_name: str | None = None,
    patient_id: str | None = None,
    study_description: str | None = None,
    modality: str | None = None,
) -> list[Path]:
    """Write the volume in ``path`` as a new single-frame CT or MR DICOM series in ``out_dir``.

    Returns the written files, slice order.  Raises :class:`DicomReadError` for unreadable input.
    """
    path = Path(path)
    src = read_volume_file(path)
    modality = (modality or src.modality or guess_modality(path, src.voxels)).upper()
    if modality not in ("CT", "MR"):
        modality = "MR"  # only CT and MR Image Storage are written; anything else is stored as MR
    stored, slope, intercept, signed = _storage(src.voxels)
    window = src.window or _percentile_window(src.voxels, modality)
    template = _series_template(path, src, modality, patient_name, patient_id, study_description, window)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spacing = np.linalg.norm(src.affine[:3, :3], axis=0)
    cosines = src.affine[:3, :3] / spacing
    written = []
    for k in range(stored.shape[0]):
        ds = _slice_dataset(template, stored[k], k, src.affine, spacing, cosines, slope, intercept, signed)
        target = out_dir / f"IM{k + 1:05d}.dcm"
        ds.save_as(target, enforce_file_format=True)
        written.append(target)
    return written


def _series_template(path: Path, src: SourceVolume, modality: str, patient_name: str | None,
                     patient_id: str | None, study_description: str | None,
                     window: tuple[float, float]) -> Dataset:
    now = _dt.datetime.now()
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE
    ds.PatientName = patient_name or "Imported^Volume"
    ds.PatientID = patient_id or "IMPORTED"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.Modality = modality
    ds.Manufacturer = "workstation volume import"
    ds.StudyDescription = study_description or f"Imported {path.name}"
    ds.SeriesDescription = (src.description or path.name)[:64]
    ds.SeriesNumber = 1
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.PositionReferenceIndicator = ""
    ds.WindowCenter = _ds(window[0])
    ds.WindowWidth = _ds(window[1])
    _acquisition_unknown(ds, modality)
    return ds


def _acquisition_unknown(ds: Dataset, modality: str) -> None:
    """Fill the IOD's required attributes that a volume file cannot tell: empty (Type 2) or 'unknown'."""
    for keyword in ("PatientBirthDate", "PatientSex", "Laterality", "PatientPosition", "AcquisitionNumber"):
        setattr(ds, keyword, "")
    if modality == "CT":
        ds.KVP = ""
        return
    # MR Image module: Type 1 sequence attributes take the 'research mode' / 'none' defined terms.
    ds.ScanningSequence = "RM"
    ds.SequenceVariant = "NONE"
    for keyword in ("ScanOptions", "MRAcquisitionType", "RepetitionTime", "EchoTime", "EchoTrainLength"):
        setattr(ds, keyword, "")


def _slice_dataset(template: Dataset, pixels: np.ndarray, k: int, affine: np.ndarray, spacing: np.ndarray,
                   cosines: np.ndarray, slope: float, intercept: float, signed: bool) -> Dataset:
    ds = Dataset()
    ds.update(template)
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = k + 1
    position = affine[:3, 3] + k * affine[:3, 2]
    ds.ImagePositionPatient = [_ds(v) for v in position]
    # first triplet: direction of increasing column index (i); second: of increasing row index (j)
    ds.ImageOrientationPatient = [_ds(v) for v in (*cosines[:, 0], *cosines[:, 1])]
    ds.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]  # [between rows, between columns]
    ds.SliceThickness = _ds(spacing[2])
    ds.SpacingBetweenSlices = _ds(spacing[2])
    ds.SliceLocation = _ds(float(position @ np.cross(cosines[:, 0], cosines[:, 1])))
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleSlope = _ds(slope)
    ds.RescaleIntercept = _ds(intercept)
    if ds.Modality == "CT":
        ds.RescaleType = "HU"
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2" if signed else "<u2").tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds


__all__ = ["volume_file_to_dicom", "read_volume_file", "guess_modality", "SourceVolume", "VOLUME_SUFFIXES"]
