"""Session fixtures for the integration tests: one real Orthanc loaded with the shared data."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.integration import dcmtk as dcmtk_mod
from tests.integration import orthanc as orthanc_mod
from tests.shared_data import shared_case

# the Orthanc fixture is in tests/conftest.py, shared with the GUI tests (one Orthanc per session)
from tests.conftest import DCMTK_AE, ORTHANC_CASES, WORKSTATION_AE, OrthancFixture, _unavailable  # noqa: E402,F401


@dataclass(frozen=True)
class QrFixture:
    server: dcmtk_mod.Dcmqrscp
    move_port: int  # where dcmqrscp sends C-MOVE results for WORKSTATION_AE


@pytest.fixture(scope="session")
def dcmqrscp(tmp_path_factory) -> QrFixture:
    """dcmqrscp holding the LIDC series and the MR codec slices, knowing WORKSTATION as a move destination."""
    import shutil

    if shutil.which("dcmqrscp") is None or shutil.which("dcmqridx") is None:
        _unavailable("dcmqrscp/dcmqridx are not installed (Debian package dcmtk)")
    files = [f for name in ("ct-chest-lidc-0001", "mr-slice-codecs")
             for f in orthanc_mod.dicom_files(shared_case(name) / "dicom")]
    move_port = orthanc_mod.free_port()
    server = dcmtk_mod.Dcmqrscp(tmp_path_factory.mktemp("dcmqrscp"), orthanc_mod.free_port(),
                                {WORKSTATION_AE: move_port})
    server.load(files)
    server.start()
    try:
        yield QrFixture(server=server, move_port=move_port)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def lidc_reference():
    """The LIDC volume loaded straight from ../shared/data: what every archive must give back."""
    from workstation.dicom.series import load_series

    (volume,) = load_series(orthanc_mod.dicom_files(shared_case("ct-chest-lidc-0001") / "dicom"))
    return volume
