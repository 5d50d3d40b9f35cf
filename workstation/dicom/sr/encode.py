"""Findings and measurements -> a TID 1500 measurement report (Comprehensive 3D SR, highdicom)."""

from __future__ import annotations

import re
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code as DicomCode

from workstation.dicom.seg import (
    MANUFACTURER,
    MODEL_NAME,
    SOFTWARE_VERSION,
    _fix_patient_age,
    clean_sources,
    read_source_headers,
)
from workstation.dicom.sr import _codes as C
from workstation.model.finding import Finding, Provenance, Status
from workstation.model.labelmap import Code
from workstation.model.measurement import EllipseROI, LengthMeasurement, RoiStats

Measurement = LengthMeasurement | EllipseROI | tuple[EllipseROI, RoiStats]
_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


class SrError(ValueError):
    """Findings that cannot be written, or a dataset that is not a readable measurement report."""


@dataclass(frozen=True)
class DeviceObserver:
    """The device that observed (an AI model): DeviceObserverUID, name, manufacturer and model name."""

    uid: str
    name: str
    manufacturer: str = MANUFACTURER
    model_name: str = ""

    @classmethod
    def for_model(cls, provenance: Provenance, manufacturer: str = MANUFACTURER) -> DeviceObserver:
        """The observer for a model's results; the same model id and version always get the same UID."""
        ident = uuid.uuid5(uuid.NAMESPACE_URL, f"workstation-model:{provenance.model_id}:{provenance.model_version}")
        return cls(f"2.25.{ident.int}", provenance.model_title or provenance.model_id, manufacturer,
                   f"{provenance.model_id} {provenance.model_version}".strip())


def tracking_uid(finding_uid: str) -> str:
    """A DICOM UID for a finding's uid: a uuid hex maps to its 2.25 form (and back); a UID stays itself."""
    if _HEX32.match(finding_uid):
        return f"2.25.{int(finding_uid, 16)}"
    if _UID_RE.match(finding_uid) and len(finding_uid) <= 64:
        return finding_uid
    return str(hd.UID())


def findings_to_sr(findings: Sequence[Finding], measurements: Sequence[Measurement],
                   source_datasets_or_refs: Sequence[Dataset | str | Path], *, observer: str | DeviceObserver,
                   series_description: str = "Findings", predecessor: Dataset | None = None,
                   label_codes: Mapping[str, Code] | None = None, series_number: int = 901,
                   attributes: Mapping[str, Mapping[str, object]] | None = None) -> Dataset:
    """Encode findings and measurements as a TID 1500 measurement report (fresh SOP Instance UID).

    ``source_datasets_or_refs`` are the source images' headers (or their file paths); ``observer`` a
    person's name or a :class:`DeviceObserver`; ``predecessor`` the previous revision of this report (the
    new one joins its series and lists it in PredecessorDocumentsSequence); ``label_codes`` the finding
    type code of a label (else SCT "Clinical finding"); ``attributes`` per finding uid the label schema's
    attributes (text or integer values, e.g. nodule type, malignancy), read back by ``sr_attributes``.
    """
    sources = _sources(source_datasets_or_refs)
    frame_uid = _frame_of_reference(sources)
    modality = str(sources[0].get("Modality", ""))
    slabs = [_in_slab(f.bbox_min_mm, f.bbox_max_mm, f.centroid_mm, sources) for f in findings]
    groups = [_finding_group(f, slab, frame_uid, (label_codes or {}).get(f.label)) for f, slab in zip(findings, slabs)]
    for f, group in zip(findings, groups):
        group[0].ContentSequence.extend(_attribute_items((attributes or {}).get(f.uid, {})))
    groups += [_measurement_group(n, m, frame_uid, modality) for n, m in enumerate(measurements, start=1)]
    # The image library lists the images the groups lie on (all 133 of a CT would cost seconds to build).
    on = [ds for slab in slabs for ds in slab] + [ds for m in measurements for ds in _measurement_images(m, sources)]
    library = list({str(ds.SOPInstanceUID): ds for ds in on}.values())
    report = hd.sr.MeasurementReport(observation_context=_observation_context(observer),
                                     procedure_reported=codes.cid100.CTUnspecifiedBodyRegion
                                     if modality == "CT" else DicomCode("363679005", "SCT", "Imaging procedure"),
                                     imaging_measurements=groups, referenced_images=library or None)
    series_uid, number, instance = hd.UID(), series_number, 1
    if predecessor is not None:
        _check_predecessor(predecessor, sources)
        series_uid, number = predecessor.SeriesInstanceUID, int(predecessor.get("SeriesNumber") or series_number)
        instance = int(predecessor.get("InstanceNumber") or 0) + 1
    sr = hd.sr.Comprehensive3DSR(
        evidence=sources, content=report, series_instance_uid=series_uid, series_number=number,
        sop_instance_uid=hd.UID(), instance_number=instance, manufacturer=MANUFACTURER,
        previous_versions=[predecessor] if predecessor is not None else None, is_complete=True,
        series_description=series_description,
    )
    sr.ManufacturerModelName, sr.SoftwareVersions = MODEL_NAME, SOFTWARE_VERSION
    sr.CodingSchemeIdentificationSequence = [C.local_scheme_item()]
    _fix_patient_age(sr)
    return sr


