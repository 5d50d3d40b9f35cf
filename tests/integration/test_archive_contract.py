"""One contract, every archive client: find, list, fetch (pixel-identical), store and find again.

Clients: the embedded local archive; Orthanc over DICOMweb, DIMSE C-GET and DIMSE C-MOVE; dcmtk's
dcmqrscp over C-GET and C-MOVE as an independent peer.
"""

from __future__ import annotations

import fnmatch
import uuid
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.integration import dcmtk as dcmtk_mod
from tests.integration.conftest import WORKSTATION_AE
from tests.integration.orthanc import dicom_files
from tests.shared_data import shared_case
from workstation.archive.client import ArchiveClient, Progress, StudyQuery

LIDC_PATIENT_ID = "LIDC-IDRI-0001"
CLIENTS = ("local", "dicomweb", "dimse-get", "dimse-move", "dcmqrscp-get", "dcmqrscp-move")


@pytest.fixture(scope="session")
def local_archive(tmp_path_factory):
    from workstation.archive.local import LocalArchive

    archive = LocalArchive(tmp_path_factory.mktemp("local-archive"))
    archive.import_paths([shared_case("ct-chest-lidc-0001") / "dicom", shared_case("mr-slice-codecs") / "dicom"])
    yield archive
    archive.close()


def make_client(kind: str, request, cache: Path) -> ArchiveClient:
    """A client of the given kind, retrieving into ``cache``."""
    if kind == "local":
        return request.getfixturevalue("local_archive")
    if kind == "dicomweb":
        from workstation.archive.credentials import BasicAuth
        from workstation.archive.dicomweb import DicomWebArchive

        server = request.getfixturevalue("orthanc").server
        return DicomWebArchive("Orthanc", server.dicomweb_url, auth=BasicAuth(*server.auth), cache_dir=cache,
                               timeout=20)
    from workstation.archive.dimse import DimseArchive

    mode = kind.rsplit("-", 1)[1]
    if kind.startswith("dimse"):
        fx = request.getfixturevalue("orthanc")
        host_port, called = fx.server.dicom_port, "ORTHANC"
    else:
        fx = request.getfixturevalue("dcmqrscp")
        host_port, called = fx.server.port, dcmtk_mod.QR_AE
    return DimseArchive(kind, "127.0.0.1", host_port, called, WORKSTATION_AE, retrieve=mode,
                        move_destination_port=fx.move_port, move_listen_host="127.0.0.1", cache_dir=cache,
                        timeout=20)


@pytest.fixture(params=CLIENTS)
def client(request, tmp_path) -> ArchiveClient:
    return make_client(request.param, request, tmp_path / "cache")


def _lidc_study(client: ArchiveClient):
    (study,) = client.find_studies(StudyQuery(patient_id=LIDC_PATIENT_ID))
    return study


def test_find_by_patient_id(client, lidc_reference):
    study = _lidc_study(client)
    assert study.study_instance_uid == lidc_reference.info.study_instance_uid
    assert study.patient_id == LIDC_PATIENT_ID
    assert study.study_date == "20000101"


def test_find_with_wildcards(client, lidc_reference):
    # other tests in the session store studies of their own (copies, priors, annotations): every match must
    # fit the pattern, and the reference study must be among them
    by_id = client.find_studies(StudyQuery(patient_id="LIDC-IDRI-00*"))
    assert lidc_reference.info.study_instance_uid in [s.study_instance_uid for s in by_id]
    assert all(s.patient_id.startswith("LIDC-IDRI-00") for s in by_id)
    by_name = client.find_studies(StudyQuery(patient_name="stc_te?t*"))
    assert "crlab" in {s.patient_id for s in by_name}  # the MR codec slices
    assert all(fnmatch.fnmatch(s.patient_name.lower(), "stc_te?t*") for s in by_name)
    assert client.find_studies(StudyQuery(patient_id="NOBODY-HERE*")) == []


def test_list_series(client, lidc_reference):
    (series,) = client.find_series(_lidc_study(client).study_instance_uid)
    assert series.series_instance_uid == lidc_reference.info.series_instance_uid
    assert series.modality == "CT"
    assert series.number_of_instances in (0, 133)  # dcmqrscp does not count


def test_fetch_series_is_pixel_identical(client, lidc_reference):
    from workstation.dicom.series import load_series

    study = _lidc_study(client)
    (series,) = client.find_series(study.study_instance_uid)
    seen: list[Progress] = []
    paths = client.fetch_series(series.series_instance_uid, progress=seen.append)
    assert len(paths) == 133 and all(Path(p).is_file() for p in paths)
    assert seen and seen[-1].done == seen[-1].total == 133
    (volume,) = load_series(paths)
    np.testing.assert_array_equal(volume.voxels, lidc_reference.voxels)
    np.testing.assert_allclose(volume.affine, lidc_reference.affine, atol=1e-9)


def fresh_copy(src: Path, dst: Path, patient_id: str) -> tuple[str, str, str]:
    """Copy a DICOM file with new study, series and SOP instance UIDs; returns the three UIDs."""
    ds = dcmread(src)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = patient_id
    ds.save_as(dst, enforce_file_format=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def test_store_then_find_again(client, tmp_path):
    src = dicom_files(shared_case("ct-chest-lidc-0001") / "dicom")[60]
    patient_id = f"WS-STORE-{uuid.uuid4().hex[:8]}"
    study_uid, series_uid, sop_uid = fresh_copy(src, tmp_path / "new.dcm", patient_id)
    report = client.store([tmp_path / "new.dcm"])
    assert report.imported == (sop_uid,) and not report.skipped
    (study,) = client.find_studies(StudyQuery(patient_id=patient_id))
    assert study.study_instance_uid == study_uid
    assert [s.series_instance_uid for s in client.find_series(study_uid)] == [series_uid]


def test_interrupted_fetch_resumes(client, lidc_reference):
    if getattr(client, "cache_dir", None) is None:
        pytest.skip("the local archive retrieves nothing")
    study = _lidc_study(client)
    (series,) = client.find_series(study.study_instance_uid)
    paths = client.fetch_series(series.series_instance_uid)
    for p in paths[::3]:  # as if the retrieval had stopped with a third of the instances missing
        Path(p).unlink()
    missing = len(paths[::3])
    seen: list[Progress] = []
    again = client.fetch_series(series.series_instance_uid, progress=seen.append)
    assert seen[0].done == 133 - missing and seen[-1].done == 133
    assert sorted(map(str, again)) == sorted(map(str, paths)) and all(Path(p).is_file() for p in again)
