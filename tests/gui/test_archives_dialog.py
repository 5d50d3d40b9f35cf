"""The archives dialog edits every kind of archive without losing settings: an OAuth2 DICOMweb archive (in front
of the real Orthanc, through an authenticating gateway) and a DIMSE archive over TLS (dcmtk's storescp with a
client certificate), both written by ``workstation archives add``, opened and saved in the dialog."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.conftest import run_cli
from tests.integration import dcmtk
from tests.integration.orthanc import free_port
from tests.integration.test_dicomweb_oauth import CLIENT_ID, CLIENT_SECRET, Gateway, TokenServer
from tests.integration.test_dimse_tls import Pki, _storescp_tls


@pytest.fixture
def sites(orthanc, home, tmp_path, capsys, monkeypatch):
    """Two archives added on the command line: "Web" (OAuth2, scope given) and "Secure" (DIMSE TLS)."""
    tokens = TokenServer()
    gateway = Gateway(tokens, orthanc.server)
    (tmp_path / "pki").mkdir()
    pki = Pki(tmp_path / "pki")
    cert, key = pki.issue("storescp", "IP:127.0.0.1")
    client_cert, client_key = pki.issue("ws", "DNS:workstation.example.org")
    port = free_port()
    proc = _storescp_tls(tmp_path / "received", port, cert, key, pki.ca)
    monkeypatch.setenv("WS_CLIENT_SECRET", CLIENT_SECRET)
    try:
        for argv in (("Web", "--dicomweb", f"{gateway.url}/dicom-web", "--oauth-token-url", f"{tokens.url}/token",
                      "--client-id", CLIENT_ID, "--client-secret-env", "WS_CLIENT_SECRET", "--scope", "dicom.read",
                      "--timeout", "20"),
                     ("Secure", "--dimse", f"{dcmtk.STORE_AE}@127.0.0.1:{port}", "--tls", "--ca", str(pki.ca),
                      "--tls-cert", str(client_cert), "--tls-key", str(client_key))):
            code, _out, err = run_cli(capsys, "archives", "add", *argv)
            assert code == 0, err
        yield tokens, gateway
    finally:
        dcmtk.stop(proc)
        gateway.close()
        tokens.close()


def _dialog(qtbot, home):
    from workstation.config import load_settings
    from workstation.ui.archives_dialog import ArchivesDialog, remote_factories, secret_store
    from workstation.ui.tasks import TaskRunner

    settings = load_settings({"WORKSTATION_HOME": str(home)})
    secrets = secret_store(settings)
    dialog = ArchivesDialog(home, settings.archives, secrets,
                            lambda ep: remote_factories(settings, [ep])[ep.name](), TaskRunner(synchronous=True))
    qtbot.addWidget(dialog)
    outcomes: list[str] = []
    dialog.tested.connect(outcomes.append)
    return dialog, secrets, outcomes


def _files(home) -> tuple[str, str]:
    return (home / "workstation.toml").read_text(), (home / "secrets.json").read_text()


def test_oauth2_and_tls_archives_open_test_and_save_unchanged(qtbot, sites, home):
    tokens, gateway = sites
    before = _files(home)
    dialog, _secrets, outcomes = _dialog(qtbot, home)
    form = dialog.form
    assert [dialog.list.item(i).text() for i in range(dialog.list.count())] == ["Web", "Secure"]

    dialog.list.setCurrentRow(0)
    assert form.auth.currentText() == "oauth2" and form.scope.text() == "dicom.read"
    shown = {w: w.isVisibleTo(dialog) for w in (form.token_url, form.client_id, form.user, form.tls_cert)}
    assert shown == {form.token_url: True, form.client_id: True, form.user: False, form.tls_cert: False}
    assert form.secret_label.text() == "Client secret" and form.secret.text() == ""
    dialog.test_current()  # saves, then a QIDO-RS query through the gateway with a token from the token server
    assert outcomes[-1].startswith("Web: OK (QIDO-RS"), outcomes
    assert gateway.refused == 0 and len(tokens.issued) == 1

    dialog.list.setCurrentRow(1)
    assert form.kind.currentText() == "dimse" and form.tls.isChecked() and form.tls_cert.isVisibleTo(dialog)
    assert not form.url.isVisibleTo(dialog) and not form.token_url.isVisibleTo(dialog)
    dialog.test_current()  # C-ECHO over TLS, with the client certificate storescp requires
    assert outcomes[-1].startswith("Secure: OK (C-ECHO"), outcomes
    assert _files(home) == before  # both saved, nothing lost or reordered, secrets untouched


def test_edits_in_the_dialog_land_in_the_settings_and_secrets(qtbot, sites, home):
    from workstation.config import load_settings

    web_before, secure_before = load_settings({"WORKSTATION_HOME": str(home)}).archives
    dialog, secrets, outcomes = _dialog(qtbot, home)
    form = dialog.form
    dialog.list.setCurrentRow(0)
    form.scope.setText("dicom.read dicom.write")
    form.secret.setText("a-new-client-secret")
    assert dialog.save_current()
    dialog.list.setCurrentRow(1)
    form.tls.setChecked(False)
    assert not form.tls_cert.isVisibleTo(dialog) and not form.ca_bundle.isVisibleTo(dialog)
    dialog.test_current()  # plain DIMSE to a TLS-only port: saved, but the test says it failed
    assert outcomes[-1].startswith("Secure: ") and "OK" not in outcomes[-1]

    web, secure = load_settings({"WORKSTATION_HOME": str(home)}).archives
    assert web == replace(web_before, scope="dicom.read dicom.write")  # token URL, client id, timeout kept
    assert secrets.get("archive/Web/client_secret") == "a-new-client-secret"
    assert (secure.tls, secure.ca_bundle, secure.tls_cert, secure.tls_key) == (False, "", "", "")
    assert (secure.host, secure.port, secure.called_ae) == (secure_before.host, secure_before.port,
                                                           secure_before.called_ae)
    assert "a-new-client-secret" not in (home / "workstation.toml").read_text()


def test_bad_oauth2_and_tls_input_is_named_and_nothing_is_saved(qtbot, sites, home, tmp_path):
    before = _files(home)
    dialog, _secrets, _outcomes = _dialog(qtbot, home)
    form = dialog.form
    dialog.list.setCurrentRow(0)
    for widget, text, message in ((form.client_id, "", "OAuth2 needs a client id"),
                                  (form.token_url, "idp/token", "OAuth2 needs the token URL")):
        dialog.list.setCurrentRow(0)
        widget.setText(text)
        assert not dialog.save_current() and dialog.message.text().startswith(message)
    dialog.list.setCurrentRow(1)
    missing = tmp_path / "nowhere.pem"
    form.tls_cert.setText(str(missing))
    assert not dialog.save_current() and dialog.message.text() == f"client certificate {missing}: no such file"
    dialog.new()
    form.name.setText("Fresh")
    form.url.setText("https://pacs.example.org/dicom-web")
    form.auth.setCurrentText("oauth2")
    form.token_url.setText("https://idp.example.org/token")
    form.client_id.setText("ws")
    assert not dialog.save_current() and dialog.message.text().startswith("client secret needed")
    assert _files(home) == before
