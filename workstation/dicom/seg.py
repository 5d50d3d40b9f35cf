"""LabelMap <-> DICOM Segmentation (highdicom): one BINARY SEG per label map, and back.

Written with the label map's own geometry (plane positions from its affine), references to every source
image by SOP Instance UID, and one segment per :class:`Segment` with its codes, colour and algorithm
(AUTOMATIC for a model's output, SEMIAUTOMATIC once edited).  Reading returns the same model objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code as DicomCode

from workstation.model.labelmap import Algorithm, AlgorithmType, Code, LabelMap, Segment

MANUFACTURER = "Workstation"
MODEL_NAME = "workstation"
SOFTWARE_VERSION = "0.1.0"


class SegError(ValueError):
    """A label map that cannot be written, or a file that is not a readable SEG."""


def read_source_headers(paths: Sequence[str | Path]) -> list[Dataset]:
    """The source images' headers (no pixel data), in the given order, without duplicates."""
    seen: dict[str, Dataset] = {}
    for p in paths:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        seen.setdefault(str(ds.SOPInstanceUID), ds)
    return list(seen.values())


def labelmap_to_seg(labelmap: LabelMap, source_images: Sequence[Dataset], *, series_number: int = 900,
                    description: str = "") -> Dataset:
    """Encode ``labelmap`` as a BINARY DICOM SEG referencing ``source_images`` (fresh UIDs)."""
    if not source_images:
        raise SegError("a SEG needs the source images it segments (none were given)")
    frame_uids = {str(ds.get("FrameOfReferenceUID", "")) for ds in source_images}
    if labelmap.frame_of_reference_uid and labelmap.frame_of_reference_uid not in frame_uids:
        raise SegError("the label map is not in the frame of reference of the source images")
    present = set(np.unique(labelmap.labels).tolist()) - {0}
    unknown = present - {s.number for s in labelmap.segments}
    if unknown:
        raise SegError(f"label values {sorted(unknown)} have no segment description")
    if not present:
        raise SegError("the label map is empty: nothing to store")
    segments = [s for s in labelmap.segments if s.number in present]
    relabel = np.zeros(max(s.number for s in labelmap.segments) + 1, np.uint16)
    for n, s in enumerate(segments, start=1):  # SEG segment numbers run 1..N without gaps
        relabel[s.number] = n
    volume = hd.Volume(relabel[labelmap.labels].astype(np.uint16), _hd_affine(labelmap.affine),
                       coordinate_system="PATIENT", frame_of_reference_uid=labelmap.frame_of_reference_uid or None)
    algorithm = next((s.algorithm for s in segments if s.algorithm is not None), None)
    seg = hd.seg.Segmentation(
        source_images=list(source_images), pixel_array=volume,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[_description(n, s) for n, s in enumerate(segments, start=1)],
        series_instance_uid=hd.UID(), series_number=series_number, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name=MODEL_NAME, software_versions=SOFTWARE_VERSION,
        device_serial_number="0",
        content_description=description or (f"{algorithm.name} {algorithm.version}" if algorithm else "segmentation"),
        content_label="AI" if algorithm and algorithm.type is AlgorithmType.AUTOMATIC else "SEGMENTATION",
    )
    _fix_patient_age(seg)
    return seg


def _fix_patient_age(ds: Dataset) -> None:
    """Source files often carry an age like "42"; the AS VR wants "042Y".  Fix it or drop it (Type 3)."""
    age = str(ds.get("PatientAge", "") or "")
    if not age or (len(age) == 4 and age[:3].isdigit() and age[3] in "DWMY"):
        return
    if age.isdigit() and len(age) <= 3:
        ds.PatientAge = f"{int(age):03d}Y"
    else:
        del ds.PatientAge


def _hd_affine(affine: np.ndarray) -> np.ndarray:
    """Our affine maps (i, j, k) = (column, row, slice); highdicom's maps array axes (slice, row, column)."""
    out = np.array(affine, float)
    out[:, :3] = affine[:, [2, 1, 0]]
    return out


