"""The archives dialog: add, edit, remove and test the remote archives (DICOMweb or DIMSE).

The form shows the fields of the archive's kind and authentication: DICOMweb with none, basic, bearer or
OAuth2 (token URL, client id, scope) authentication; DIMSE with C-GET or C-MOVE, optionally over TLS (CA
bundle, client certificate and key).  Fields it does not show are kept as they were.  The list is saved with
:func:`workstation.config.save_archives`; passwords, tokens and OAuth2 client secrets go to the
:class:`~workstation.archive.credentials.SecretStore` (OS keyring, else a user-only file), never into the
settings file.  "Test" sends a C-ECHO or one QIDO-RS query on the task runner and shows the answer.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QListWidget, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from workstation.config import ALL_AUTH_KINDS, ARCHIVE_KINDS, RETRIEVE_KINDS, ArchiveEndpoint, save_archives
from workstation.ui.qt_compat import emit
from workstation.ui.tasks import TaskRunner


class EndpointForm(QWidget):
    """The fields of one archive; :meth:`endpoint` validates them into an ArchiveEndpoint.

    Only the rows that apply to the chosen kind and authentication are shown.  The endpoint last shown is kept:
    :meth:`endpoint` starts from it, so a field the form does not edit survives a save unchanged.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._base = ArchiveEndpoint(name="", kind="dicomweb")
        self.name = QLineEdit()
        self.kind = QComboBox()
        self.kind.addItems(ARCHIVE_KINDS)
        self.url = QLineEdit(placeholderText="https://pacs.example.org/dicom-web")
        self.host = QLineEdit()
        self.port = QSpinBox(maximum=65535, value=104)
        self.called_ae = QLineEdit()
        self.calling_ae = QLineEdit("WORKSTATION")
        self.retrieve = QComboBox()
        self.retrieve.addItems(RETRIEVE_KINDS)
        self.move_port = QSpinBox(maximum=65535)
        self.tls = QCheckBox("TLS on the association (C-GET only)")
        self.auth = QComboBox()
        self.auth.addItems(ALL_AUTH_KINDS)
        self.user = QLineEdit()
        self.token_url = QLineEdit(placeholderText="https://idp.example.org/oauth2/token")
        self.client_id = QLineEdit()
        self.scope = QLineEdit(placeholderText="optional")
        self.secret = QLineEdit(placeholderText="unchanged when left empty")
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.ca_bundle = QLineEdit(placeholderText="PEM file; empty: the system's trusted CAs")
        self.tls_cert = QLineEdit(placeholderText="PEM file, if the archive wants a client certificate")
        self.tls_key = QLineEdit(placeholderText="PEM file; empty: in the certificate file")
        self.timeout = QDoubleSpinBox(minimum=0.5, maximum=600, value=30)
        self.layout_ = form = QFormLayout(self)
        self.secret_label = QLabel("Password")
        for label, w in (("Name", self.name), ("Kind", self.kind), ("URL", self.url), ("Host", self.host),
                         ("Port", self.port), ("Called AE", self.called_ae), ("Calling AE", self.calling_ae),
                         ("Retrieve", self.retrieve), ("C-MOVE port", self.move_port), ("TLS", self.tls),
                         ("Auth", self.auth), ("User", self.user), ("Token URL", self.token_url),
                         ("Client id", self.client_id), ("Scope", self.scope), (self.secret_label, self.secret),
                         ("CA bundle", self.ca_bundle), ("Client certificate", self.tls_cert),
                         ("Client key", self.tls_key), ("Timeout (s)", self.timeout)):
            form.addRow(label, w)
        for signal in (self.kind.currentTextChanged, self.auth.currentTextChanged,
                       self.retrieve.currentTextChanged, self.tls.toggled):
            signal.connect(self._update_rows)
        self._update_rows()

    def _update_rows(self, *_args) -> None:
        """Show the rows that apply to the kind, retrieval and authentication chosen."""
        web, auth = self.kind.currentText() == "dicomweb", self.auth.currentText()
        tls = not web and self.tls.isChecked()
        rows = {self.url: web, self.auth: web, self.user: web and auth == "basic",
                self.token_url: web and auth == "oauth2", self.client_id: web and auth == "oauth2",
                self.scope: web and auth == "oauth2", self.secret: web and auth != "none",
                self.host: not web, self.port: not web, self.called_ae: not web, self.retrieve: not web,
                self.move_port: not web and self.retrieve.currentText() == "move", self.tls: not web,
                self.ca_bundle: web or tls, self.tls_cert: tls, self.tls_key: tls}
        for widget, visible in rows.items():
            self.layout_.setRowVisible(widget, visible)
        self.secret_label.setText({"basic": "Password", "bearer": "Access token",
                                   "oauth2": "Client secret"}.get(auth, "Secret"))

    def show_endpoint(self, ep: ArchiveEndpoint) -> None:
        self._base = ep
        self.name.setText(ep.name)
        self.kind.setCurrentText(ep.kind)
        self.url.setText(ep.url)
        self.host.setText(ep.host)
        self.port.setValue(ep.port)
        self.called_ae.setText(ep.called_ae)
        self.calling_ae.setText(ep.calling_ae)
        self.retrieve.setCurrentText(ep.retrieve)
        self.move_port.setValue(ep.move_port)
        self.tls.setChecked(ep.tls)
        self.auth.setCurrentText(ep.auth)
        self.user.setText(ep.user)
        self.token_url.setText(ep.token_url)
        self.client_id.setText(ep.client_id)
        self.scope.setText(ep.scope)
        self.secret.clear()
        self.ca_bundle.setText(ep.ca_bundle)
        self.tls_cert.setText(ep.tls_cert)
        self.tls_key.setText(ep.tls_key)
        self.timeout.setValue(ep.timeout)
        self._update_rows()

    def endpoint(self) -> ArchiveEndpoint:
        """The archive the fields describe; raises ValueError naming what is missing."""
        name, kind = self.name.text().strip(), self.kind.currentText()
        if not name:
            raise ValueError("the archive needs a name")
        if name == "Local":
            raise ValueError("'Local' is the embedded archive's name; choose another")
        base = self._base if self._base.kind == kind else ArchiveEndpoint(name=name, kind=kind)
        ep = replace(base, name=name, calling_ae=self.calling_ae.text().strip() or "WORKSTATION",
                     timeout=float(self.timeout.value()))
        return self._dicomweb(ep) if kind == "dicomweb" else self._dimse(ep)

    def _dicomweb(self, ep: ArchiveEndpoint) -> ArchiveEndpoint:
        url = self.url.text().strip()
        if not url.startswith(("http://", "https://")):
            raise ValueError("a DICOMweb archive needs an http:// or https:// URL")
        auth = self.auth.currentText()
        if auth == "basic" and not self.user.text().strip():
            raise ValueError("basic authentication needs a user name")
        oauth = auth == "oauth2"
        token_url, client_id = self.token_url.text().strip(), self.client_id.text().strip()
        if oauth and not token_url.startswith(("http://", "https://")):
            raise ValueError("OAuth2 needs the token URL (http:// or https://) of the identity provider")
        if oauth and not client_id:
            raise ValueError("OAuth2 needs a client id")
        return replace(ep, url=url, auth=auth, user=self.user.text().strip() if auth == "basic" else "",
                       token_url=token_url if oauth else "", client_id=client_id if oauth else "",
                       scope=self.scope.text().strip() if oauth else "",
                       ca_bundle=_pem_file(self.ca_bundle.text(), "CA bundle"))

    def _dimse(self, ep: ArchiveEndpoint) -> ArchiveEndpoint:
        if not self.host.text().strip() or not self.called_ae.text().strip():
            raise ValueError("a DIMSE archive needs a host and a called AE title")
        retrieve, tls = self.retrieve.currentText(), self.tls.isChecked()
        if retrieve == "move" and not self.move_port.value():
            raise ValueError("C-MOVE needs the port this workstation listens on")
        if tls and retrieve == "move":
            raise ValueError("TLS works with C-GET retrieval only (C-MOVE over TLS is not supported)")
        cert = _pem_file(self.tls_cert.text(), "client certificate") if tls else ""
        key = _pem_file(self.tls_key.text(), "client key") if tls else ""
        if key and not cert:
            raise ValueError("a client key needs its client certificate")
        return replace(ep, host=self.host.text().strip(), port=self.port.value(),
                       called_ae=self.called_ae.text().strip(), retrieve=retrieve, move_port=self.move_port.value(),
                       tls=tls, ca_bundle=_pem_file(self.ca_bundle.text(), "CA bundle") if tls else "",
                       tls_cert=cert, tls_key=key)


