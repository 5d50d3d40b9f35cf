"""An annotation to and from an annotation set.

:func:`save_annotation` turns the annotation being edited into the next revision of its annotator's own
set (:func:`~workstation.labels.annotation_sets.save_revision`): a DICOM SEG of the label map and a TID
1500 SR with one finding per labelled segment and per point or box mark, carrying the label schema's
attributes, written into a folder from which the caller queues them for the archive.

:func:`annotation_from_set` goes the other way: a stored revision (ours or a third party's) read onto
its image series becomes an editable :class:`~workstation.model.annotation.Annotation` - the label map
layer on the series grid, boxes and points as marks, the attributes per segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from workstation.labels.annotation_sets import (
    AnnotationSet,
    AnnotationSetError,
    LoadedSet,
    list_sets,
    same_person,
    save_revision,
    set_description,
)
from workstation.model.annotation import Annotation, Mark, MarkKind
from workstation.model.finding import Finding, FindingKind, Provenance
from workstation.model.labelmap import AlgorithmType, LabelMap, Segment
from workstation.model.volume import Volume

__all__ = ["SavedRevision", "annotation_findings", "annotation_from_set", "own_set", "save_annotation", "saved_locally"]


@dataclass(frozen=True)
class SavedRevision:
    """What one save wrote: the files (None where there was nothing of that kind) and the revision."""

    seg_path: Path | None
    sr_path: Path | None
    findings: tuple[Finding, ...]
    revision: int
    set_name: str  # the sets' series description, "<name> (<annotator>)"

    @property
    def paths(self) -> list[Path]:
        return [p for p in (self.seg_path, self.sr_path) if p is not None]


# -- saving ------------------------------------------------------------------------------------------------
def _mm(affine: np.ndarray, kji: Sequence[float]) -> np.ndarray:
    k, j, i = kji
    return np.asarray(affine, float)[:3] @ np.array([i, j, k, 1.0])


def _box_mm(affine: np.ndarray, lo, hi) -> tuple[tuple, tuple]:
    corners = np.array([_mm(affine, (a, b, c)) for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    return tuple(float(v) for v in corners.min(0)), tuple(float(v) for v in corners.max(0))


def annotation_findings(doc: Annotation, labels: np.ndarray | None = None,
                        marks: Sequence[Mark] | None = None) -> list[Finding]:
    """One REGION finding per segment with voxels, one BOX or POINT finding per mark (positions in mm)."""
    labels = doc.labels if labels is None else labels
    marks = doc.marks if marks is None else marks
    who = Provenance(doc.annotator, "manual", doc.annotator)
    out = []
    for s in doc.segments:
        idx = np.argwhere(labels == s.number)
        if not len(idx):
            continue
        lo, hi = _box_mm(doc.affine, idx.min(0), idx.max(0))
        centroid = tuple(float(v) for v in _mm(doc.affine, idx.mean(0)))
        out.append(Finding(FindingKind.REGION, s.name, 1.0, centroid, lo, hi, who,
                           volume_mm3=len(idx) * doc.labelmap.voxel_volume_mm3, segment_number=s.number,
                           series_instance_uid=doc.series_uid))
    for m in marks:
        name = doc.labelmap.segment(m.segment).name
        lo, hi = _box_mm(doc.affine, m.lo, m.hi)
        centroid = tuple(float(v) for v in (np.asarray(lo) + np.asarray(hi)) / 2.0)
        kind = FindingKind.POINT if m.kind is MarkKind.POINT else FindingKind.BOX
        out.append(Finding(kind, name, 1.0, centroid, lo, hi, who, segment_number=m.segment,
                           series_instance_uid=doc.series_uid, uid=m.uid))
    return out


def own_set(sets: Sequence[AnnotationSet], annotator: str, set_name: str) -> AnnotationSet | None:
    """``annotator``'s set called ``set_name`` among ``sets`` (None: the first save starts it)."""
    description = set_description(set_name, annotator)
    mine = [s for s in sets if same_person(s.annotator, annotator) and s.name == description]
    return max(mine, key=lambda s: s.revision) if mine else None


def save_annotation(doc: Annotation, sources: Sequence[Dataset], out_dir: Path, *, set_name: str,
                    archive=None, measurements: Sequence = ()) -> SavedRevision:
    """Write the next revision of ``doc.annotator``'s set ``set_name`` into ``out_dir/<study>/``.

    The previous revision is looked up in ``archive`` (any ArchiveClient; None: none) and among the
    revisions saved into ``out_dir`` that may not have reached the archive yet, so two saves in a row
    are revisions 1 and 2 even while the archive is unreachable.  Raises AnnotationSetError (or SegError /
    SrError, both ValueError) with the reason when the annotation cannot be encoded.
    """
    if not sources:
        raise AnnotationSetError("the source images of the series are not available: cannot reference them")
    folder = Path(out_dir) / _safe(doc.study_uid)
    local = saved_locally(out_dir, doc.study_uid)
    with doc.lock:
        labels = doc.labels.copy()
        marks = list(doc.marks)
        attributes = {k: dict(v) for k, v in doc.attributes.items()}
    findings = annotation_findings(doc, labels, marks)
    if not findings and not measurements:
        raise AnnotationSetError("nothing to save: the annotation is empty")
    sets = list_sets(archive, doc.study_uid, extra_paths=local)
    previous = own_set(sets, doc.annotator, set_name)
    labelmap = None
    if labels.any():
        segments = tuple(s if s.algorithm is None else replace(s, algorithm=replace(
            s.algorithm, type=AlgorithmType.SEMIAUTOMATIC)) for s in doc.segments)  # edited by a person
        labelmap = LabelMap(labels, doc.affine, segments, doc.labelmap.frame_of_reference_uid, doc.series_uid)
    per_finding = {}
    for f in findings:
        values = attributes.get(int(f.segment_number or 0))
        if values and (f.kind is FindingKind.REGION or not any(
                g.kind is FindingKind.REGION and g.segment_number == f.segment_number for g in findings)):
            per_finding[f.uid] = values
    seg, sr = save_revision(sources, annotator=doc.annotator, set_name=set_name, labelmap=labelmap,
                            findings=findings, measurements=measurements, attributes=per_finding,
                            previous=previous, label_codes={s.name: s.type for s in doc.segments})
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for ds, kind in ((seg, "seg"), (sr, "sr")):
        if ds is None:
            written.append(None)
            continue
        path = folder / f"{kind}-{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    revision = int((seg or sr).InstanceNumber)
    return SavedRevision(written[0], written[1], tuple(findings), revision, set_description(set_name, doc.annotator))


