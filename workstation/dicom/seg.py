"""LabelMap <-> DICOM Segmentation (highdicom): one SEG per label map (BINARY, or LABELMAP), and back.

Written with the label map's own geometry (plane positions from its affine), references to every source
image by SOP Instance UID, and one segment per :class:`Segment` with its codes, colour and algorithm
(AUTOMATIC for a model's output, SEMIAUTOMATIC once edited); with an annotator and a predecessor it is
the next revision of that annotator's set.  Reading returns the same model objects; segments that
overlap (BINARY SEGs of other writers) are never merged: :func:`read_seg` refuses them by name and
:func:`read_seg_layers` returns them as separate label maps.
"""

from __future__ import annotations

import copy
import re
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
                    description: str = "", annotator: str = "", series_description: str = "",
                    predecessor: Dataset | None = None, segmentation_type: str = "BINARY") -> Dataset:
    """Encode ``labelmap`` as a DICOM SEG referencing ``source_images`` (fresh SOP Instance UID).

    ``annotator`` (a person's name) becomes the ContentCreatorName and the ContentLabel.  ``predecessor``
    is this annotation set's previous revision: the new SEG joins its series with the next InstanceNumber
    (SEG has no PredecessorDocumentsSequence; series + instance number carry the revision chain), so a
    save never overwrites.  ``segmentation_type`` is "BINARY" (default; every reader and dciodvfy know it)
    or "LABELMAP" (Label Map Segmentation Storage, highdicom >= 0.23; not every reader knows it yet).
    """
    if not source_images:
        raise SegError("a SEG needs the source images it segments (none were given)")
    source_images = clean_sources(source_images)
    kinds = {"BINARY": hd.seg.SegmentationTypeValues.BINARY, "LABELMAP": hd.seg.SegmentationTypeValues.LABELMAP}
    if segmentation_type not in kinds:
        raise SegError(f"segmentation type {segmentation_type!r} is not one of {sorted(kinds)}")
    frame_uids = {str(ds.get("FrameOfReferenceUID", "")) for ds in source_images}
    if labelmap.frame_of_reference_uid and labelmap.frame_of_reference_uid not in frame_uids:
        raise SegError("the label map is not in the frame of reference of the source images")
    segments, labels = _numbered(labelmap)
    volume = hd.Volume(labels, _hd_affine(labelmap.affine), coordinate_system="PATIENT",
                       frame_of_reference_uid=labelmap.frame_of_reference_uid or None)
    algorithm = next((s.algorithm for s in segments if s.algorithm is not None), None)
    series_uid, instance = hd.UID(), 1
    if predecessor is not None:
        series_uid, series_number, instance = _follow(predecessor, source_images)
    label = "AI" if algorithm and algorithm.type is AlgorithmType.AUTOMATIC else "SEGMENTATION"
    seg = hd.seg.Segmentation(
        source_images=list(source_images), pixel_array=volume, segmentation_type=kinds[segmentation_type],
        segment_descriptions=[_description(n, s) for n, s in enumerate(segments, start=1)],
        series_instance_uid=series_uid, series_number=series_number, sop_instance_uid=hd.UID(),
        instance_number=instance, manufacturer=MANUFACTURER, manufacturer_model_name=MODEL_NAME,
        software_versions=SOFTWARE_VERSION, device_serial_number="0",
        content_description=description or (f"{algorithm.name} {algorithm.version}" if algorithm else "segmentation"),
        content_label=content_label(annotator) if annotator else label,
        content_creator_name=annotator or None,
    )
    if series_description:
        seg.SeriesDescription = series_description[:64]
    _fix_patient_age(seg)
    return seg


def _numbered(labelmap: LabelMap) -> tuple[list[Segment], np.ndarray]:
    """The segments present, and the labels renumbered 1..N without gaps as SEG wants (no copy if they are)."""
    present = set(np.flatnonzero(_label_counts(labelmap.labels)).tolist()) - {0}
    unknown = present - {s.number for s in labelmap.segments}
    if unknown:
        raise SegError(f"label values {sorted(unknown)} have no segment description")
    if not present:
        raise SegError("the label map is empty: nothing to store")
    segments = sorted((s for s in labelmap.segments if s.number in present), key=lambda s: s.number)
    if [s.number for s in segments] == list(range(1, len(segments) + 1)):
        return segments, labelmap.labels
    relabel = np.zeros(max(s.number for s in labelmap.segments) + 1, np.uint16)
    for n, s in enumerate(segments, start=1):
        relabel[s.number] = n
    return segments, relabel[labelmap.labels]


def _label_counts(labels: np.ndarray) -> np.ndarray:
    """Voxels per label value; slice by slice (np.unique or one bincount on a CT grid cost 3-10x more)."""
    size = int(labels.max(initial=0)) + 1
    counts = np.zeros(size, np.int64)
    for plane in labels:
        counts += np.bincount(plane.ravel(), minlength=size)
    return counts


