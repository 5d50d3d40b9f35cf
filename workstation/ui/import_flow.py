"""Importing files into the archive: choose (folder, files, zip, DICOMDIR) or drop, progress with cancel,
then a report listing what was imported, what was already there and what was skipped, and why."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QHeaderView, QLabel, QMenu,
                               QMessageBox, QProgressDialog, QPushButton, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from workstation.archive.client import ImportReport, Progress
from workstation.ui.qt_compat import emit
from workstation.ui.tasks import TaskHandle, TaskRunner


class ImportReportDialog(QDialog):
    """Counts plus a table of skipped files with reasons."""

    def __init__(self, report: ImportReport, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import report")
        self.report = report
        self.summary = QLabel(summary_text(report))
        self.table = QTableWidget(len(report.skipped), 2)
        self.table.setHorizontalHeaderLabels(("File", "Reason"))
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        for row, s in enumerate(report.skipped):
            self.table.setItem(row, 0, QTableWidgetItem(str(s.path)))
            self.table.setItem(row, 1, QTableWidgetItem(s.reason))
        self.table.setVisible(bool(report.skipped))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok)
        buttons.accepted.connect(self.accept)
        col = QVBoxLayout(self)
        col.addWidget(self.summary)
        col.addWidget(self.table, 1)
        col.addWidget(buttons)
        self.resize(720, 320 if report.skipped else 120)

    def reasons(self) -> list[str]:
        return [self.table.item(r, 1).text() for r in range(self.table.rowCount())]


def summary_text(report: ImportReport) -> str:
    return (f"Imported {len(report.imported)} images in {len(report.studies)} studies; "
            f"{len(report.duplicates)} already in the archive; {len(report.skipped)} skipped.")


class ImportFlow(QObject):
    """Runs ``archive.import_paths`` on the runner with a progress dialog; shows the report."""

    imported = Signal(object)  # ImportReport
    status = Signal(str)

    def __init__(self, archive, runner: TaskRunner, parent_widget: QWidget) -> None:
        super().__init__(parent_widget)
        self.archive = archive
        self.runner = runner
        self.parent_widget = parent_widget
        self.last_report: ImportReport | None = None
        self.last_dialog: ImportReportDialog | None = None
        self.last_error: str | None = None
        self._progress: QProgressDialog | None = None

    # -- choosing ------------------------------------------------------------------------------------------
    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.parent_widget, "Import folder")
        if folder:
            self.start([folder])

    def choose_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self.parent_widget, "Import DICOM files", "",
                                                "DICOM files (*.dcm *.DCM *.ima *.IMA *);;All files (*)")
        if files:
            self.start(files)

    def choose_zip(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.parent_widget, "Import zip archive", "", "Zip (*.zip)")
        if path:
            self.start([path])

    def choose_dicomdir(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.parent_widget, "Import DICOMDIR", "", "DICOMDIR (DICOMDIR*)")
        if path:
            self.start([path])

    # -- running -------------------------------------------------------------------------------------------
    def start(self, paths: Sequence[str | Path]) -> TaskHandle:
        paths = [Path(p) for p in paths]
        self._progress = dlg = QProgressDialog("Importing...", "Cancel", 0, 0, self.parent_widget)
        dlg.setWindowTitle("Import")
        dlg.setWindowModality(Qt.WindowModality.WindowModal)
        dlg.setMinimumDuration(300)

        def setup(handle: TaskHandle) -> None:
            dlg.canceled.connect(handle.cancel)
            handle.cancelled.connect(lambda: emit(self.status, "Import cancelled"))
            handle.done.connect(self._close_progress)

        return self.runner.submit(
            "import", lambda progress, cancel: self.archive.import_paths(paths, progress, cancel),
            on_done=self._on_done, on_failed=self._on_failed, on_progress=self._on_progress, setup=setup)

    def _on_progress(self, p: Progress) -> None:
        if self._progress is None:
            return
        self._progress.setMaximum(max(p.total, 0))
        self._progress.setValue(p.done)
        if p.text:
            self._progress.setLabelText(p.text)

    def _close_progress(self) -> None:
        if self._progress is not None:
            self._progress.reset()
            self._progress.deleteLater()
            self._progress = None

    def _on_done(self, report: ImportReport) -> None:
        self.last_report = report
        emit(self.status, summary_text(report))
        self.last_dialog = ImportReportDialog(report, self.parent_widget)
        self.last_dialog.open()  # not exec(): never blocks the caller (or a test)
        emit(self.imported, report)

    def _on_failed(self, message: str) -> None:
        self.last_error = message
        emit(self.status, f"Import failed: {message}")
        box = QMessageBox(QMessageBox.Icon.Warning, "Import failed", message, parent=self.parent_widget)
        box.open()


def add_import_menu(button: QPushButton, flow: ImportFlow) -> QMenu:
    """Give ``button`` a drop-down: folder, files, zip, DICOMDIR."""
    menu = QMenu(button)
    fill_import_menu(menu, flow)
    button.setMenu(menu)
    return menu


def fill_import_menu(menu: QMenu, flow: ImportFlow) -> None:
    menu.addAction("Import folder...", flow.choose_folder)
    menu.addAction("Import files...", flow.choose_files)
    menu.addAction("Import zip...", flow.choose_zip)
    menu.addAction("Import DICOMDIR...", flow.choose_dicomdir)
