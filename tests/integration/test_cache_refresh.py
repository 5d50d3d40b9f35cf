"""A series complete in the cache is checked against the archive when it is opened while online: instances
added to it since (a new SEG revision in an existing series, a late slice) are retrieved; offline, or when
the archive cannot say, the cached series is served as it is."""

from __future__ import annotations

import uuid

from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.integration.conftest import WORKSTATION_AE
from tests.integration.orthanc import dicom_files, free_port
from tests.integration.test_cache_offline_priors import _dicomweb
from tests.shared_data import shared_case
from workstation.archive._dimse_retrieve import instance_count as dimse_instance_count
from workstation.archive.credentials import BasicAuth
from workstation.archive.dimse import DimseArchive


def _new_series(tmp_path, n: int) -> tuple[str, str, list]:
    """``n`` LIDC slices as a new series of a new patient (fresh UIDs); (study, series, files)."""
    study, series, patient = generate_uid(), generate_uid(), f"WS-REFRESH-{uuid.uuid4().hex[:8]}"
    files = []
    for i, src in enumerate(dicom_files(shared_case("ct-chest-lidc-0001") / "dicom")[60:60 + n]):
        ds = dcmread(src)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = patient
        path = tmp_path / f"{i:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return str(study), str(series), files


def _sops(paths) -> set[str]:
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths}


def test_instances_added_to_a_complete_series_are_retrieved(orthanc, tmp_path):
    study, series, files = _new_series(tmp_path, 4)
    orthanc.server.upload(files[:3])
    auth = BasicAuth(*orthanc.server.auth)
    cache = tmp_path / "cache"
    web = _dicomweb(orthanc.dicomweb_url, cache, auth)
    first = web.fetch_series(series, study_instance_uid=study)
    assert len(first) == 3 and web.cache_index.complete_files(series) is not None
    assert web.fetch_series(series) == first  # nothing new in the archive: the cache as it was

    orthanc.server.upload(files[3:])  # a fourth instance lands in the archive's copy of the series
    assert web.instance_count(study, series) == 4
    seen = []
    again = web.fetch_series(series, progress=seen.append)
    assert len(again) == 4 and _sops(again) == _sops(files)
    assert set(first) < set(again)  # the three cached files kept, one retrieved
    assert web.cache_index.complete_files(series)[1] == again

    down = _dicomweb(f"http://127.0.0.1:{free_port()}/dicom-web", cache, auth)
    assert down.instance_count(study, series) is None
    assert down.fetch_series(series) == again  # offline: the cache serves the series


def test_dimse_counts_the_instances_of_a_series(orthanc, tmp_path):
    study, series, files = _new_series(tmp_path, 2)
    orthanc.server.upload(files)
    live = DimseArchive("Orthanc", "127.0.0.1", orthanc.server.dicom_port, "ORTHANC", WORKSTATION_AE, timeout=10)
    assert dimse_instance_count(live, study, series) == 2
    assert dimse_instance_count(live, study, generate_uid()) is None  # no such series: cannot tell
    down = DimseArchive("Orthanc", "127.0.0.1", free_port(), "ORTHANC", WORKSTATION_AE, timeout=10)
    assert dimse_instance_count(down, study, series) is None
