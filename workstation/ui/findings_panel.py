"""The findings dock: every AI finding of this session with its model, score, size and review status.

A click on a row asks the owner to jump there (``jump_requested``); Accept / Reject record the
radiologist's decision (who and when) as a new, immutable :class:`Finding` that replaces the old one in
the list (``decided``).  Every row and the header say the results are AI-generated and by which model.
"""

from __future__ import annotations

import getpass

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QPushButton, QSlider,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from workstation.model.finding import Finding, Status
from workstation.model.volume import Volume
from workstation.ui.qt_compat import emit

COLUMNS = ("Finding", "Score", "Size", "Slice", "Status", "Model (AI-generated)")
_STATUS_COLOURS = {Status.PENDING: None, Status.ACCEPTED: QColor(60, 160, 60), Status.REJECTED: QColor(190, 60, 60)}


def model_label(finding: Finding) -> str:
    p = finding.provenance
    return f"{p.model_title or p.model_id} {p.model_version}".strip()


def size_text(finding: Finding) -> str:
    """Volume in mL for regions; the bounding box in mm otherwise."""
    if finding.volume_mm3 > 0:
        return f"{finding.volume_mm3 / 1000.0:.1f} mL"
    return " x ".join(f"{s:.0f}" for s in finding.size_mm) + " mm"


def slice_number(finding: Finding, volume: Volume | None) -> str:
    """1-based slice (k) of the source series where the centroid lies."""
    if volume is None:
        return ""
    k = int(np.rint(volume.lps_to_index(np.asarray(finding.centroid_mm))[2]))
    return str(k + 1) if 0 <= k < volume.shape[0] else ""


def decision_tooltip(finding: Finding) -> str:
    d = finding.decision
    if d is None:
        return "Not reviewed yet"
    return f"{d.status.value.capitalize()} by {d.by} at {d.at.astimezone().strftime('%Y-%m-%d %H:%M:%S %Z')}"


class FindingsPanel(QWidget):
    jump_requested = Signal(object)  # Finding
    decided = Signal(object)  # the new Finding, after accept / reject
    opacity_changed = Signal(float)  # 0..1

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.findings: list[Finding] = []
        self._volumes: dict[str, Volume] = {}  # finding uid -> the volume it was found on
        self.user = getpass.getuser()
        self.header = QLabel("No AI results yet.")
        self.header.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.cellClicked.connect(lambda row, _col: self._jump(row))
        self.accept_button = QPushButton("Accept")
        self.reject_button = QPushButton("Reject")
        self.accept_button.clicked.connect(lambda: self.decide_selected(True))
        self.reject_button.clicked.connect(lambda: self.decide_selected(False))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.opacity.valueChanged.connect(lambda v: emit(self.opacity_changed, v / 100.0))
        self._build()
        self._update_buttons()
        self.table.itemSelectionChanged.connect(self._update_buttons)

    def _build(self) -> None:
        buttons = QHBoxLayout()
        buttons.addWidget(self.accept_button)
        buttons.addWidget(self.reject_button)
        buttons.addStretch(1)
        slider = QHBoxLayout()
        slider.addWidget(QLabel("Overlay opacity"))
        slider.addWidget(self.opacity, 1)
        col = QVBoxLayout(self)
        col.setContentsMargins(4, 4, 4, 4)
        col.addWidget(self.header)
        col.addWidget(self.table, 1)
        col.addLayout(buttons)
        col.addLayout(slider)

    # -- content -----------------------------------------------------------------------------------------
    def add_findings(self, findings, volume: Volume | None, model: str) -> None:
        """Append one run's findings (found on ``volume`` by ``model``, e.g. "title 1.0.0")."""
        for f in findings:
            self.findings.append(f)
            if volume is not None:
                self._volumes[f.uid] = volume
            self._add_row(f)
        models = sorted({model_label(f) for f in self.findings})
        self.header.setText("<b>AI-generated results</b> (not a diagnosis; review each finding): "
                            + ", ".join(models))
        self.header.setStyleSheet("color: #ffa500;")

    def clear_model(self, model_id: str) -> None:
        """Drop the findings of ``model_id`` (a new run replaces the old one)."""
        keep = [f for f in self.findings if f.provenance.model_id != model_id]
        self.findings = []
        self.table.setRowCount(0)
        for f in keep:
            self.findings.append(f)
            self._add_row(f)

    def _add_row(self, f: Finding) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        self._fill_row(row, f)

    def _fill_row(self, row: int, f: Finding) -> None:
        texts = (f.label, f"{f.score:.2f}", size_text(f), slice_number(f, self._volumes.get(f.uid)),
                 f.status.value.capitalize(), model_label(f) + " (AI)")
        for col, text in enumerate(texts):
            item = QTableWidgetItem(text)
            item.setToolTip(decision_tooltip(f) if col == 4 else f"AI-generated by {model_label(f)}")
            colour = _STATUS_COLOURS[f.status]
            if col == 4 and colour is not None:
                item.setForeground(QBrush(colour))
            self.table.setItem(row, col, item)

    # -- actions -----------------------------------------------------------------------------------------
    def volume_of(self, finding: Finding) -> Volume | None:
        return self._volumes.get(finding.uid)

    def select(self, row: int) -> None:
        self.table.selectRow(row)

    def selected_row(self) -> int | None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        return min(rows) if rows else None

    def _jump(self, row: int) -> None:
        if 0 <= row < len(self.findings):
            emit(self.jump_requested, self.findings[row])

    def decide_selected(self, accept: bool) -> Finding | None:
        row = self.selected_row()
        if row is None:
            return None
        return self.decide(row, accept)

    def decide(self, row: int, accept: bool) -> Finding:
        """Accept or reject the finding in ``row`` as the logged-in user; the row shows the decision."""
        old = self.findings[row]
        new = old.accept(self.user) if accept else old.reject(self.user)
        self.findings[row] = new
        if old.uid in self._volumes:
            self._volumes[new.uid] = self._volumes[old.uid]
        self._fill_row(row, new)
        emit(self.decided, new)
        return new

    def _update_buttons(self) -> None:
        on = self.selected_row() is not None
        self.accept_button.setEnabled(on)
        self.reject_button.setEnabled(on)
