"""Annotation sets: every save is a new revision, every annotator has their own set; list and load them.

An *annotation set* is what one annotator made on one study under one name: a DICOM SEG series (the
label map) and a TID 1500 SR series (boxes, points, measurements and the schema's attributes per
finding), both with the SeriesDescription ``"<set name> (<annotator>)"``.  Each save is a new instance
with a fresh SOP Instance UID and the next InstanceNumber in the set's series (the revision); the SR
also lists its predecessor in PredecessorDocumentsSequence, the SEG names its annotator as
ContentCreatorName.  Nothing is ever overwritten, and two annotators never share a series.

:func:`list_sets` finds the sets of a study in any archive (its SEG and SR series); :func:`load_set`
fetches one revision and reads it onto the grid of the image series it references.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from workstation.model.finding import Finding, Status
from workstation.model.labelmap import Code, LabelMap
from workstation.model.volume import Volume

__all__ = ["AnnotationSet", "AnnotationSetError", "LoadedSet", "Revision", "list_sets", "load_set",
           "review_state", "same_person", "set_review_state", "save_revision", "set_description"]

SEG_SERIES_NUMBER = 900
SR_SERIES_NUMBER = 901


class AnnotationSetError(ValueError):
    """An annotation set that cannot be saved or read; the message is for the user."""


@dataclass(frozen=True)
class Revision:
    """One stored SEG or SR instance of a set."""

    modality: str  # "SEG" or "SR"
    sop_instance_uid: str
    series_instance_uid: str
    revision: int  # the InstanceNumber: 1, 2, ...
    annotator: str
    date: str  # ContentDate + ContentTime, "YYYYMMDDHHMMSS"
    path: Path


@dataclass(frozen=True)
class AnnotationSet:
    """The revisions of one annotator's set on one study, oldest first."""

    study_instance_uid: str
    annotator: str
    name: str  # the series description
    seg: tuple[Revision, ...] = ()
    sr: tuple[Revision, ...] = ()

    @property
    def revision(self) -> int:
        """The latest revision number (SEG and SR are saved together, so they agree for our own sets)."""
        return max([r.revision for r in self.seg + self.sr], default=0)

    @property
    def date(self) -> str:
        return max([r.date for r in self.seg + self.sr], default="")

    def seg_revision(self, revision: int | None = None) -> Revision | None:
        return _pick(self.seg, revision)

    def sr_revision(self, revision: int | None = None) -> Revision | None:
        return _pick(self.sr, revision)


def _pick(revisions: tuple[Revision, ...], revision: int | None) -> Revision | None:
    if not revisions:
        return None
    if revision is None:
        return revisions[-1]
    found = [r for r in revisions if r.revision == revision]
    return found[-1] if found else None


def set_description(set_name: str, annotator: str) -> str:
    return f"{set_name} ({_display(annotator)})"[:64]


def _display(name: str) -> str:
    """A person name as shown and compared: a one-part DICOM name "doe^" reads "doe"."""
    return name.strip().rstrip("^").strip()


def same_person(a: str, b: str) -> bool:
    return _display(a) == _display(b)


def _person_name(name: str) -> str:
    """A DICOM PN value: a one-part name gets its family/given separator ("doe" -> "doe^")."""
    name = name.strip()
    return name if "^" in name else name + "^"


# -- saving ------------------------------------------------------------------------------------------------
def save_revision(sources: Sequence[Dataset], *, annotator: str, set_name: str, labelmap: LabelMap | None = None,
                  findings: Sequence[Finding] = (), measurements: Sequence = (),
                  attributes: Mapping[str, Mapping[str, object]] | None = None,
                  previous: AnnotationSet | None = None, label_codes: Mapping[str, Code] | None = None,
                  segmentation_type: str = "BINARY") -> tuple[Dataset | None, Dataset | None]:
    """The next revision of ``annotator``'s set ``set_name``: (SEG or None, SR or None), fresh UIDs.

    ``previous`` is the set as listed (its latest SEG and SR become the predecessors); ``None`` starts
    a new set.  A set of someone else is refused: annotators never overwrite each other.
    """
    from workstation.dicom.seg import labelmap_to_seg
    from workstation.dicom.sr import findings_to_sr

    if not annotator.strip():
        raise AnnotationSetError("a revision needs the annotator's name")
    if previous is not None and not same_person(previous.annotator, annotator):
        raise AnnotationSetError(f"the set {previous.name!r} belongs to {previous.annotator!r}, not {annotator!r}; "
                                 "start your own set")
    if labelmap is None and not findings and not measurements:
        raise AnnotationSetError("nothing to save: no label map, findings or measurements")
    description = set_description(set_name, annotator)
    seg_before = _read(previous.seg_revision()) if previous is not None else None
    sr_before = _read(previous.sr_revision()) if previous is not None else None
    revision = (previous.revision if previous is not None else 0) + 1
    seg = sr = None
    if labelmap is not None:
        seg = labelmap_to_seg(labelmap, sources, series_number=SEG_SERIES_NUMBER, description=set_name[:64],
                              annotator=_person_name(annotator), series_description=description, predecessor=seg_before,
                              segmentation_type=segmentation_type)
        seg.InstanceNumber = revision
    if findings or measurements:
        sr = findings_to_sr(findings, measurements, sources, observer=_person_name(annotator),
                            series_description=description,
                            predecessor=sr_before, label_codes=label_codes, series_number=SR_SERIES_NUMBER,
                            attributes=attributes)
        sr.InstanceNumber = revision
    return seg, sr