def saved_locally(out_dir: Path, study_uid: str) -> list[Path]:
    """The revisions of ``study_uid`` saved into ``out_dir`` (some may still wait in the outbox)."""
    folder = Path(out_dir) / _safe(study_uid)
    return sorted(folder.glob("*.dcm")) if folder.is_dir() else []


def _safe(uid: str) -> str:
    return "".join(c if c.isalnum() or c in ".-_" else "_" for c in uid) or "unknown"


# -- opening -----------------------------------------------------------------------------------------------
def annotation_from_set(loaded: LoadedSet, volume: Volume, *, annotator: str, base_segments: Sequence[Segment] = (),
                        layer: int = 0, schema: str = "") -> Annotation:
    """An editable annotation by ``annotator`` on ``volume`` holding layer ``layer`` of a loaded revision.

    The loaded segments take the number of a ``base_segments`` entry with the same name or type code
    (the label schema's); the others keep theirs, or get the next free number when it is taken.  Boxes
    and points become marks, the attributes of each finding go to its segment.  Raises
    AnnotationSetError when the revision is not on ``volume``'s grid or ``layer`` does not exist.
    """
    if loaded.layers and not 0 <= layer < len(loaded.layers):
        raise AnnotationSetError(f"the set has {len(loaded.layers)} layer(s); there is no layer {layer + 1}")
    if loaded.layers and not loaded.layers[layer].is_on_grid_of(volume):
        raise AnnotationSetError("the set is not on the grid of the series shown: open its own series first")
    segments, renumber = _merge_segments(base_segments, loaded.layers[layer].segments if loaded.layers else ())
    numbers = [s.number for s in segments]
    dtype = np.uint8 if max(numbers, default=1) < 256 else np.uint16
    labels = np.zeros(volume.shape, dtype)
    if loaded.layers:
        src = loaded.layers[layer].labels
        table = np.zeros(int(src.max(initial=0)) + 1, dtype)
        for old, new in renumber.items():
            if old < len(table):
                table[old] = new
        labels = table[src]
    info = volume.info
    doc = Annotation(labels, volume.affine.copy(), segments, study_uid=info.study_instance_uid,
                     series_uid=info.series_instance_uid or loaded.annotation_set.name, annotator=annotator,
                     frame_of_reference_uid=info.frame_of_reference_uid, schema=schema)
    by_name = {s.name.lower(): s.number for s in segments}
    # a region's attributes are the segment's; a mark's count only where its segment has no region
    for f in sorted(loaded.findings, key=lambda f: f.kind is FindingKind.REGION):
        number = renumber.get(f.segment_number or -1) if f.segment_number else None
        number = number or by_name.get(f.label.lower())
        if number is None:
            continue  # a finding of a segment this annotation has no label for: kept in the source set
        values = loaded.attributes.get(f.uid)
        if values:
            doc.attributes.setdefault(number, {}).update(values)
        if f.kind in (FindingKind.BOX, FindingKind.POINT):
            doc.marks.append(_mark(f, number, volume))
    return doc


def _merge_segments(base: Sequence[Segment], loaded: Sequence[Segment]) -> tuple[tuple[Segment, ...], dict[int, int]]:
    out = list(base)
    renumber: dict[int, int] = {}
    for s in loaded:
        match = next((b.number for b in base if b.name.lower() == s.name.lower()
                      or (b.type.value, b.type.scheme) == (s.type.value, s.type.scheme)), None)
        if match is None:
            taken = {t.number for t in out}
            number = s.number if s.number not in taken else max(taken) + 1
            out.append(replace(s, number=number))
            match = number
        renumber[s.number] = match
    return tuple(out), renumber


def _mark(f: Finding, segment: int, volume: Volume) -> Mark:
    """A box or point finding (mm) as a mark in voxel indices (k, j, i) clipped to the grid."""
    top = np.array(volume.shape) - 1
    if f.kind is FindingKind.POINT:
        p = np.clip(np.rint(volume.lps_to_index(np.asarray(f.centroid_mm))[::-1]).astype(int), 0, top)
        return Mark(MarkKind.POINT, segment, tuple(int(v) for v in p), tuple(int(v) for v in p), uid=f.uid)
    corners = np.array([[x, y, z] for x in (f.bbox_min_mm[0], f.bbox_max_mm[0]) for y in (f.bbox_min_mm[1],
                        f.bbox_max_mm[1]) for z in (f.bbox_min_mm[2], f.bbox_max_mm[2])])
    kji = np.rint(volume.lps_to_index(corners)[:, ::-1])
    lo = np.clip(kji.min(0).astype(int), 0, top)
    hi = np.clip(kji.max(0).astype(int), 0, top)
    kind = MarkKind.BOX_2D if (lo == hi).any() else MarkKind.BOX_3D
    return Mark(kind, segment, tuple(int(v) for v in lo), tuple(int(v) for v in hi), uid=f.uid)
