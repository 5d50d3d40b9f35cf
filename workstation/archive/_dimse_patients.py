"""Patient-level C-FIND (Patient Root query model) for :mod:`workstation.archive.dimse`."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset

#: What the browser shows of a patient, asked for explicitly (a peer returns only what is asked).
PATIENT_FIELDS = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
                  "NumberOfPatientRelatedStudies")


@dataclass(frozen=True)
class PatientMatch:
    """One patient an archive knows; ``number_of_studies`` is 0 when the archive does not count them."""

    patient_id: str
    patient_name: str = ""
    issuer_of_patient_id: str = ""
    patient_birth_date: str = ""  # YYYYMMDD
    patient_sex: str = ""
    number_of_studies: int = 0
    source: str = ""  # the archive's name


def patient_query(patient_name: str, patient_id: str) -> Dataset:
    """The PATIENT-level identifier; empty values are return keys (match everything)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "PATIENT"
    for keyword in PATIENT_FIELDS:
        setattr(ds, keyword, "")
    ds.PatientName = patient_name.strip()
    ds.PatientID = patient_id.strip()
    return ds


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def patient_match(answer: Dataset, source: str) -> PatientMatch:
    try:
        studies = int(_text(answer, "NumberOfPatientRelatedStudies") or 0)
    except ValueError:
        studies = 0
    return PatientMatch(
        patient_id=_text(answer, "PatientID"), patient_name=_text(answer, "PatientName"),
        issuer_of_patient_id=_text(answer, "IssuerOfPatientID"),
        patient_birth_date=_text(answer, "PatientBirthDate"), patient_sex=_text(answer, "PatientSex"),
        number_of_studies=studies, source=source,
    )
