"""The study browser: search the archive, list studies and series (with thumbnails), import, delete.

Every archive call runs on the task runner; the widget only shows results.  Double-clicking a series
emits :attr:`StudyBrowser.open_series` with its :class:`~workstation.model.refs.SeriesRef`.

Given an :class:`~workstation.archive.switch.ArchiveSwitch`, an "Archive" combo at the top picks the
archive searched (Local or a configured DICOMweb / DIMSE archive) and "Archives..." edits the list.  A
remote series opens through the switch (fetched into the cache with progress, then loaded as a local
one); the study's other series keep downloading in the background
(:class:`~workstation.ui.retrievals.Retrievals`): the "Downloads" tab shows each one's instances,
megabytes and MB/s with a Cancel button, and the series list shows its state.  A remote study's context
menu keeps it offline ("Keep offline (pin)": pinned in the cache and retrieved whole) or unpins it;
pinned studies are marked in the table.

Opening a series lists the patient's prior studies in the "Priors" tab; double-clicking a prior's series
emits :attr:`StudyBrowser.open_prior` (the main window shows it beside the current one).
"""

from __future__ import annotations

import datetime as _dt
import time

import numpy as np
from PySide6.QtCore import QDate, QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (QComboBox, QLabel, QDateEdit, QFormLayout, QHBoxLayout,
                               QLineEdit, QListWidget, QListWidgetItem, QMenu, QMessageBox,
                               QPushButton, QSplitter, QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout,
                               QWidget)

from workstation.archive.client import ArchiveError, StudyQuery
from workstation.model.refs import SeriesRef, StudyRef
from workstation.ui.downloads import DownloadsPanel, progress_cells
from workstation.ui.retrievals import Retrievals
from workstation.ui.import_flow import ImportFlow, add_import_menu
from workstation.ui.loading import thumbnail_loader
from workstation.ui.priors_panel import PriorsPanel
from workstation.ui.qt_compat import emit
from workstation.ui.study_table import StudyTable
from workstation.ui.tasks import TaskRunner
from workstation.ui.viewport_text import format_date, patient_name

MODALITIES = ("", "CT", "MR", "CR", "DX", "US", "PT", "NM", "MG", "XA", "SEG", "SR")
THUMB = 96
PIN_MARK = "[pinned] "  # before the patient's name of a study kept offline
_BASE_TEXT = Qt.ItemDataRole.UserRole + 1  # a series item's text without its download state


def gray_pixmap(image: np.ndarray) -> QPixmap:
    """A QPixmap of a 2D uint8 array."""
    img = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = img.shape
    return QPixmap.fromImage(QImage(img.data, w, h, w, QImage.Format.Format_Grayscale8).copy())


def _show_download_state(item: QListWidgetItem, p) -> None:
    """A series list item's text plus a line on its background download (SeriesProgress ``p``)."""
    state, count, mb, rate = progress_cells(p)
    speed = f", {rate} MB/s" if rate else ""
    item.setText(f"{item.data(_BASE_TEXT)}\n{state}: {count} instances, {mb} MB{speed}")