def _description(number: int, s: Segment) -> hd.seg.SegmentDescription:
    algorithm = s.algorithm
    ident = None
    kind = hd.seg.SegmentAlgorithmTypeValues.MANUAL
    if algorithm is not None and algorithm.type is not AlgorithmType.MANUAL:
        kind = hd.seg.SegmentAlgorithmTypeValues(algorithm.type.value)
        ident = hd.AlgorithmIdentificationSequence(name=algorithm.name, family=_code(algorithm.family),
                                                   version=algorithm.version)
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=s.name, segmented_property_category=_code(s.category),
        segmented_property_type=_code(s.type), algorithm_type=kind, algorithm_identification=ident,
        tracking_uid=hd.UID(), tracking_id=f"{s.name} {number}",
        display_color=hd.color.CIELabColor.from_rgb(*(int(c) for c in s.colour)),
    )


def _code(c: Code) -> DicomCode:
    return DicomCode(c.value, c.scheme, c.meaning)


# -- reading back ------------------------------------------------------------------------------------------
def read_seg(path: str | Path) -> LabelMap:
    """A SEG file as a LabelMap on the SEG's own grid (segment numbers as stored)."""
    try:
        seg = hd.seg.segread(str(path))
    except Exception as exc:  # noqa: BLE001 - pydicom / highdicom raise many kinds
        raise SegError(f"{path}: not a readable DICOM SEG: {exc}") from None
    volume = seg.get_volume(combine_segments=True, dtype=np.uint16)
    labels = np.asarray(volume.array)
    dtype = np.uint8 if labels.max(initial=0) < 256 else np.uint16
    segments = tuple(_segment(seg.get_segment_description(n)) for n in seg.segment_numbers)
    return LabelMap(labels.astype(dtype), _hd_affine(volume.affine), segments,
                    str(seg.FrameOfReferenceUID), _referenced_series(seg))


def _segment(d: hd.seg.SegmentDescription) -> Segment:
    algorithm = None
    kind = AlgorithmType(d.algorithm_type.value)
    if d.algorithm_identification is not None and kind is not AlgorithmType.MANUAL:
        item = d.algorithm_identification[0]
        family = item.AlgorithmFamilyCodeSequence[0]
        algorithm = Algorithm(str(item.AlgorithmName), str(item.AlgorithmVersion), kind,
                              Code(family.CodeValue, family.CodingSchemeDesignator, family.CodeMeaning))
    colour = (128, 128, 128)
    if "RecommendedDisplayCIELabValue" in d:
        colour = tuple(int(round(c)) for c in
                       hd.color.CIELabColor.from_dicom_value(d.RecommendedDisplayCIELabValue).to_rgb())
    return Segment(int(d.segment_number), str(d.segment_label), colour, _from_coded(d.segmented_property_category),
                   _from_coded(d.segmented_property_type), algorithm)


def _from_coded(c) -> Code:
    return Code(str(c.value), str(c.scheme_designator), str(c.meaning))


def _referenced_series(seg: Dataset) -> str:
    refs = seg.get("ReferencedSeriesSequence") or []
    return str(refs[0].SeriesInstanceUID) if refs else ""


def labelmap_onto_grid(labelmap: LabelMap, shape: tuple[int, int, int], affine: np.ndarray,
                       tol_mm: float = 1e-2) -> np.ndarray:
    """Paste a label map read from a SEG (often only the slices with labels) into a grid it is part of."""
    inv = np.linalg.inv(affine)
    offset = inv[:3, :3] @ labelmap.affine[:3, 3] + inv[:3, 3]  # (i, j, k) of its first voxel
    steps = inv[:3, :3] @ labelmap.affine[:3, :3]
    signs = np.rint(np.diag(steps))
    if not (np.allclose(steps, np.diag(signs), atol=1e-3) and np.all(np.abs(signs) == 1)
            and np.allclose(offset, np.rint(offset), atol=tol_mm)):
        raise SegError("the SEG's grid is not a sub-grid of the target grid")
    labels = labelmap.labels
    k, j, i = labelmap.shape
    start = np.rint(offset).astype(int)
    for axis, n in enumerate((i, j, k)):  # an axis stored backwards (highdicom may reverse the slices)
        if signs[axis] < 0:
            labels = np.flip(labels, axis=2 - axis)
            start[axis] -= n - 1
    i0, j0, k0 = (int(v) for v in start)
    if min(i0, j0, k0) < 0 or k0 + k > shape[0] or j0 + j > shape[1] or i0 + i > shape[2]:
        raise SegError("the SEG extends beyond the target grid")
    out = np.zeros(shape, labelmap.labels.dtype)
    out[k0:k0 + k, j0:j0 + j, i0:i0 + i] = labels
    return out