def _pem_file(text: str, what: str) -> str:
    """``text`` stripped; when not empty it must name an existing file (ValueError saying which)."""
    path = text.strip()
    if path and not Path(path).expanduser().is_file():
        raise ValueError(f"{what} {path}: no such file")
    return path


class ArchivesDialog(QDialog):
    """Edit the archive list of ``home``; :attr:`saved` carries the new tuple of endpoints."""

    saved = Signal(object)  # tuple[ArchiveEndpoint, ...]
    tested = Signal(str)  # the test's outcome, in words

    def __init__(self, home, archives, secrets, open_client, runner: TaskRunner,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Archives")
        self.home, self.archives = home, list(archives)
        self.secrets, self.open_client, self.runner = secrets, open_client, runner
        self.list = QListWidget()
        self.form = EndpointForm()
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.list.currentRowChanged.connect(self._on_row)
        buttons = QHBoxLayout()
        for text, slot in (("New", self.new), ("Save", self.save_current), ("Remove", self.remove_current),
                           ("Test", self.test_current), ("Close", self.accept)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            buttons.addWidget(b)
            setattr(self, f"{text.lower()}_button", b)
        row = QHBoxLayout()
        row.addWidget(self.list, 1)
        row.addWidget(self.form, 2)
        col = QVBoxLayout(self)
        col.addLayout(row)
        col.addWidget(self.message)
        col.addLayout(buttons)
        self._fill()

    def _fill(self, select: str | None = None) -> None:
        self.list.clear()
        self.list.addItems([ep.name for ep in self.archives])
        names = [ep.name for ep in self.archives]
        if names:
            self.list.setCurrentRow(names.index(select) if select in names else 0)

    def _on_row(self, row: int) -> None:
        if 0 <= row < len(self.archives):
            self.form.show_endpoint(self.archives[row])

    def new(self) -> None:
        self.list.clearSelection()
        self.form.show_endpoint(ArchiveEndpoint(name="", kind="dicomweb"))

    def _say(self, text: str) -> None:
        self.message.setText(text)

    def save_current(self) -> bool:
        """Validate the form, store the secret, rewrite the settings file.  False (and a message) if invalid."""
        try:
            ep = self.form.endpoint()
        except ValueError as exc:
            self._say(str(exc))
            return False
        key, secret = _secret_key(ep), self.form.secret.text()
        if key is not None and not secret and ep.auth != "basic" and self.secrets.get(key) is None:
            self._say(f"{self.form.secret_label.text().lower()} needed: none is stored for {ep.name!r}")
            return False
        if key is not None and secret:
            self.secrets.set(key, secret)
            self.form.secret.clear()
        names = [a.name for a in self.archives]
        if ep.name in names:  # edited in place: the settings file keeps its order
            self.archives[names.index(ep.name)] = ep
        else:
            self.archives.append(ep)
        path = save_archives(self.home, self.archives)
        self._fill(select=ep.name)
        self._say(f"saved {ep.name!r} in {path}")
        emit(self.saved, tuple(self.archives))
        return True

    def remove_current(self) -> None:
        from workstation.archive.factory import client_secret_key, password_key, token_key

        row = self.list.currentRow()
        if not 0 <= row < len(self.archives):
            return
        ep = self.archives.pop(row)
        save_archives(self.home, self.archives)
        for key in (password_key(ep.name), token_key(ep.name), client_secret_key(ep.name)):
            self.secrets.delete(key)
        self._fill()
        self._say(f"removed {ep.name!r}")
        emit(self.saved, tuple(self.archives))

    def test_current(self) -> None:
        """Save, then C-ECHO or QIDO-RS ping in the background; the outcome shows in the dialog."""
        if not self.save_current():
            return
        ep = self.form.endpoint()
        self._say(f"testing {ep.name}...")

        def run(progress, cancel) -> str:
            client = self.open_client(ep)
            start = time.perf_counter()
            client.ping()
            how = "C-ECHO" if ep.kind == "dimse" else "QIDO-RS query"
            return f"{ep.name}: OK ({how} answered in {(time.perf_counter() - start) * 1000:.0f} ms)"

        def report(text: str) -> None:
            self._say(text)
            emit(self.tested, text)

        self.runner.submit(f"test {ep.name}", run, on_done=report, on_failed=lambda m: report(f"{ep.name}: {m}"))


def _secret_key(ep: ArchiveEndpoint) -> str | None:
    """Where the secret of a DICOMweb endpoint's authentication is stored; None when it has none."""
    from workstation.archive.factory import client_secret_key, password_key, token_key

    if ep.kind != "dicomweb" or ep.auth == "none":
        return None
    return {"basic": password_key, "bearer": token_key, "oauth2": client_secret_key}[ep.auth](ep.name)


def remote_factories(settings, archives=None) -> dict:
    """Archive name -> a function building its client (DICOMweb or DIMSE, retrieving into the cache)."""
    from workstation.archive.factory import open_archive

    secrets = secret_store(settings)

    def factory(ep: ArchiveEndpoint):
        return lambda: open_archive(ep, settings.instance_cache_dir, secrets, cache_max_mb=settings.cache_max_mb)

    return {ep.name: factory(ep) for ep in (settings.archives if archives is None else archives)}


def secret_store(settings):
    import os

    from workstation.archive.credentials import SecretStore

    return SecretStore(settings.home, use_keyring=os.environ.get("WORKSTATION_NO_KEYRING") != "1")


def archives_editor(settings, switch, runner: TaskRunner):
    """For the study browser's "Archives..." button: run the dialog; True when the list changed."""

    def edit(parent: QWidget | None) -> bool:
        dialog = ArchivesDialog(settings.home, switch_archives(settings, switch), secret_store(settings),
                                lambda ep: remote_factories(settings, [ep])[ep.name](), runner, parent)
        changed: list = []
        dialog.saved.connect(changed.append)
        dialog.exec()
        if changed:
            switch.archives = changed[-1]
            switch.set_remotes(remote_factories(settings, changed[-1]))
        return bool(changed)

    return edit


def switch_archives(settings, switch) -> tuple:
    """The endpoints in use: those last saved by the dialog, else the settings file's."""
    return tuple(getattr(switch, "archives", None) or settings.archives)