def _read(revision: Revision | None) -> Dataset | None:
    return None if revision is None else pydicom.dcmread(revision.path, stop_before_pixels=True)


# -- listing -----------------------------------------------------------------------------------------------
def list_sets(archive, study_instance_uid: str, extra_paths: Sequence[Path] = ()) -> list[AnnotationSet]:
    """The annotation sets of a study in ``archive`` (any ArchiveClient, or None), by annotator and name.

    ``extra_paths`` are SEG / SR files saved here that may not be in the archive yet (still in the
    outbox); those of the study join the listing, an instance found in both counts once.
    """
    revisions: list[tuple[str, Revision]] = []
    seen: set[str] = set()
    for series in archive.find_series(study_instance_uid) if archive is not None else []:
        if series.modality not in ("SEG", "SR"):
            continue
        # a cached annotation series that the archive has grown since (a new revision) is topped up by the
        # client itself: both remote clients compare the archive's instance count with the cache's
        for path in archive.fetch_series(series.series_instance_uid):
            found = _revision(Path(path), series.modality)
            if found is not None and found[1].sop_instance_uid not in seen:
                seen.add(found[1].sop_instance_uid)
                revisions.append(found)
    for path in extra_paths:
        found = _revision(Path(path), "", study_instance_uid)
        if found is not None and found[1].sop_instance_uid not in seen:
            seen.add(found[1].sop_instance_uid)
            revisions.append(found)
    sets: dict[tuple[str, str], dict[str, list[Revision]]] = {}
    for name, rev in revisions:
        sets.setdefault((rev.annotator, name), {"SEG": [], "SR": []})[rev.modality].append(rev)
    order = lambda r: (r.revision, r.date)  # noqa: E731
    return [AnnotationSet(study_instance_uid, annotator, name, tuple(sorted(by["SEG"], key=order)),
                          tuple(sorted(by["SR"], key=order)))
            for (annotator, name), by in sorted(sets.items())]


def _revision(path: Path, modality: str, study_instance_uid: str = "") -> tuple[str, Revision] | None:
    from workstation.dicom.sr import sr_person_observer

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - not a DICOM file: not an annotation
        return None
    if study_instance_uid and str(ds.get("StudyInstanceUID", "")) != study_instance_uid:
        return None
    modality = str(ds.get("Modality", modality))
    if modality == "SEG":
        annotator = str(ds.get("ContentCreatorName", "") or "")
    elif modality == "SR":
        annotator = sr_person_observer(ds) or _device_observer(ds)
    else:
        return None
    date = f"{ds.get('ContentDate', '')}{str(ds.get('ContentTime', ''))[:6]}"
    name = str(ds.get("SeriesDescription", "") or ds.get("ContentLabel", "") or modality)
    return name, Revision(modality, str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID),
                          int(ds.get("InstanceNumber") or 1), _display(annotator) or "(unknown)", date, path)


def _device_observer(ds: Dataset) -> str:
    for item in ds.get("ContentSequence") or []:
        seq = item.get("ConceptNameCodeSequence")
        if item.get("RelationshipType") == "HAS OBS CONTEXT" and seq and seq[0].CodeValue == "121013":
            return str(item.TextValue)
    return ""


# -- loading -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedSet:
    """One revision of a set, read onto the grid of the image series it annotates."""

    annotation_set: AnnotationSet
    volume: Volume | None  # the referenced image series (None for an SR-only set with no SEG)
    layers: tuple[LabelMap, ...]  # one label map, or one per group of overlapping segments
    findings: tuple[Finding, ...] = ()
    measurements: tuple = ()
    attributes: dict[str, dict[str, object]] = field(default_factory=dict)  # finding uid -> schema attributes
    seg_revision: Revision | None = None
    sr_revision: Revision | None = None

    @property
    def review_state(self) -> str:
        return review_state(self.findings)


