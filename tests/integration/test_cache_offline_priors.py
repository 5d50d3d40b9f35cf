"""Against the real Orthanc: a cached series opens with the archive gone; priors of a patient, newest first."""

from __future__ import annotations

import uuid

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.integration.conftest import WORKSTATION_AE
from tests.integration.orthanc import dicom_files, free_port
from tests.shared_data import shared_case
from workstation.archive.client import ArchiveUnavailable, StudyQuery
from workstation.archive.credentials import BasicAuth
from workstation.archive.dicomweb import DicomWebArchive
from workstation.archive.dimse import DimseArchive
from workstation.archive.priors import find_priors

MR_PATIENT = "crlab"


def _dicomweb(url: str, cache, auth) -> DicomWebArchive:
    return DicomWebArchive("Orthanc", url, auth=auth, cache_dir=cache, timeout=5, retries=0)


def _mr_series(client):
    (study,) = client.find_studies(StudyQuery(patient_id=MR_PATIENT))
    return study, client.find_series(study.study_instance_uid)[0]


def test_dicomweb_cached_series_opens_with_the_archive_down(orthanc, tmp_path):
    auth = BasicAuth(*orthanc.server.auth)
    _study, series = _mr_series(_dicomweb(orthanc.dicomweb_url, tmp_path, auth))
    first = _dicomweb(orthanc.dicomweb_url, tmp_path, auth).fetch_series(series.series_instance_uid)
    down = _dicomweb(f"http://127.0.0.1:{free_port()}/dicom-web", tmp_path, auth)
    with pytest.raises(ArchiveUnavailable):
        down.find_studies(StudyQuery())
    seen = []
    mtimes = [p.stat().st_mtime_ns for p in first]
    again = down.fetch_series(series.series_instance_uid, progress=seen.append)
    assert "from the cache" in seen[-1].text  # served by the cache, nothing retrieved or rewritten
    assert [p.stat().st_mtime_ns for p in again] == mtimes
    assert again == first and seen[-1].done == seen[-1].total == len(first)


def test_dimse_cached_series_opens_with_the_archive_down(orthanc, tmp_path):
    live = DimseArchive("Orthanc", "127.0.0.1", orthanc.server.dicom_port, "ORTHANC", WORKSTATION_AE,
                        cache_dir=tmp_path, timeout=5)
    _study, series = _mr_series(live)
    first = live.fetch_series(series.series_instance_uid)
    down = DimseArchive("Orthanc", "127.0.0.1", free_port(), "ORTHANC", WORKSTATION_AE, cache_dir=tmp_path,
                        timeout=2)
    assert down.fetch_series(series.series_instance_uid) == first


def _upload_study(orthanc, tmp_path, patient_id: str, study_date: str, issuer: str = "") -> str:
    """A copy of one MR slice as a new study of ``patient_id``; returns its Study UID."""
    ds = dcmread(dicom_files(shared_case("mr-slice-codecs") / "dicom")[0])
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID, ds.StudyDate = patient_id, study_date
    if issuer:
        ds.IssuerOfPatientID = issuer
    path = tmp_path / f"{ds.StudyInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    orthanc.server.upload([path])
    return str(ds.StudyInstanceUID)


def test_priors_on_dicomweb_dimse_and_local(orthanc, tmp_path):
    from workstation.archive.local import LocalArchive

    patient = f"PRIORS-{uuid.uuid4().hex[:8]}"
    current = _upload_study(orthanc, tmp_path, patient, "20200101")
    older = _upload_study(orthanc, tmp_path, patient, "19990101")
    newer = _upload_study(orthanc, tmp_path, patient, "20240101")
    _upload_study(orthanc, tmp_path, patient + "0", "20220101")  # a prefix match is not the patient
    web = _dicomweb(orthanc.dicomweb_url, tmp_path / "c1", BasicAuth(*orthanc.server.auth))
    dimse = DimseArchive("Orthanc", "127.0.0.1", orthanc.server.dicom_port, "ORTHANC", WORKSTATION_AE,
                         cache_dir=tmp_path / "c2", timeout=5)
    local = LocalArchive(tmp_path / "local")
    local.import_paths(sorted(tmp_path.glob("*.dcm")))
    try:
        for client in (web, dimse, local):
            study = next(s for s in client.find_studies(StudyQuery(patient_id=patient))
                         if s.study_instance_uid == current)
            assert [s.study_instance_uid for s in find_priors(client, study)] == [newer, older], client.name
    finally:
        local.close()


def test_priors_keep_apart_patients_of_another_issuer(orthanc, tmp_path):
    patient = f"ISSUER-{uuid.uuid4().hex[:8]}"
    current = _upload_study(orthanc, tmp_path, patient, "20200101", issuer="HOSPITAL-A")
    same = _upload_study(orthanc, tmp_path, patient, "20190101", issuer="HOSPITAL-A")
    _upload_study(orthanc, tmp_path, patient, "20210101", issuer="HOSPITAL-B")
    web = _dicomweb(orthanc.dicomweb_url, tmp_path / "c1", BasicAuth(*orthanc.server.auth))
    study = next(s for s in web.find_studies(StudyQuery(patient_id=patient)) if s.study_instance_uid == current)
    assert [s.study_instance_uid for s in find_priors(web, study)] == [same]


def test_cli_priors(orthanc, tmp_path, monkeypatch, capsys):
    from workstation.cli import main

    patient = f"CLI-{uuid.uuid4().hex[:8]}"
    current = _upload_study(orthanc, tmp_path, patient, "20200101")
    older = _upload_study(orthanc, tmp_path, patient, "20100101")
    monkeypatch.setenv("WORKSTATION_NO_KEYRING", "1")
    monkeypatch.setenv("ORTHANC_PW", orthanc.server.auth[1])
    home = ["--home", str(tmp_path / "home")]
    assert main([*home, "archives", "add", "Web", "--dicomweb", orthanc.dicomweb_url, "--user",
                 orthanc.server.auth[0], "--password-env", "ORTHANC_PW"]) == 0
    capsys.readouterr()
    assert main([*home, "priors", "--archive", "Web", current]) == 0
    out = capsys.readouterr().out
    assert "1 prior studies" in out and older in out