class SearchForm(QWidget):
    """Patient name / ID, accession, description, modality and a date range."""

    search = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.patient_name = QLineEdit(placeholderText="e.g. SMITH*")
        self.patient_id = QLineEdit()
        self.accession = QLineEdit()
        self.description = QLineEdit()
        self.modality = QComboBox()
        self.modality.addItems([m or "any" for m in MODALITIES])
        self.date_from = self._date_edit(QDate(1900, 1, 1))
        self.date_to = self._date_edit(QDate.currentDate().addYears(1))
        self.button = QPushButton("Search")
        form = QFormLayout(self)
        form.setContentsMargins(2, 2, 2, 2)
        for label, w in (("Patient name", self.patient_name), ("Patient ID", self.patient_id),
                         ("Accession", self.accession), ("Description", self.description),
                         ("Modality", self.modality), ("From", self.date_from), ("To", self.date_to)):
            form.addRow(label, w)
            if isinstance(w, QLineEdit):
                w.returnPressed.connect(self.search)
        form.addRow(self.button)
        self.button.clicked.connect(self.search)

    @staticmethod
    def _date_edit(default: QDate) -> QDateEdit:
        d = QDateEdit(default)
        d.setCalendarPopup(True)
        d.setDisplayFormat("yyyy-MM-dd")
        return d

    def query(self) -> StudyQuery:
        def day(edit: QDateEdit) -> _dt.date:
            q = edit.date()
            return _dt.date(q.year(), q.month(), q.day())

        modality = self.modality.currentText()
        date_from, date_to = day(self.date_from), day(self.date_to)
        return StudyQuery(
            patient_name=self.patient_name.text().strip(), patient_id=self.patient_id.text().strip(),
            accession_number=self.accession.text().strip(), study_description=self.description.text().strip(),
            modality="" if modality == "any" else modality,
            date_from=None if date_from.year <= 1900 else date_from,
            date_to=None if date_to > _dt.date.today() else date_to,
        )


