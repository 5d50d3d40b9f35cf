"""Fixtures shared by every suite: one real Orthanc per test session (integration and GUI tests), and a
temporary workstation home for command-line tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.integration import orthanc as orthanc_mod
from tests.shared_data import shared_case

#: AE title of the workstation as the archives know it, and the dcmtk peers'.
WORKSTATION_AE = "WORKSTATION"
DCMTK_AE = "DCMTK"

#: What is loaded into Orthanc: small enough to stay fast, varied enough to matter.
ORTHANC_CASES = ("ct-chest-lidc-0001", "ct-head-ge-tilt", "mr-slice-codecs")


@dataclass(frozen=True)
class OrthancFixture:
    server: orthanc_mod.OrthancServer
    move_port: int  # where Orthanc sends C-MOVE results for WORKSTATION_AE

    @property
    def dicomweb_url(self) -> str:
        return self.server.dicomweb_url


def _unavailable(reason: str) -> None:
    if orthanc_mod.env_requires_shared_data():
        pytest.fail(reason + " (WORKSTATION_REQUIRE_SHARED_DATA=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory) -> OrthancFixture:
    """A running Orthanc with DICOMweb, GDCM, basic auth and the shared cases uploaded."""
    reason = orthanc_mod.orthanc_available()
    if reason:
        _unavailable(reason)
    folders = [shared_case(name) / "dicom" for name in ORTHANC_CASES]
    move_port = orthanc_mod.free_port()
    server = orthanc_mod.OrthancServer(
        workdir=tmp_path_factory.mktemp("orthanc"),
        modalities={WORKSTATION_AE: move_port, DCMTK_AE: orthanc_mod.free_port()},
    )
    server.start()
    try:
        for folder in folders:
            server.upload(orthanc_mod.dicom_files(folder))
        yield OrthancFixture(server=server, move_port=move_port)
    finally:
        server.stop()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh ``WORKSTATION_HOME`` (secrets in a file, never the developer's keyring)."""
    h = tmp_path / "home"
    monkeypatch.setenv("WORKSTATION_HOME", str(h))
    monkeypatch.setenv("WORKSTATION_NO_KEYRING", "1")
    return h


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """Run ``workstation ARGV...`` in-process; returns (exit code, stdout, stderr)."""
    from workstation.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err