def review_state(findings: Sequence[Finding]) -> str:
    """"approved" when every finding was accepted (as it was, or in a form the reviewer edited),
    "rejected" when one was rejected, else "unreviewed"."""
    if any(f.status is Status.REJECTED for f in findings):
        return "rejected"
    if findings and all(f.status in (Status.ACCEPTED, Status.EDITED) for f in findings):
        return "approved"
    return "unreviewed"


def set_review_state(annotation_set: AnnotationSet) -> str:
    """The review state of a set's latest SR ("no findings" for a SEG-only set, "unreadable" for an SR
    this reader does not know)."""
    latest = annotation_set.sr_revision()
    if latest is None:
        return "no findings"
    try:
        findings, _, _ = read_sr_file(latest.path)
    except AnnotationSetError:
        return "unreadable"
    return review_state(findings)


def load_set(archive, annotation_set: AnnotationSet, revision: int | None = None) -> LoadedSet:
    """Fetch a revision (default: the latest) and read it: label map(s) on the source grid, findings."""
    from workstation.dicom.seg import SegError

    seg_rev, sr_rev = annotation_set.seg_revision(revision), annotation_set.sr_revision(revision)
    if seg_rev is None and sr_rev is None:
        raise AnnotationSetError(f"set {annotation_set.name!r} has no revision {revision}")
    volume, layers = None, ()
    if seg_rev is not None:
        try:
            volume, layers = _seg_onto_source(archive, seg_rev.path, annotation_set.study_instance_uid)
        except SegError as exc:
            raise AnnotationSetError(str(exc)) from None
    findings, measurements, attributes = (), (), {}
    if sr_rev is not None:
        findings, measurements, attributes = read_sr_file(sr_rev.path)
    return LoadedSet(annotation_set, volume, tuple(layers), tuple(findings), tuple(measurements), attributes,
                     seg_rev, sr_rev)


def read_sr_file(path: Path) -> tuple[list[Finding], list, dict]:
    from workstation.dicom.sr import SrError, sr_attributes, sr_to_findings

    try:
        ds = pydicom.dcmread(path)
        findings, measurements = sr_to_findings(ds)
    except SrError as exc:
        raise AnnotationSetError(f"{path.name}: {exc}") from None
    return findings, measurements, sr_attributes(ds)


def _seg_onto_source(archive, seg_path: Path, study_uid: str) -> tuple[Volume, list[LabelMap]]:
    """The SEG's image series from ``archive`` and the SEG's layers pasted onto that series' grid."""
    from workstation.dicom.seg import labelmap_onto_grid, read_seg_layers, referenced_instances

    header = pydicom.dcmread(seg_path, stop_before_pixels=True)
    refs = header.get("ReferencedSeriesSequence") or []
    if not refs:
        raise AnnotationSetError(f"{seg_path.name}: the SEG names no source image series")
    series_uid = str(refs[0].SeriesInstanceUID)
    in_study = {s.series_instance_uid for s in archive.find_series(study_uid)}
    if series_uid not in in_study:
        raise AnnotationSetError(f"{seg_path.name}: the SEG references image series {series_uid}, which is not "
                                 f"in study {study_uid}")
    volume = _load_volume(archive.fetch_series(series_uid), series_uid)
    wanted = referenced_instances(header)
    missing = wanted - set(volume.info.source_sop_instance_uids)
    if missing:
        raise AnnotationSetError(f"{seg_path.name}: {len(missing)} of the {len(wanted)} images the SEG references "
                                 f"are not in series {series_uid} (e.g. {sorted(missing)[0]})")
    layers = []
    for layer in read_seg_layers(seg_path):
        if layer.frame_of_reference_uid and volume.info.frame_of_reference_uid \
                and layer.frame_of_reference_uid != volume.info.frame_of_reference_uid:
            raise AnnotationSetError(f"{seg_path.name}: the SEG is in another frame of reference than its images")
        labels = labelmap_onto_grid(layer, volume.shape, volume.affine)
        layers.append(LabelMap.on_grid_of(volume, labels, layer.segments))
    return volume, layers


def _load_volume(paths: Sequence[Path], series_uid: str) -> Volume:
    from workstation.dicom.series import load_series

    volumes = [v for v in load_series(paths) if v.info.series_instance_uid == series_uid]
    if not volumes:
        raise AnnotationSetError(f"series {series_uid} holds no loadable image stack")
    return max(volumes, key=lambda v: int(np.prod(v.shape)))