class StudyBrowser(QWidget):
    """Search, study table, series list with thumbnails, import and delete."""

    open_series = Signal(object)  # SeriesRef
    open_prior = Signal(object)  # SeriesRef of a prior study, to show beside the open one
    status = Signal(str)
    studies_changed = Signal()

    def __init__(self, archive, runner: TaskRunner, parent: QWidget | None = None, *,
                 archives_editor=None) -> None:
        super().__init__(parent)
        self.archive = archive
        self.archives_editor = archives_editor  # callable(parent) -> bool: edit the archives list; None: no button
        self.runner = runner
        self.studies: list[StudyRef] = []
        self.series: list[SeriesRef] = []
        self.thumbnails: dict[str, QPixmap] = {}  # series UID -> thumbnail (memory cache)
        self._thumb_pending: set[str] = set()
        self._last_open: tuple[str, float] | None = None
        self.form = SearchForm()
        self.form.search.connect(self.refresh)
        self.table = self._make_table()
        self.series_list = self._make_series_list()
        self.import_flow = ImportFlow(archive, runner, self)
        self.import_flow.imported.connect(self._after_import)
        self.priors = PriorsPanel(archive, runner)
        self.priors.open_prior.connect(self.open_prior)
        self.priors.status.connect(self.status)
        self.downloads = DownloadsPanel()
        self.retrievals = Retrievals(archive, self.downloads, self)
        self.retrievals.progress.connect(self._show_download)
        self.retrievals.ready.connect(self._open)
        self._build_layout()
        self.setAcceptDrops(True)

    def _make_table(self) -> QTableWidget:
        t = StudyTable()
        t.itemSelectionChanged.connect(self._on_study_selected)
        t.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        t.customContextMenuRequested.connect(self._study_menu)
        return t

    def _make_series_list(self) -> QListWidget:
        s = QListWidget()
        s.setIconSize(QSize(THUMB, THUMB))
        s.setViewMode(QListWidget.ViewMode.ListMode)
        s.itemDoubleClicked.connect(self._on_series_double_clicked)
        s.itemActivated.connect(self._on_series_double_clicked)  # Enter (and double-click on some platforms)
        return s

    def _build_archive_row(self) -> QHBoxLayout:
        self.archive_combo = QComboBox()
        self.archive_combo.setObjectName("archive_combo")
        self.fill_archive_combo()
        self.archive_combo.currentTextChanged.connect(self._on_archive_chosen)
        self.archives_button = QPushButton("Archives...")
        self.archives_button.clicked.connect(self.edit_archives)
        self.archives_button.setVisible(self.archives_editor is not None)
        row = QHBoxLayout()
        row.addWidget(QLabel("Archive"))
        row.addWidget(self.archive_combo, 1)
        row.addWidget(self.archives_button)
        self.archive_combo.setEnabled(hasattr(self.archive, "names"))
        return row

    def fill_archive_combo(self) -> None:
        names = self.archive.names() if hasattr(self.archive, "names") else [getattr(self.archive, "name", "Local")]
        combo = self.archive_combo
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(names)
        combo.setCurrentText(getattr(self.archive, "current", names[0]))
        combo.blockSignals(False)

    def _on_archive_chosen(self, name: str) -> None:
        if not name or not hasattr(self.archive, "select"):
            return
        self._stop_prefetch()
        self.downloads.clear()
        self.priors.forget()
        self.archive.select(name)
        remote = self.is_remote()
        self.import_button.setEnabled(not remote)
        self.delete_button.setEnabled(not remote)
        self._show_studies([])
        self.refresh()

    def is_remote(self) -> bool:
        return bool(getattr(self.archive, "is_remote", False))

    def set_archives_editor(self, editor) -> None:
        """Offer the "Archives..." button, which runs ``editor(parent) -> bool`` (True: the list changed)."""
        self.archives_editor = editor
        self.archives_button.setVisible(editor is not None)

    def edit_archives(self) -> None:
        if self.archives_editor is not None and self.archives_editor(self):
            self.fill_archive_combo()
            self._on_archive_chosen(self.archive_combo.currentText())

    def _build_layout(self) -> None:
        self.import_button = QPushButton("Import...")
        add_import_menu(self.import_button, self.import_flow)
        self.delete_button = QPushButton("Delete study")
        self.delete_button.clicked.connect(self.delete_selected_study)
        buttons = QHBoxLayout()
        buttons.addWidget(self.import_button)
        buttons.addWidget(self.delete_button)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.series_list)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.priors, "Priors")
        self.tabs.addTab(self.downloads, "Downloads")
        splitter.addWidget(self.tabs)
        col = QVBoxLayout(self)
        col.setContentsMargins(2, 2, 2, 2)
        col.addLayout(self._build_archive_row())
        col.addWidget(self.form)
        col.addLayout(buttons)
        col.addWidget(splitter, 1)

    # -- search -----------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Run the search in the background and fill the table."""
        query = self.form.query()
        emit(self.status, f"searching {getattr(self.archive, 'name', 'the archive')}...")
        self.runner.submit("search", lambda progress, cancel: self.archive.find_studies(query),
                           on_done=self._show_studies, on_failed=self._failed)

    def _show_studies(self, studies: list[StudyRef]) -> None:
        before = self.selected_study()
        self.studies = list(studies)
        t = self.table
        t.blockSignals(True)  # the rows change under the selection: it is set again below
        t.clearSelection()
        t.blockSignals(False)
        t.setRowCount(len(self.studies))
        for row, s in enumerate(self.studies):
            # the order a reader scans a worklist in: who, when, what
            values = (patient_name(s.patient_name), format_date(s.study_date), "/".join(s.modalities),
                      s.study_description, s.patient_id, s.accession_number, str(s.number_of_series),
                      str(s.number_of_instances))
            for col, v in enumerate(values):
                item = QTableWidgetItem(v)
                item.setToolTip(v)
                t.setItem(row, col, item)
        self._mark_pins()
        t.fit_columns()
        emit(self.status, f"{len(self.studies)} studies")
        emit(self.studies_changed)
        if self.studies:
            # the study selected before, when it is still listed, else the first; its series are listed again
            uid = before.study_instance_uid if before is not None else None
            t.selectRow(next((i for i, s in enumerate(self.studies) if s.study_instance_uid == uid), 0))
        else:
            self._show_series([])

    def selected_study(self) -> StudyRef | None:
        rows = {i.row() for i in self.table.selectedItems()}
        return self.studies[min(rows)] if rows and min(rows) < len(self.studies) else None

    def _on_study_selected(self) -> None:
        study = self.selected_study()
        if study is None:
            return
        uid = study.study_instance_uid
        self.runner.submit("series", lambda progress, cancel: self.archive.find_series(uid),
                           on_done=self._show_series, on_failed=self._failed)

    # -- series -------------------------------------------------------------------------------------------
    def _show_series(self, series: list[SeriesRef]) -> None:
        self.series = list(series)
        self.series_list.clear()
        for s in self.series:
            number = f"{s.series_number}: " if s.series_number is not None else ""
            item = QListWidgetItem(f"{number}{s.series_description or '(no description)'}\n"
                                   f"{s.modality}, {s.number_of_instances} images")
            item.setData(Qt.ItemDataRole.UserRole, s.series_instance_uid)
            item.setData(_BASE_TEXT, item.text())
            item.setSizeHint(QSize(THUMB + 200, THUMB + 6))
            if s.series_instance_uid in self.thumbnails:
                item.setIcon(QIcon(self.thumbnails[s.series_instance_uid]))
            if s.series_instance_uid in self.downloads.states:
                _show_download_state(item, self.downloads.states[s.series_instance_uid])
            self.series_list.addItem(item)
        for s in self.series:
            self._request_thumbnail(s.series_instance_uid)

    def _request_thumbnail(self, uid: str) -> None:
        if uid in self.thumbnails or uid in self._thumb_pending:
            return
        try:
            c = self.archive.client(self.archive.owner(uid)) if self.is_remote() else None
        except ArchiveError:
            return  # the archive cannot be opened (the series list says why)
        if c is not None and not hasattr(c, "thumbnail"):
            return  # DIMSE: a thumbnail would cost the whole series' download; DICOMweb renders one
        ref = self.series_ref(uid)
        study = ref.study_instance_uid if ref is not None else None
        task = thumbnail_loader(self.archive, uid, THUMB) if c is None else \
            (lambda progress, cancel: c.thumbnail(uid, THUMB, study_instance_uid=study))
        self._thumb_pending.add(uid)
        self.runner.submit(f"thumbnail {uid}", task,
                           on_done=lambda img, u=uid: self._set_thumbnail(u, img),
                           setup=lambda h, u=uid: h.done.connect(lambda: self._thumb_pending.discard(u)))

    def _set_thumbnail(self, uid: str, image: np.ndarray) -> None:
        self.thumbnails[uid] = gray_pixmap(image)
        for row in range(self.series_list.count()):
            item = self.series_list.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == uid:
                item.setIcon(QIcon(self.thumbnails[uid]))

    def series_ref(self, uid: str) -> SeriesRef | None:
        return next((s for s in self.series if s.series_instance_uid == uid), None)

    def _on_series_double_clicked(self, item: QListWidgetItem) -> None:
        ref = self.series_ref(item.data(Qt.ItemDataRole.UserRole))
        now = time.monotonic()
        if ref is not None and self._last_open != (ref.series_instance_uid, round(now, 0)):
            # double-click may also emit itemActivated: open once
            self._last_open = (ref.series_instance_uid, round(now, 0))
            if self.is_remote() and self.retrievals.open_when_retrieved(ref):
                emit(self.status, f"{ref.series_description or 'the series'} opens when its download ends")
            else:
                self._open(ref)
            if self.is_remote():
                self._prefetch_others(ref)
            study = next((s for s in self.studies if s.study_instance_uid == ref.study_instance_uid), None)
            if study is not None:
                self.priors.show_for(study)

    def _open(self, ref: SeriesRef) -> None:
        if self._last_open is not None and self._last_open[0] != ref.series_instance_uid:
            return  # a series whose download ended after the reader had opened another one
        emit(self.open_series, ref)

    # -- background retrieval of the open study's other series ----------------------------------------------
    def _prefetch_others(self, opened: SeriesRef) -> None:
        self.retrievals.request([s for s in self.series if s.series_instance_uid != opened.series_instance_uid
                                 and s.study_instance_uid == opened.study_instance_uid])

    def _show_download(self, p) -> None:
        for row in range(self.series_list.count()):
            item = self.series_list.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == p.series_uid:
                _show_download_state(item, p)
        state, count, mb, _rate = progress_cells(p)
        emit(self.status, f"background: series {p.series_uid[-12:]} {state}, {count} instances, {mb} MB")

    def watch_open(self, ref: SeriesRef, handle) -> None:
        """Show the transfer of a remote series opened in a viewport (its load task) in the Downloads tab."""
        self.retrievals.watch_open(ref, handle)

    def _stop_prefetch(self) -> None:
        self.retrievals.stop()

    # -- keep offline (pins in the remote archive's cache) ------------------------------------------------------
    def _cache_index(self):
        """The selected remote archive's cache index, or None (local archive, or no cache)."""
        if not self.is_remote():
            return None
        try:
            return getattr(self.archive.client(), "cache_index", None)
        except ArchiveError:  # a misconfigured archive has no cache to show (choosing it said why)
            return None

    def pinned_studies(self) -> set[str]:
        index = self._cache_index()
        return set(index.pinned()) if index is not None else set()

    def _study_menu(self, pos) -> None:
        item = self.table.itemAt(pos)
        if item is None:
            return
        self.table.selectRow(item.row())
        menu = self.study_menu(self.studies[item.row()])
        if menu is not None:
            menu.exec(self.table.viewport().mapToGlobal(pos))

    def study_menu(self, study: StudyRef) -> QMenu | None:
        """The study's context menu (None when it offers nothing): pin / unpin in a remote archive's cache."""
        if self._cache_index() is None:
            return None
        menu = QMenu(self)
        if study.study_instance_uid in self.pinned_studies():
            menu.addAction("Unpin", lambda: self.set_pinned(study, False))
        else:
            menu.addAction("Keep offline (pin)", lambda: self.set_pinned(study, True))
        return menu

    def set_pinned(self, study: StudyRef, on: bool) -> None:
        """Pin a study in the cache and retrieve its series in the background, or unpin it."""
        index = self._cache_index()
        if index is None:
            return
        uid = study.study_instance_uid
        if on:
            index.pin(uid)
            self.runner.submit("series", lambda progress, cancel: self.archive.find_series(uid),
                               on_done=self.retrievals.request, on_failed=self._failed)
        else:
            index.unpin(uid)
        self._mark_pins()
        who = patient_name(study.patient_name) or study.patient_id
        emit(self.status, f"{'Pinned' if on else 'Unpinned'} the study of {who}")

    def _mark_pins(self) -> None:
        pinned = self.pinned_studies()
        for row, s in enumerate(self.studies):
            item = self.table.item(row, 0)
            if item is not None:
                mark = PIN_MARK if s.study_instance_uid in pinned else ""
                item.setText(mark + patient_name(s.patient_name))
                item.setToolTip(patient_name(s.patient_name) + (" -- kept offline in the cache (pinned)" if mark else ""))

    # -- delete -------------------------------------------------------------------------------------------
    def confirm(self, title: str, text: str) -> bool:
        """Ask the user; tests replace this method."""
        answer = QMessageBox.question(self, title, text)
        return answer == QMessageBox.StandardButton.Yes

    def delete_selected_study(self) -> None:
        study = self.selected_study()
        if study is None:
            return
        who = patient_name(study.patient_name) or study.patient_id
        text = (f"Delete the study of {who} from {format_date(study.study_date)} "
                f"({study.number_of_instances} images) from the local archive?")
        if not self.confirm("Delete study", text):
            return
        uid = study.study_instance_uid
        self.runner.submit("delete", lambda progress, cancel: self.archive.delete_study(uid),
                           on_done=lambda _r: self.refresh(), on_failed=self._failed)

    # -- import & drop -------------------------------------------------------------------------------------
    def _after_import(self, report) -> None:
        self.refresh()
        self.priors.refresh()  # an imported study may be a prior of the open one

    def dragEnterEvent(self, ev) -> None:  # noqa: N802
        if ev.mimeData().hasUrls():
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in ev.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.import_flow.start(paths)
            ev.acceptProposedAction()

    def _failed(self, message: str) -> None:
        emit(self.status, message)
        QMessageBox(QMessageBox.Icon.Warning, "Archive", message, parent=self).open()
