"""``import-lidc``: the LIDC-IDRI reads of one series as one annotation set per reader, plus their agreement.

Each reader's set is a DICOM SEG (the nodule contours, one segment per nodule) and a TID 1500 SR (one
finding per nodule: "Lung nodule", SCT 27925004, volume and centroid from the reader's label map, the
reader as person observer).  The SR writer (:func:`workstation.dicom.sr.findings_to_sr`) has no slot for
free qualitative evaluations, so the nine LIDC characteristics are added to each finding's measurement
group afterwards as CODE items (CONTAINS, concept and value in the local scheme ``99LIDC``, see
:mod:`workstation.dicom.lidc`), together with the LIDC nodule ID as a TEXT item;
:func:`read_sr_characteristics` reads them back.  A copy stays in ``lidc-characteristics.json``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workstation.dicom.lidc import (
    CHARACTERISTIC_CODES,
    LIDC_SCHEME,
    NODULE_ID_CODE,
    NODULE_TYPE,
    LidcError,
    LidcFile,
    LidcRead,
    characteristic_code,
    characteristic_rating,
    parse_lidc_xml,
    rasterise_read,
)
from workstation.labels.agreement import Agreement, largest_common_structure
from workstation.model.labelmap import LabelMap


@dataclass(frozen=True)
class LidcImport:
    files: dict[str, Path]  # annotator -> SEG file
    maps: dict[str, LabelMap]
    agreement: Agreement | None
    warnings: tuple[str, ...]
    sr_files: dict[str, Path] = field(default_factory=dict)  # annotator -> SR file

    @property
    def written(self) -> list[Path]:
        """Every DICOM file written: per reader its SEG, then its SR."""
        return [p for a in self.files for p in (self.files[a], self.sr_files.get(a)) if p is not None]


def _series_paths(xml: LidcFile, series: str | None, fetch_paths: Callable[[str], list] | None) -> list[Path]:
    from workstation.archive.client import iter_files

    if series and Path(series).exists():
        return list(iter_files([Path(series)]))
    uid = series or xml.series_instance_uid
    if fetch_paths is None:
        raise LidcError(f"series {uid}: give --series as a folder")
    try:
        return [Path(p) for p in fetch_paths(uid)]
    except Exception as exc:  # noqa: BLE001 - NotFound and archive errors: one message
        raise LidcError(f"the series {uid} of the reads is not available ({exc}); give --series PATH") from None


def import_lidc(xml_path: Path, out_dir: Path, *, series: str | None = None,
                fetch_paths: Callable[[str], list] | None = None) -> LidcImport:
    """Parse the reads, rasterise each reader onto the series, write one SEG per reader into ``out_dir``."""
    from workstation.dicom.seg import labelmap_to_seg
    from workstation.dicom.series import load_series

    xml = parse_lidc_xml(xml_path)
    paths = _series_paths(xml, series, fetch_paths)
    volumes = load_series(paths)
    volume = next((v for v in volumes if v.info.series_instance_uid == xml.series_instance_uid), None)
    if volume is None:
        raise LidcError(f"{xml_path}: its series {xml.series_instance_uid} is not among the "
                        f"{len(volumes)} series given")
    sources = _source_headers(paths, volume.info.series_instance_uid)
    out_dir.mkdir(parents=True, exist_ok=True)
    files, maps, sr_files, warnings = {}, {}, {}, []
    characteristics = {}
    for read in xml.reads:
        labelmap, notes = rasterise_read(read, volume)
        warnings += notes
        characteristics[read.annotator] = {n.nodule_id: n.characteristics for n in read.nodules if n.characteristics}
        if not labelmap.segments:
            warnings.append(f"{read.annotator}: no nodule contour on this series; no SEG written")
            continue
        seg = labelmap_to_seg(labelmap, sources, series_number=900 + read.reader, description=read.annotator)
        _name_annotator(seg, read.annotator, read.reader)
        path = out_dir / f"lidc-reader-{read.reader}-seg.dcm"
        seg.save_as(path, enforce_file_format=True)
        files[read.annotator], maps[read.annotator] = path, labelmap
        sr = reader_sr(read, labelmap, sources)
        sr_path = out_dir / f"lidc-reader-{read.reader}-sr.dcm"
        sr.save_as(sr_path, enforce_file_format=True)
        sr_files[read.annotator] = sr_path
    # a copy of the characteristics (also those of nodules with no contour on this series, which have no SR item)
    (out_dir / "lidc-characteristics.json").write_text(json.dumps(characteristics, indent=2))
    return LidcImport(files, maps, largest_common_structure(maps), tuple(warnings), sr_files)


def enqueue_import(result: LidcImport, outbox, archive: str) -> list:
    """Put every SEG and SR of an import into the sync outbox for ``archive``; the outbox items."""
    return [outbox.enqueue(path, archive) for path in result.written]


# -- one SR per reader -----------------------------------------------------------------------------------
LUNG_NODULE = "Lung nodule"


def reader_sr(read: LidcRead, labelmap: LabelMap, sources: list):
    """The reader's nodules as a TID 1500 measurement report, with the LIDC characteristics per finding."""
    from workstation.dicom.sr import findings_to_sr

    observer = f"LIDC^Reader {read.reader}"
    by_id = {}
    for nodule in read.nodules:
        by_id.setdefault(nodule.nodule_id, nodule)
    findings, nodule_of = [], {}
    for segment in labelmap.segments:
        finding = _finding(labelmap, segment.number, observer, read, segment.name)
        if finding is None:
            continue
        findings.append(finding)
        nodule_of[_tracking_uid(finding.uid)] = by_id.get(segment.name)
    sr = findings_to_sr(findings, [], sources, observer=observer, series_description=f"{read.annotator} nodules",
                        label_codes={LUNG_NODULE: NODULE_TYPE}, series_number=910 + read.reader)
    for group in _finding_groups(sr):
        nodule = nodule_of.get(_group_tracking_uid(group))
        if nodule is not None:
            group.ContentSequence.extend(_characteristic_items(nodule.nodule_id, nodule.characteristics))
    sr.CodingSchemeIdentificationSequence.append(_lidc_scheme_item())
    return sr