def _sources(given: Sequence[Dataset | str | Path]) -> list[Dataset]:
    if not given:
        raise SrError("an SR needs the source images it reports on (none were given)")
    paths = [g for g in given if isinstance(g, (str, Path))]
    datasets = [g for g in given if isinstance(g, Dataset)]
    if len(paths) + len(datasets) != len(given):
        raise SrError("source images must be pydicom Datasets (headers) or file paths")
    return clean_sources(datasets + read_source_headers(paths))


def _frame_of_reference(sources: Sequence[Dataset]) -> str:
    uids = {str(ds.get("FrameOfReferenceUID", "")) for ds in sources} - {""}
    if len(uids) != 1:
        raise SrError(f"the source images must share one frame of reference, found {len(uids)}")
    return uids.pop()


def _check_predecessor(predecessor: Dataset, sources: Sequence[Dataset]) -> None:
    if str(predecessor.get("StudyInstanceUID", "")) != str(sources[0].StudyInstanceUID):
        raise SrError("the predecessor SR belongs to another study")


def _observation_context(observer: str | DeviceObserver) -> hd.sr.ObservationContext:
    if isinstance(observer, DeviceObserver):
        attrs = hd.sr.DeviceObserverIdentifyingAttributes(
            uid=observer.uid, name=observer.name, manufacturer_name=observer.manufacturer or None,
            model_name=observer.model_name or None)
        return hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(codes.cid270.Device, attrs))
    if not observer:
        raise SrError("an SR needs an observer: a person's name or a DeviceObserver")
    attrs = hd.sr.PersonObserverIdentifyingAttributes(name=observer)
    return hd.sr.ObservationContext(observer_person_context=hd.sr.ObserverContext(codes.cid270.Person, attrs))


# -- one group per finding -------------------------------------------------------------------------------
def _finding_group(f: Finding, slab: Sequence[Dataset], frame_uid: str,
                   label_code: Code | None) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    measurements = [hd.sr.Measurement(C.PROBABILITY, f.score, C.RATIO)]
    if f.volume_mm3 > 0:
        measurements.append(hd.sr.Measurement(C.VOLUME, f.volume_mm3, C.MM3))
    if f.segment_number is not None:
        measurements.append(hd.sr.Measurement(C.SEGMENT_NUMBER, f.segment_number, C.NO_UNITS))
    evaluations = [hd.sr.QualitativeEvaluation(C.FINDING_KIND, C.KINDS[f.kind.value])]
    if f.decision is not None:
        evaluations.append(_decision(f))
    surface = hd.sr.VolumeSurface(
        hd.sr.GraphicTypeValues3D.POINT, np.array([f.centroid_mm], float), frame_uid,
        source_images=[hd.sr.SourceImageForSegmentation.from_source_image(ds) for ds in slab])
    algorithm = None
    if f.provenance.model_version:
        algorithm = hd.sr.AlgorithmIdentification(name=f.provenance.model_id, version=f.provenance.model_version)
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=tracking_uid(f.uid), identifier=f.label or "finding"),
        referenced_volume_surface=surface, finding_type=_dicom_code(label_code) if label_code else C.CLINICAL_FINDING,
        algorithm_id=algorithm, measurements=measurements, qualitative_evaluations=evaluations)
    group[0].ContentSequence.append(_bbox_item(f, frame_uid))
    return group


