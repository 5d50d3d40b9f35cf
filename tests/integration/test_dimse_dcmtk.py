"""dcmtk's storescp as an independent peer receiving our C-STORE (dcmqrscp runs in the contract suite)."""

from __future__ import annotations

import shutil

import pytest
from pydicom import dcmread

from tests.integration import dcmtk
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