def clean_sources(sources: Sequence[Dataset]) -> list[Dataset]:
    """Source headers highdicom accepts: an empty SpecificCharacterSet (seen in GE files) means the default."""
    out = []
    for ds in sources:
        if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:
            ds = copy.copy(ds)  # shallow: the caller's header stays as it was
            del ds.SpecificCharacterSet
        out.append(ds)
    return out


def content_label(name: str) -> str:
    """A name as a DICOM CS ContentLabel: upper case letters, digits and '_', at most 16 characters."""
    label = re.sub(r"[^A-Z0-9_]+", "_", name.upper()).strip("_")[:16]
    return label or "ANNOTATION"


def _follow(predecessor: Dataset, source_images: Sequence[Dataset]) -> tuple[str, int, int]:
    """(series UID, series number, next instance number) of the revision after ``predecessor``."""
    if str(predecessor.get("Modality", "")) != "SEG":
        raise SegError(f"the predecessor is not a SEG (modality {predecessor.get('Modality', 'missing')!r})")
    if str(predecessor.get("StudyInstanceUID", "")) != str(source_images[0].get("StudyInstanceUID", "")):
        raise SegError("the predecessor SEG belongs to another study")
    return (str(predecessor.SeriesInstanceUID), int(predecessor.get("SeriesNumber") or 900),
            int(predecessor.get("InstanceNumber") or 0) + 1)


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
    if str(seg.SegmentationType) == "FRACTIONAL":
        raise SegError(f"{path}: a FRACTIONAL SEG (probabilities) is not a label map; threshold it first")
    try:
        volume = seg.get_volume(combine_segments=True, dtype=np.uint16)
    except (ValueError, RuntimeError) as exc:  # highdicom: RuntimeError for overlaps, ValueError for geometry
        if "overlap" not in str(exc):
            raise SegError(f"{path}: cannot place the SEG's frames on a grid: {exc}") from None
        # highdicom leaves its frame index locked after that failure: read the file afresh
        pairs = ", ".join(f"{a} and {b}" for a, b in _overlapping_pairs(hd.seg.segread(str(path))))
        raise SegError(f"{path}: segments overlap ({pairs}); one label map cannot hold them, "
                       "read it with read_seg_layers") from None
    return _labelmap(seg, np.asarray(volume.array), volume.affine, seg.segment_numbers)


def read_seg_layers(path: str | Path) -> list[LabelMap]:
    """A SEG as one or more label maps: segments that overlap go to separate layers, never merged."""
    try:
        seg = hd.seg.segread(str(path))
    except Exception as exc:  # noqa: BLE001 - pydicom / highdicom raise many kinds
        raise SegError(f"{path}: not a readable DICOM SEG: {exc}") from None
    if str(seg.SegmentationType) != "BINARY":
        return [read_seg(path)]  # a LABELMAP cannot overlap
    numbers = [n for n in seg.segment_numbers if n != 0]
    volume = seg.get_volume(combine_segments=False, segment_numbers=numbers, dtype=np.uint8)
    masks = np.asarray(volume.array).astype(bool)  # (slices, rows, columns, segments)
    layers: list[tuple[list[int], np.ndarray]] = []
    for axis, number in enumerate(numbers):
        mask = masks[..., axis]
        for members, taken in layers:
            if not (taken & mask).any():
                members.append(number)
                taken |= mask
                break
        else:
            layers.append(([number], mask.copy()))
    out = []
    for members, _ in layers:
        labels = np.zeros(masks.shape[:3], np.uint16)
        for number in members:
            labels[masks[..., numbers.index(number)]] = number
        out.append(_labelmap(seg, labels, volume.affine, members))
    return out


def _overlapping_pairs(seg) -> list[tuple[int, int]]:
    numbers = [n for n in seg.segment_numbers if n != 0]
    masks = np.asarray(seg.get_volume(combine_segments=False, segment_numbers=numbers, dtype=np.uint8).array) > 0
    return [(a, b) for x, a in enumerate(numbers) for b in numbers[x + 1:]
            if (masks[..., x] & masks[..., numbers.index(b)]).any()]


def _labelmap(seg, labels: np.ndarray, affine: np.ndarray, numbers) -> LabelMap:
    dtype = np.uint8 if labels.max(initial=0) < 256 else np.uint16
    segments = tuple(_segment(seg.get_segment_description(n)) for n in numbers if n != 0)
    return LabelMap(labels.astype(dtype), _hd_affine(affine), segments,
                    str(seg.FrameOfReferenceUID), _referenced_series(seg))


def referenced_instances(seg: Dataset) -> set[str]:
    """The SOP Instance UIDs of the source images a SEG names (Referenced Series Sequence)."""
    return {str(i.ReferencedSOPInstanceUID) for s in seg.get("ReferencedSeriesSequence") or []
            for i in s.get("ReferencedInstanceSequence") or []}


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
