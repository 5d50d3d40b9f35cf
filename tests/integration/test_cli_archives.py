"""The command line against a real Orthanc: add archives, test them, list studies, fetch and store."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli as run
from tests.integration.conftest import WORKSTATION_AE
from tests.integration.orthanc import dicom_files
from tests.integration.test_archive_contract import fresh_copy
from tests.shared_data import shared_case




def test_cli_over_dicomweb_and_dimse(orthanc, home, capsys, monkeypatch, tmp_path):
    server = orthanc.server
    monkeypatch.setenv("ORTHANC_PW", server.auth[1])
    assert run(capsys, "archives", "add", "Web", "--dicomweb", server.dicomweb_url, "--user", server.auth[0],
               "--password-env", "ORTHANC_PW")[0] == 0
    assert run(capsys, "archives", "add", "Dimse", "--dimse", f"ORTHANC@127.0.0.1:{server.dicom_port}",
               "--calling-ae", WORKSTATION_AE)[0] == 0
    assert server.auth[1] not in (home / "workstation.toml").read_text()
    code, out, err = run(capsys, "archives", "test", "Web")
    assert code == 0 and "Web: OK (QIDO-RS query" in out, err
    code, out, err = run(capsys, "archives", "test", "Dimse")
    assert code == 0 and "Dimse: OK (C-ECHO" in out, err

    code, out, err = run(capsys, "studies", "--archive", "Web", "--patient-id", "LIDC-IDRI-0001", "--json")
    assert code == 0, err
    (study,) = json.loads(out)
    code, out, err = run(capsys, "series", "--archive", "Dimse", study["study_instance_uid"], "--json")
    (series,) = json.loads(out)
    code, out, err = run(capsys, "fetch", "--archive", "Web", series["series_instance_uid"])
    assert code == 0 and f"series {series['series_instance_uid']}: 133 instances in " in out, err
    code, out, err = run(capsys, "fetch", "--archive", "Dimse", study["study_instance_uid"])  # a study UID
    assert code == 0 and ": 133 instances in " in out, err

    src = dicom_files(shared_case("ct-chest-lidc-0001") / "dicom")[10]
    fresh_copy(src, tmp_path / "new.dcm", "WS-CLI-STORE")
    code, out, err = run(capsys, "store", "--archive", "Web", str(tmp_path / "new.dcm"))
    assert code == 0 and "stored 1 instances in Web (1 series of 1 studies)" in out, err
    code, out, _ = run(capsys, "studies", "--archive", "Dimse", "--patient-id", "WS-CLI-*", "--json")
    assert [s["patient_id"] for s in json.loads(out)] == ["WS-CLI-STORE"]


def test_cli_wrong_password_is_one_line(orthanc, home, capsys, monkeypatch):
    monkeypatch.setenv("BAD_PW", "not-the-password")
    run(capsys, "archives", "add", "Web", "--dicomweb", orthanc.dicomweb_url, "--user", "radiologist",
        "--password-env", "BAD_PW")
    code, out, err = run(capsys, "studies", "--archive", "Web")
    assert code == 1 and err.strip() == "workstation: error: wrong user name or password for Web"
