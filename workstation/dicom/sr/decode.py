"""A TID 1500 measurement report -> Findings and measurements (the objects ``findings_to_sr`` wrote)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import numpy as np
from pydicom.dataset import Dataset
from pydicom.valuerep import DT

from workstation.dicom.sr import _codes as C
from workstation.dicom.sr.encode import Measurement, SrError
from workstation.model.finding import Decision, Finding, FindingKind, Provenance, Status
from workstation.model.measurement import EllipseROI, LengthMeasurement, RoiStats

_COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
_SR_CLASSES = {_COMPREHENSIVE_3D_SR, "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.88.22"}


def sr_to_findings(dataset: Dataset) -> tuple[list[Finding], list[Measurement]]:
    """Read a measurement report back into Findings and measurements.

    Finding groups come back as :class:`Finding`; length groups as :class:`LengthMeasurement`; ellipse
    groups as ``(EllipseROI, RoiStats)`` when statistics were stored, else as :class:`EllipseROI`.
    Groups of other kinds (from other writers) are skipped.
    """
    if str(dataset.get("SOPClassUID", "")) not in _SR_CLASSES:
        raise SrError(f"not a structured report (SOP class {dataset.get('SOPClassUID', 'missing')})")
    template = dataset.get("ContentTemplateSequence")
    if not template or str(template[0].get("TemplateIdentifier", "")) != "1500":
        raise SrError("not a TID 1500 measurement report (unknown template)")
    device = _document_device(dataset)
    person = _document_person(dataset)
    series_uid = _evidence_series(dataset)
    findings: list[Finding] = []
    measurements: list[Measurement] = []
    for group in _groups(dataset):
        items = _by_concept(group)
        if C.key(C.PROBABILITY) in items:
            findings.append(_finding(items, device, person, series_uid))
        elif C.key(C.LENGTH) in items:
            points = _points(items[C.IMAGE_REGION][0])
            measurements.append(LengthMeasurement(points[0], points[1]))
        elif C.key(C.AREA) in items:
            measurements.append(_ellipse(items))
    return findings, measurements


def sr_attributes(dataset: Dataset) -> dict[str, dict[str, object]]:
    """Per finding uid, the attributes ``findings_to_sr`` stored (schema key -> text or integer)."""
    out: dict[str, dict[str, object]] = {}
    for group in _groups(dataset):
        items = _by_concept(group)
        if C.key(C.PROBABILITY) not in items:
            continue
        values: dict[str, object] = {}
        for item in group.get("ContentSequence") or []:
            seq = item.get("ConceptNameCodeSequence")
            if not seq or str(seq[0].CodingSchemeDesignator) != C.LOCAL_SCHEME \
                    or not str(seq[0].CodeValue).startswith(C.ATTRIBUTE_PREFIX):
                continue
            key = str(seq[0].CodeMeaning)
            if item.ValueType == "NUM":
                values[key] = int(float(item.MeasuredValueSequence[0].NumericValue))
            else:
                values[key] = str(item.get("TextValue", "")).strip()
        out[_finding_uid(_text(items, C.TRACKING_UID))] = values
    return out


def sr_person_observer(dataset: Dataset) -> str:
    """The person observer of the whole report ("" for a device's report)."""
    return _document_person(dataset)


def _groups(dataset: Dataset) -> Iterator[Dataset]:
    for item in dataset.get("ContentSequence") or []:
        if C.concept_of(item) == C.IMAGING_MEASUREMENTS:
            for group in item.get("ContentSequence") or []:
                if C.concept_of(group) == C.MEASUREMENT_GROUP:
                    yield group


def _by_concept(group: Dataset) -> dict[tuple[str, str], list[Dataset]]:
    out: dict[tuple[str, str], list[Dataset]] = {}
    for item in group.get("ContentSequence") or []:
        out.setdefault(C.concept_of(item), []).append(item)
    return out


def _num(items: dict, code, derivation=None) -> float | None:
    for item in items.get(C.key(code), []):
        mods = [m.ConceptCodeSequence[0] for m in item.get("ContentSequence") or []
                if C.concept_of(m) == C.DERIVATION]
        got = (str(mods[0].CodeValue), str(mods[0].CodingSchemeDesignator)) if mods else None
        if got == (C.key(derivation) if derivation is not None else None):
            value = item.MeasuredValueSequence[0]
            return float(value.get("FloatingPointValue", value.NumericValue))
    return None


def _code_value(items: dict, code) -> str | None:
    found = items.get(C.key(code))
    return str(found[0].ConceptCodeSequence[0].CodeValue) if found else None


def _text(items: dict, concept: tuple[str, str]) -> str:
    found = items.get(concept)
    if not found:
        return ""
    item = found[0]
    return str(item.get("TextValue", "") or item.get("UID", ""))


def _points(item: Dataset) -> np.ndarray:
    return np.asarray(item.GraphicData, float).reshape(-1, 3)


def _finding(items: dict, device: dict, person: str, series_uid: str) -> Finding:
    centroid = tuple(float(v) for v in _points(items[C.VOLUME_SURFACE][0])[0])
    bbox = _points(items[C.key(C.BOUNDING_BOX)][0]) if C.key(C.BOUNDING_BOX) in items else np.array([centroid] * 2)
    segment = _num(items, C.SEGMENT_NUMBER)
    return Finding(
        kind=FindingKind(_code_value(items, C.FINDING_KIND).lower()) if C.key(C.FINDING_KIND) in items
        else FindingKind.REGION,
        label=_text(items, C.TRACKING_ID), score=_num(items, C.PROBABILITY),
        centroid_mm=centroid, bbox_min_mm=tuple(float(v) for v in bbox[0]),
        bbox_max_mm=tuple(float(v) for v in bbox[1]), provenance=_provenance(items, device, person),
        volume_mm3=_num(items, C.VOLUME) or 0.0, segment_number=None if segment is None else int(segment),
        series_instance_uid=series_uid, decision=_decision(items), uid=_finding_uid(_text(items, C.TRACKING_UID)),
    )


def _finding_uid(uid: str) -> str:
    """The inverse of ``encode.tracking_uid``: a 2.25 UID of 128 bits is a uuid hex."""
    if uid.startswith("2.25."):
        n = int(uid[5:])
        if n < 1 << 128:
            return f"{n:032x}"
    return uid


def _provenance(items: dict, device: dict, person: str) -> Provenance:
    name, version = _text(items, C.ALGORITHM_NAME), _text(items, C.ALGORITHM_VERSION)
    if not name:
        return Provenance(person or device.get("name", ""), "")
    title = ""
    if device.get("model") == f"{name} {version}" and device.get("name") != name:
        title = device["name"]
    return Provenance(name, version, title)


def _decision(items: dict) -> Decision | None:
    found = items.get(C.key(C.REVIEW_STATUS))
    if not found:
        return None
    item = found[0]
    status = {C.ACCEPTED.value: Status.ACCEPTED, C.EDITED.value: Status.EDITED}.get(
        str(item.ConceptCodeSequence[0].CodeValue), Status.REJECTED)
    who = [str(c.PersonName) for c in item.get("ContentSequence") or []
           if C.concept_of(c) == C.key(C.PERSON_OBSERVER_NAME)]
    if not who or "ObservationDateTime" not in item:
        raise SrError("a review decision in the SR lacks who made it or when")
    at = DT(str(item.ObservationDateTime))
    return Decision(status, who[0], datetime.combine(at.date(), at.timetz()))


def _ellipse(items: dict) -> EllipseROI | tuple[EllipseROI, RoiStats]:
    p = _points(items[C.IMAGE_REGION][0])
    center = (p[0] + p[1]) / 2
    a, b = p[1] - p[0], p[3] - p[2]
    roi = EllipseROI(center, a / np.linalg.norm(a), b / np.linalg.norm(b),
                     float(np.linalg.norm(a) / 2), float(np.linalg.norm(b) / 2))
    name = next((n for n in (C.ATTENUATION, C.MR_SIGNAL, C.PIXEL_VALUE) if C.key(n) in items), None)
    if name is None:
        return roi
    values = {k: _num(items, name, d) for k, d in C.DERIVATIONS.items()}
    count = _num(items, C.NUMBER_OF_PIXELS)
    stats = RoiStats(values["mean"], values["sd"], values["min"], values["max"], int(count or 0),
                     float(_num(items, C.AREA)))
    return roi, stats


def _observer_items(dataset: Dataset) -> Iterator[Dataset]:
    for item in dataset.get("ContentSequence") or []:
        if item.get("RelationshipType") == "HAS OBS CONTEXT":
            yield item


def _document_device(dataset: Dataset) -> dict:
    out = {}
    for item in _observer_items(dataset):
        concept = C.concept_of(item)
        if concept == C.DEVICE_OBSERVER_NAME:
            out["name"] = str(item.TextValue)
        elif concept == C.DEVICE_OBSERVER_MODEL:
            out["model"] = str(item.TextValue)
        elif concept == C.DEVICE_OBSERVER_UID:
            out["uid"] = str(item.UID)
    return out


def _document_person(dataset: Dataset) -> str:
    for item in _observer_items(dataset):
        if C.concept_of(item) == C.key(C.PERSON_OBSERVER_NAME):
            return str(item.PersonName)
    return ""


def _evidence_series(dataset: Dataset) -> str:
    for study in dataset.get("CurrentRequestedProcedureEvidenceSequence") or []:
        for series in study.get("ReferencedSeriesSequence") or []:
            return str(series.SeriesInstanceUID)
    return ""
