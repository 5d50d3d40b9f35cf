"""The archives dialog: add, edit, remove and test the remote archives (DICOMweb or DIMSE).

The list is saved with :func:`workstation.config.save_archives`; passwords and tokens go to the
:class:`~workstation.archive.credentials.SecretStore` (OS keyring, else a user-only file), never into the
settings file.  "Test" sends a C-ECHO or one QIDO-RS query on the task runner and shows the answer.
"""

from __future__ import annotations

import time
from dataclasses import replace

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QComboBox, QDialog, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QListWidget, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from workstation.config import ARCHIVE_KINDS, AUTH_KINDS, RETRIEVE_KINDS, ArchiveEndpoint, save_archives
from workstation.ui.qt_compat import emit
from workstation.ui.tasks import TaskRunner


class EndpointForm(QWidget):
    """The fields of one archive; :meth:`endpoint` validates them into an ArchiveEndpoint."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
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
        self.auth = QComboBox()
        self.auth.addItems(AUTH_KINDS)
        self.user = QLineEdit()
        self.secret = QLineEdit(placeholderText="unchanged when left empty")
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.ca_bundle = QLineEdit()
        self.timeout = QDoubleSpinBox(minimum=0.5, maximum=600, value=30)
        form = QFormLayout(self)
        for label, w in (("Name", self.name), ("Kind", self.kind), ("URL", self.url), ("Host", self.host),
                         ("Port", self.port), ("Called AE", self.called_ae), ("Calling AE", self.calling_ae),
                         ("Retrieve", self.retrieve), ("C-MOVE port", self.move_port), ("Auth", self.auth),
                         ("User", self.user), ("Password / token", self.secret), ("CA bundle", self.ca_bundle),
                         ("Timeout (s)", self.timeout)):
            form.addRow(label, w)

    def show_endpoint(self, ep: ArchiveEndpoint) -> None:
        self.name.setText(ep.name)
        self.kind.setCurrentText(ep.kind)
        self.url.setText(ep.url)
        self.host.setText(ep.host)
        self.port.setValue(ep.port)
        self.called_ae.setText(ep.called_ae)
        self.calling_ae.setText(ep.calling_ae)
        self.retrieve.setCurrentText(ep.retrieve)
        self.move_port.setValue(ep.move_port)
        self.auth.setCurrentText(ep.auth)
        self.user.setText(ep.user)
        self.secret.clear()
        self.ca_bundle.setText(ep.ca_bundle)
        self.timeout.setValue(ep.timeout)

    def endpoint(self) -> ArchiveEndpoint:
        """The archive the fields describe; raises ValueError naming what is missing."""
        name, kind = self.name.text().strip(), self.kind.currentText()
        if not name:
            raise ValueError("the archive needs a name")
        if name == "Local":
            raise ValueError("'Local' is the embedded archive's name; choose another")
        ep = ArchiveEndpoint(name=name, kind=kind, calling_ae=self.calling_ae.text().strip() or "WORKSTATION",
                             timeout=float(self.timeout.value()))
        if kind == "dicomweb":
            url = self.url.text().strip()
            if not url.startswith(("http://", "https://")):
                raise ValueError("a DICOMweb archive needs an http:// or https:// URL")
            auth = self.auth.currentText()
            if auth == "basic" and not self.user.text().strip():
                raise ValueError("basic authentication needs a user name")
            return replace(ep, url=url, auth=auth, user=self.user.text().strip() if auth == "basic" else "",
                           ca_bundle=self.ca_bundle.text().strip())
        if not self.host.text().strip() or not self.called_ae.text().strip():
            raise ValueError("a DIMSE archive needs a host and a called AE title")
        if self.retrieve.currentText() == "move" and not self.move_port.value():
            raise ValueError("C-MOVE needs the port this workstation listens on")
        return replace(ep, host=self.host.text().strip(), port=self.port.value(),
                       called_ae=self.called_ae.text().strip(), retrieve=self.retrieve.currentText(),
                       move_port=self.move_port.value())


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
        from workstation.archive.factory import password_key, token_key

        try:
            ep = self.form.endpoint()
        except ValueError as exc:
            self._say(str(exc))
            return False
        secret = self.form.secret.text()
        if secret:
            self.secrets.set(password_key(ep.name) if ep.auth == "basic" else token_key(ep.name), secret)
            self.form.secret.clear()
        self.archives = [a for a in self.archives if a.name != ep.name] + [ep]
        path = save_archives(self.home, self.archives)
        self._fill(select=ep.name)
        self._say(f"saved {ep.name!r} in {path}")
        emit(self.saved, tuple(self.archives))
        return True

    def remove_current(self) -> None:
        from workstation.archive.factory import password_key, token_key

        row = self.list.currentRow()
        if not 0 <= row < len(self.archives):
            return
        ep = self.archives.pop(row)
        save_archives(self.home, self.archives)
        self.secrets.delete(password_key(ep.name))
        self.secrets.delete(token_key(ep.name))
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
