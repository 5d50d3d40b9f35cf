"""The DIMSE client against real peers: dcmtk's storescp receives our C-STORE; Orthanc and dcmqrscp answer
patient-level C-FIND (Patient Root) and send the middle slice of a series first."""

from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.integration import dcmtk
from tests.integration.conftest import WORKSTATION_AE
from tests.integration.orthanc import dicom_files, free_port
from tests.shared_data import shared_case
from workstation.archive.dimse import DimseArchive


def test_storescp_receives_our_c_store(tmp_path):
    if shutil.which("storescp") is None:
        pytest.skip("storescp is not installed (Debian package dcmtk)")
    sources = [dicom_files(shared_case("ct-chest-lidc-0001") / "dicom")[0],
               *dicom_files(shared_case("mr-slice-codecs") / "dicom")]
    port = free_port()
    proc = dcmtk.start_storescp(tmp_path / "received", port)
    try:
        archive = DimseArchive("storescp", "127.0.0.1", port, dcmtk.STORE_AE, timeout=10)
        archive.echo()
        report = archive.store(sources)
    finally:
        dcmtk.stop(proc)
    sent = {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in sources}
    assert set(report.imported) == sent and not report.skipped
    received = {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in (tmp_path / "received").iterdir()}
    assert received == sent


def _peer(kind: str, mode: str, request, cache: Path | None = None) -> DimseArchive:
    if kind == "orthanc":
        fx = request.getfixturevalue("orthanc")
        port, called = fx.server.dicom_port, "ORTHANC"
    else:
        fx = request.getfixturevalue("dcmqrscp")
        port, called = fx.server.port, dcmtk.QR_AE
    return DimseArchive(kind, "127.0.0.1", port, called, WORKSTATION_AE, retrieve=mode,
                        move_destination_port=fx.move_port, move_listen_host="127.0.0.1", cache_dir=cache, timeout=20)


@pytest.mark.parametrize("kind", ["orthanc", "dcmqrscp"])
def test_find_patients(kind, request):
    archive = _peer(kind, "get", request)
    (lidc,) = archive.find_patients(patient_id="LIDC-IDRI-0001")
    assert (lidc.patient_id, lidc.source) == ("LIDC-IDRI-0001", kind)
    assert lidc.patient_name == str(dcmread(dicom_files(shared_case("ct-chest-lidc-0001") / "dicom")[0]).PatientName)
    if kind == "orthanc":
        assert lidc.number_of_studies == 1  # dcmqrscp does not count
    by_name = archive.find_patients(patient_name="stc_te?t*")
    assert "crlab" in [p.patient_id for p in by_name]  # the MR codec slices (other tests store copies of them)
    assert by_name and all(fnmatch.fnmatch(p.patient_name.lower(), "stc_te?t*") for p in by_name)
    everyone = archive.find_patients()
    assert {"LIDC-IDRI-0001", "crlab"} <= {p.patient_id for p in everyone}
    assert everyone == sorted(everyone, key=lambda p: (p.patient_name, p.patient_id))
    assert archive.find_patients(patient_id="NOBODY-HERE*") == []
    assert len(archive.find_patients(limit=1)) == 1


@pytest.mark.parametrize(("kind", "mode"), [("orthanc", "get"), ("orthanc", "move"), ("dcmqrscp", "get")])
def test_middle_slice_arrives_first(kind, mode, request, tmp_path, lidc_reference):
    archive = _peer(kind, mode, request, tmp_path / "cache")
    uids = lidc_reference.info.source_sop_instance_uids  # in spatial order; 133, so the middle is the same
    middle = uids[len(uids) // 2]                       # whichever way the slices run
    first_files: list[list[str]] = []

    def progress(p) -> None:
        if p.done == 1 and not first_files:
            first_files.append([f.stem for f in (tmp_path / "cache").rglob("*.dcm")])

    paths = archive.fetch_series(lidc_reference.info.series_instance_uid, progress=progress,
                                 study_instance_uid=lidc_reference.info.study_instance_uid)
    assert first_files == [[middle]]
    assert [p.stem for p in paths] in (list(uids), list(reversed(uids)))  # files come back in spatial order
