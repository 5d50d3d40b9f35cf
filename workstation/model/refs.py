"""References to studies, series and instances: UIDs plus what a browser shows."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StudyRef:
    study_instance_uid: str
    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""  # YYYYMMDD
    study_time: str = ""
    accession_number: str = ""
    study_description: str = ""
    modalities: tuple[str, ...] = ()
    number_of_series: int = 0
    number_of_instances: int = 0
    source: str = ""  # the archive's name


@dataclass(frozen=True)
class SeriesRef:
    series_instance_uid: str
    study_instance_uid: str
    modality: str = ""
    series_number: int | None = None
    series_description: str = ""
    number_of_instances: int = 0
    body_part: str = ""
    source: str = ""


@dataclass(frozen=True)
class InstanceRef:
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    sop_class_uid: str = ""
    instance_number: int | None = None