def _attribute_items(values: Mapping[str, object]) -> list[Dataset]:
    """One TEXT (choice, text) or NUM (scale) item per attribute, concept in the local scheme."""
    out = []
    for key, value in values.items():
        concept = C.attribute_concept(key)
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise SrError(f"attribute {key!r}: expected text or an integer, got {value!r}")
        if isinstance(value, int):
            out.append(hd.sr.NumContentItem(concept, value, C.NO_UNITS,
                                            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
        else:
            out.append(hd.sr.TextContentItem(concept, value[:1024] or " ",
                                             relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    return out


def _decision(f: Finding) -> hd.sr.QualitativeEvaluation:
    """ACCEPTED / REJECTED, with who as a Person Observer Name and when as the item's ObservationDateTime."""
    decision = f.decision
    status = {Status.ACCEPTED: C.ACCEPTED, Status.EDITED: C.EDITED}.get(decision.status, C.REJECTED)
    evaluation = hd.sr.QualitativeEvaluation(C.REVIEW_STATUS, status)
    item = evaluation[0]
    item.ObservationDateTime = decision.at.strftime("%Y%m%d%H%M%S.%f") + _tz(decision.at)
    with warnings.catch_warnings():  # user names are often one component ("jsmith"); PN allows that
        warnings.simplefilter("ignore", UserWarning)
        who = hd.sr.PnameContentItem(C.PERSON_OBSERVER_NAME, decision.by,
                                     relationship_type=hd.sr.RelationshipTypeValues.HAS_OBS_CONTEXT)
    item.ContentSequence = hd.sr.ContentSequence([who])
    return evaluation


def _tz(at) -> str:
    offset = at.utcoffset()
    if offset is None:
        return ""
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def _bbox_item(f: Finding, frame_uid: str) -> Dataset:
    return hd.sr.Scoord3DContentItem(
        C.BOUNDING_BOX, hd.sr.GraphicTypeValues3D.POLYLINE, np.array([f.bbox_min_mm, f.bbox_max_mm], float),
        frame_uid, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def _in_slab(lo_mm, hi_mm, centre_mm, sources: Sequence[Dataset]) -> list[Dataset]:
    """The source images a box crosses (at least the one nearest its centre)."""
    positioned = [ds for ds in sources if "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds]
    if not positioned:
        return list(sources)
    iop = np.asarray(positioned[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    where = np.array([np.dot(normal, np.asarray(ds.ImagePositionPatient, float)) for ds in positioned])
    corners = (np.dot(normal, lo_mm), np.dot(normal, hi_mm))
    lo, hi = min(corners) - 1e-3, max(corners) + 1e-3
    inside = [ds for ds, w in zip(positioned, where) if lo <= w <= hi]
    return inside or [positioned[int(np.argmin(np.abs(where - np.dot(normal, centre_mm))))]]


def _measurement_images(m: Measurement, sources: Sequence[Dataset]) -> list[Dataset]:
    roi = m[0] if isinstance(m, tuple) else m
    centre = np.asarray(roi.center if isinstance(roi, EllipseROI) else (np.asarray(roi.p0) + np.asarray(roi.p1)) / 2)
    return _in_slab(centre, centre, centre, sources)


def _dicom_code(c: Code) -> DicomCode:
    return DicomCode(c.value, c.scheme, c.meaning)


# -- one group per measurement ---------------------------------------------------------------------------
def _measurement_group(n: int, m: Measurement, frame_uid: str,
                       modality: str) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    if isinstance(m, LengthMeasurement):
        points = np.array([m.p0, m.p1], float)
        region = hd.sr.ImageRegion3D(hd.sr.GraphicTypeValues3D.POLYLINE, points, frame_uid)
        values = [hd.sr.Measurement(C.LENGTH, m.length_mm, C.MM)]
        name = f"Length {n}"
    elif isinstance(m, EllipseROI) or (isinstance(m, tuple) and isinstance(m[0], EllipseROI)):
        roi, stats = (m, None) if isinstance(m, EllipseROI) else m
        region = hd.sr.ImageRegion3D(hd.sr.GraphicTypeValues3D.ELLIPSE, _ellipse_points(roi), frame_uid)
        values = [hd.sr.Measurement(C.AREA, roi.area_mm2, C.MM2)] + _stats_measurements(stats, modality)
        name = f"Ellipse {n}"
    else:
        raise SrError(f"cannot store a measurement of type {type(m).__name__} in an SR")
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=name),
        referenced_region=region, finding_type=codes.SCT.SpatialAndRelationalConcept, measurements=values)


def _ellipse_points(roi: EllipseROI) -> np.ndarray:
    """Major axis end points first, then the minor axis ones (PS3.3 ELLIPSE)."""
    c = np.asarray(roi.center, float)
    a = np.asarray(roi.axis_a, float) / np.linalg.norm(roi.axis_a)
    b = np.asarray(roi.axis_b, float) / np.linalg.norm(roi.axis_b)
    axes = [(a, roi.radius_a_mm), (b, roi.radius_b_mm)]
    if roi.radius_b_mm > roi.radius_a_mm:
        axes.reverse()
    return np.array([c - v * r if s < 0 else c + v * r for v, r in axes for s in (-1, 1)], float)


def _stats_measurements(stats: RoiStats | None, modality: str) -> list[hd.sr.Measurement]:
    if stats is None:
        return []
    by_modality = {"CT": (C.ATTENUATION, C.HU), "MR": (C.MR_SIGNAL, C.ARBITRARY)}
    name, unit = by_modality.get(modality, (C.PIXEL_VALUE, C.ARBITRARY))
    out = [hd.sr.Measurement(name, getattr(stats, k), unit, derivation=C.DERIVATIONS[k])
           for k in ("mean", "sd", "min", "max")]
    out.append(hd.sr.Measurement(C.NUMBER_OF_PIXELS, stats.count, C.PIXEL_COUNT))
    return out
