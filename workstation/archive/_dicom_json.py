"""DICOM JSON (PS3.18 annex F) as QIDO-RS and WADO-RS metadata return it, read into the model's refs."""

from __future__ import annotations

from workstation.archive._order import InstanceSpot
from workstation.archive.client import StudyQuery
from workstation.model.refs import SeriesRef, StudyRef

_TAGS = {
    "StudyInstanceUID": "0020000D", "SeriesInstanceUID": "0020000E", "SOPInstanceUID": "00080018",
    "PatientName": "00100010", "PatientID": "00100020", "PatientBirthDate": "00100030", "PatientSex": "00100040",
    "StudyDate": "00080020", "StudyTime": "00080030", "AccessionNumber": "00080050",
    "StudyDescription": "00081030", "ModalitiesInStudy": "00080061", "NumberOfStudyRelatedSeries": "00201206",
    "NumberOfStudyRelatedInstances": "00201208", "Modality": "00080060", "SeriesNumber": "00200011",
    "SeriesDescription": "0008103E", "NumberOfSeriesRelatedInstances": "00201209", "BodyPartExamined": "00180015",
    "IssuerOfPatientID": "00100021", "ImagePositionPatient": "00200032", "ImageOrientationPatient": "00200037",
    "InstanceNumber": "00200013", "NumberOfFrames": "00280008",
}


def values(item: dict, keyword: str) -> list:
    return list(item.get(_TAGS[keyword], {}).get("Value", []) or [])


def text(item: dict, keyword: str) -> str:
    vals = values(item, keyword)
    if not vals:
        return ""
    v = vals[0]
    if isinstance(v, dict):  # PN: {"Alphabetic": "..."}
        return str(v.get("Alphabetic", "")).strip()
    return str(v).strip()


def integer(item: dict, keyword: str) -> int | None:
    try:
        return int(text(item, keyword))
    except ValueError:
        return None


def study_ref(item: dict, source: str) -> StudyRef:
    return StudyRef(
        study_instance_uid=text(item, "StudyInstanceUID"),
        patient_name=text(item, "PatientName"),
        patient_id=text(item, "PatientID"),
        patient_birth_date=text(item, "PatientBirthDate"),
        patient_sex=text(item, "PatientSex"),
        study_date=text(item, "StudyDate"),
        study_time=text(item, "StudyTime"),
        accession_number=text(item, "AccessionNumber"),
        study_description=text(item, "StudyDescription"),
        modalities=tuple(str(m) for m in values(item, "ModalitiesInStudy")),
        number_of_series=integer(item, "NumberOfStudyRelatedSeries") or 0,
        number_of_instances=integer(item, "NumberOfStudyRelatedInstances") or 0,
        source=source,
    )


def series_ref(item: dict, study_uid: str, source: str) -> SeriesRef:
    return SeriesRef(
        series_instance_uid=text(item, "SeriesInstanceUID"),
        study_instance_uid=text(item, "StudyInstanceUID") or study_uid,
        modality=text(item, "Modality"),
        series_number=integer(item, "SeriesNumber"),
        series_description=text(item, "SeriesDescription"),
        number_of_instances=integer(item, "NumberOfSeriesRelatedInstances") or 0,
        body_part=text(item, "BodyPartExamined"),
        source=source,
    )


def study_filters(query: StudyQuery) -> dict[str, str]:
    """QIDO-RS matching keys for a study query (wildcards * and ? pass through)."""
    filters = {
        "PatientName": query.patient_name.strip(),
        "PatientID": query.patient_id.strip(),
        "AccessionNumber": query.accession_number.strip(),
        "StudyDescription": query.study_description.strip(),
        "ModalitiesInStudy": query.modality.strip().upper(),
    }
    if query.date_from or query.date_to:
        lo = query.date_from.strftime("%Y%m%d") if query.date_from else ""
        hi = query.date_to.strftime("%Y%m%d") if query.date_to else ""
        filters["StudyDate"] = f"{lo}-{hi}"
    return {k: v for k, v in filters.items() if v}


def instance_spot(item: dict) -> InstanceSpot:
    pos, ori = values(item, "ImagePositionPatient"), values(item, "ImageOrientationPatient")
    return InstanceSpot(
        sop_uid=text(item, "SOPInstanceUID"),
        position=tuple(float(v) for v in pos[:3]) if len(pos) >= 3 else None,
        orientation=tuple(float(v) for v in ori[:6]) if len(ori) >= 6 else None,
        instance_number=integer(item, "InstanceNumber"),
    )
