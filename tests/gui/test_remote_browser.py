"""The study browser over a remote archive: the real Orthanc (DICOMweb and DIMSE), chosen in the Archive combo."""

from __future__ import annotations

import pytest

from tests.conftest import WORKSTATION_AE
from tests.gui.conftest import open_first_series
from workstation.config import ArchiveEndpoint, save_archives

LIDC_PATIENT_ID = "LIDC-IDRI-0001"


@pytest.fixture
def remote_window(qtbot, settings, orthanc, monkeypatch, main_window_factory):
    """A main window whose settings name Orthanc twice: over DICOMweb (basic auth) and over DIMSE C-GET."""
    from workstation.archive.credentials import SecretStore
    from workstation.archive.factory import password_key

    monkeypatch.setenv("WORKSTATION_NO_KEYRING", "1")
    server = orthanc.server
    save_archives(settings.home, [
        ArchiveEndpoint("Orthanc web", "dicomweb", url=server.dicomweb_url, auth="basic", user=server.auth[0],
                        timeout=20),
        ArchiveEndpoint("Orthanc DIMSE", "dimse", host="127.0.0.1", port=server.dicom_port, called_ae="ORTHANC",
                        calling_ae=WORKSTATION_AE, timeout=20),
    ])
    SecretStore(settings.home, use_keyring=False).set(password_key("Orthanc web"), server.auth[1])
    return main_window_factory()


@pytest.mark.parametrize("name", ["Orthanc web", "Orthanc DIMSE"])
def test_browse_and_open_a_remote_series(remote_window, name):
    window = remote_window
    browser = window.browser
    combo = browser.archive_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["Local", "Orthanc web", "Orthanc DIMSE"]
    combo.setCurrentText(name)
    assert browser.is_remote() and not browser.delete_button.isEnabled()
    assert {s.source for s in browser.studies} == {name} and len(browser.studies) >= 3
    row = next(i for i, s in enumerate(browser.studies) if s.patient_id == LIDC_PATIENT_ID)
    browser.table.selectRow(row)
    assert browser.series_list.count() == 1
    vp = open_first_series(window)
    assert vp.volume.shape[0] == 133
    combo.setCurrentText("Local")
    assert {s.source for s in browser.studies} == {"Local"}


def test_archives_dialog_adds_tests_and_removes(qtbot, settings, orthanc, monkeypatch):
    from workstation.archive.credentials import SecretStore
    from workstation.config import load_settings
    from workstation.ui.archives_dialog import ArchivesDialog, remote_factories
    from workstation.ui.tasks import TaskRunner

    monkeypatch.setenv("WORKSTATION_NO_KEYRING", "1")
    server = orthanc.server
    secrets = SecretStore(settings.home, use_keyring=False)
    runner = TaskRunner(synchronous=True)
    dialog = ArchivesDialog(settings.home, (), secrets, lambda ep: remote_factories(settings, [ep])[ep.name](),
                            runner)
    qtbot.addWidget(dialog)
    outcomes: list[str] = []
    dialog.tested.connect(outcomes.append)
    form = dialog.form
    dialog.new()
    form.name.setText("PACS")
    form.kind.setCurrentText("dicomweb")
    form.url.setText(server.dicomweb_url)
    form.auth.setCurrentText("basic")
    form.user.setText(server.auth[0])
    form.secret.setText(server.auth[1])
    dialog.test_current()
    assert outcomes and "OK (QIDO-RS" in outcomes[-1]
    saved = load_settings({"WORKSTATION_HOME": str(settings.home)})
    assert [a.name for a in saved.archives] == ["PACS"] and saved.archives[0].user == server.auth[0]
    assert server.auth[1] not in (settings.home / "workstation.toml").read_text()
    dialog.new()
    form.name.setText("Echo")
    form.kind.setCurrentText("dimse")
    form.host.setText("127.0.0.1")
    form.port.setValue(server.dicom_port)
    form.called_ae.setText("ORTHANC")
    dialog.test_current()
    assert "Echo: OK (C-ECHO" in outcomes[-1]
    form.called_ae.setText("NOBODY")
    dialog.test_current()
    assert "Echo: OK" not in outcomes[-1]
    dialog.list.setCurrentRow(0)
    dialog.remove_current()
    assert [a.name for a in load_settings({"WORKSTATION_HOME": str(settings.home)}).archives] == ["Echo"]
    assert secrets.get("archive/PACS/password") is None
