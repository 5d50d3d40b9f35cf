"""The "Priors" panel: the open study's patient's other studies in the same archive, newest first.

:meth:`PriorsPanel.show_for` asks the archive on the task runner (``find_priors``: same Patient ID and
issuer) and lists each prior study with its series; double-clicking a series (or Enter) emits
:attr:`PriorsPanel.open_prior` with its :class:`~workstation.model.refs.SeriesRef`.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from workstation.archive.priors import find_priors
from workstation.model.refs import SeriesRef, StudyRef
from workstation.ui.qt_compat import emit
from workstation.ui.tasks import TaskRunner
from workstation.ui.viewport_text import format_date, patient_name

_COLUMNS = ("Date", "Mod", "Description", "Images")


def _client(archive):
    """The archive that listed the studies (a switch's selected one), for the patient query."""
    return archive.client() if hasattr(archive, "client") and hasattr(archive, "names") else archive


def priors_task(archive, study: StudyRef):
    """A task function: the prior studies of ``study`` with their series, newest first."""

    def run(progress, cancel) -> list[tuple[StudyRef, list[SeriesRef]]]:
        found = []
        for prior in find_priors(_client(archive), study):
            cancel.check()
            # through the archive the browser uses, so the series open from the same place
            found.append((prior, archive.find_series(prior.study_instance_uid)))
        return found

    return run


class PriorsPanel(QWidget):
    open_prior = Signal(object)  # SeriesRef
    status = Signal(str)

    def __init__(self, archive, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.archive, self.runner = archive, runner
        self.study: StudyRef | None = None
        self.priors: list[tuple[StudyRef, list[SeriesRef]]] = []
        self.header = QLabel("Open a series to see the patient's prior studies.")
        self.header.setWordWrap(True)
        self.tree = QTreeWidget()
        self.tree.setObjectName("priors_tree")
        self.tree.setHeaderLabels(_COLUMNS)
        self.tree.setRootIsDecorated(True)
        self.tree.itemDoubleClicked.connect(self._on_item_activated)
        self.tree.itemActivated.connect(self._on_item_activated)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.addWidget(self.header)
        col.addWidget(self.tree, 1)
        self._last_emit: tuple[str, float] | None = None

    def show_for(self, study: StudyRef) -> None:
        """List ``study``'s priors (in the background); does nothing when they are shown already."""
        if self.study is not None and self.study.study_instance_uid == study.study_instance_uid:
            return
        self.study = study
        self.clear(f"Looking for prior studies of {self._who(study)}...")
        self.runner.submit("priors", priors_task(self.archive, study),
                           on_done=lambda found, s=study: self._show(s, found),
                           on_failed=lambda msg: self.header.setText(f"Prior studies not available: {msg}"))

    def refresh(self) -> None:
        """Ask again for the shown study's priors (studies were imported or deleted)."""
        if self.study is not None:
            study, self.study = self.study, None
            self.show_for(study)

    def clear(self, text: str = "Open a series to see the patient's prior studies.") -> None:
        self.priors = []
        self.tree.clear()
        self.header.setText(text)

    def forget(self) -> None:
        """The archive changed: nothing shown is valid any more."""
        self.study = None
        self.clear()

    @staticmethod
    def _who(study: StudyRef) -> str:
        return patient_name(study.patient_name) or study.patient_id or "this patient"

    def _show(self, study: StudyRef, found: list[tuple[StudyRef, list[SeriesRef]]]) -> None:
        if self.study is None or self.study.study_instance_uid != study.study_instance_uid:
            return  # the user opened another study meanwhile
        self.clear()
        self.priors = list(found)
        if not study.patient_id.strip():
            self.header.setText("This study has no Patient ID: its priors cannot be matched.")
        else:
            who = self._who(study)
            if who != study.patient_id:
                who += f" (ID {study.patient_id})"
            if not found:
                self.header.setText(f"No prior studies of {who} in this archive.")
            else:
                count = f"{len(found)} prior stud{'y' if len(found) == 1 else 'ies'}"
                self.header.setText(f"{count} of {who}; double-click a series to compare")
        for prior, series in found:
            top = QTreeWidgetItem([format_date(prior.study_date), "/".join(prior.modalities),
                                   prior.study_description or "(no description)", str(prior.number_of_instances)])
            top.setFlags(top.flags() & ~Qt.ItemFlag.ItemIsSelectable)
            for s in series:
                number = f"{s.series_number}: " if s.series_number is not None else ""
                child = QTreeWidgetItem(["", s.modality, f"{number}{s.series_description or '(no description)'}",
                                         str(s.number_of_instances)])
                child.setData(0, Qt.ItemDataRole.UserRole, s)
                top.addChild(child)
            self.tree.addTopLevelItem(top)
            top.setExpanded(True)
        for c in range(len(_COLUMNS)):
            self.tree.resizeColumnToContents(c)
        emit(self.status, self.header.text())

    def _on_item_activated(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        ref = item.data(0, Qt.ItemDataRole.UserRole)
        if ref is None:
            return
        now = time.monotonic()
        if self._last_emit is not None and self._last_emit[0] == ref.series_instance_uid \
                and now - self._last_emit[1] < 0.5:
            return  # a double-click may also emit itemActivated: open once
        self._last_emit = (ref.series_instance_uid, now)
        emit(self.open_prior, ref)