def _finding(labelmap: LabelMap, number: int, observer: str, read: LidcRead, nodule_id: str):
    from workstation.model.finding import Finding, FindingKind, Provenance

    kji = np.argwhere(labelmap.labels == number)
    if not len(kji):
        return None
    ijk = kji[:, ::-1].astype(float)
    to_lps = lambda v: np.asarray(v, float) @ labelmap.affine[:3, :3].T + labelmap.affine[:3, 3]  # noqa: E731
    lo, hi = ijk.min(axis=0), ijk.max(axis=0)
    corners = to_lps([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    small = len(kji) == 1  # a nodule under 3 mm: a point, no volume
    ident = uuid.uuid5(uuid.NAMESPACE_URL, f"lidc:{labelmap.source_series_uid}:{read.reader}:{nodule_id}:{number}")
    return Finding(
        kind=FindingKind.POINT if small else FindingKind.REGION, label=LUNG_NODULE, score=1.0,
        centroid_mm=tuple(float(v) for v in to_lps(ijk.mean(axis=0))),
        bbox_min_mm=tuple(float(v) for v in corners.min(axis=0)),
        bbox_max_mm=tuple(float(v) for v in corners.max(axis=0)),
        provenance=Provenance(observer, ""), volume_mm3=0.0 if small else len(kji) * labelmap.voxel_volume_mm3,
        segment_number=number, series_instance_uid=labelmap.source_series_uid, uid=ident.hex)


def _tracking_uid(finding_uid: str) -> str:
    from workstation.dicom.sr.encode import tracking_uid

    return tracking_uid(finding_uid)


def _concept(item) -> tuple[str, str]:
    seq = item.get("ConceptNameCodeSequence")
    return (str(seq[0].CodeValue), str(seq[0].CodingSchemeDesignator)) if seq else ("", "")


def _finding_groups(sr):
    """The measurement groups (TID 1411) of a report that carry a tracking UID."""
    for item in sr.get("ContentSequence") or []:
        if _concept(item) == ("126010", "DCM"):  # Imaging Measurements
            for group in item.get("ContentSequence") or []:
                if _concept(group) == ("125007", "DCM") and _group_tracking_uid(group):
                    yield group


def _group_tracking_uid(group) -> str:
    for item in group.get("ContentSequence") or []:
        if _concept(item) == ("112040", "DCM"):  # Tracking Unique Identifier
            return str(item.UID)
    return ""


def _characteristic_items(nodule_id: str, characteristics: dict[str, int]) -> list:
    import highdicom as hd
    from pydicom.sr.coding import Code as DicomCode

    dicom = lambda c: DicomCode(c.value, c.scheme, c.meaning)  # noqa: E731
    out = []
    if nodule_id:
        out.append(hd.sr.TextContentItem(dicom(NODULE_ID_CODE), nodule_id[:1024],
                                         relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    for name, rating in characteristics.items():
        if name in CHARACTERISTIC_CODES:
            out.append(hd.sr.CodeContentItem(dicom(CHARACTERISTIC_CODES[name]),
                                             dicom(characteristic_code(name, int(rating))),
                                             relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    return out


def _lidc_scheme_item():
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodingSchemeDesignator = LIDC_SCHEME
    item.CodingSchemeName = "LIDC-IDRI nodule characteristics"
    item.CodingSchemeResponsibleOrganization = "LIDC-IDRI (local codes of this workstation)"
    return item


def read_sr_characteristics(sr) -> dict[str, dict]:
    """Per finding (tracking UID) of a reader's SR: ``{"nodule_id": ..., "characteristics": {name: rating}}``."""
    names = {(c.value, c.scheme): name for name, c in CHARACTERISTIC_CODES.items()}
    out = {}
    for group in _finding_groups(sr):
        entry = {"nodule_id": "", "characteristics": {}}
        for item in group.ContentSequence:
            concept = _concept(item)
            if concept == (NODULE_ID_CODE.value, NODULE_ID_CODE.scheme):
                entry["nodule_id"] = str(item.TextValue)
            elif concept in names:
                name = names[concept]
                entry["characteristics"][name] = characteristic_rating(name, str(item.ConceptCodeSequence[0].CodeValue))
        out[_group_tracking_uid(group)] = entry
    return out


def _source_headers(paths: list[Path], series_uid: str) -> list:
    import pydicom

    out = []
    for p in paths:
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - files that are not DICOM were skipped by the loader too
            continue
        if str(ds.get("SeriesInstanceUID", "")) == series_uid:
            out.append(ds)
    return out


def _name_annotator(seg, annotator: str, reader: int) -> None:
    """Name the reader in the SEG: content creator, label and series description."""
    seg.ContentCreatorName = f"LIDC^Reader {reader}"
    seg.ContentLabel = f"LIDC_READER_{reader}"
    seg.SeriesDescription = f"{annotator} nodules"
