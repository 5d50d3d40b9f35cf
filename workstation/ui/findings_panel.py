"""The findings dock: every AI finding of this session with its model, score, size and review status.

A click on a row asks the owner to jump there (``jump_requested``); Accept / Reject / Edit record the
radiologist's decision (who and when) as a new, immutable :class:`Finding` that replaces the old one in
the list (``decided``); Delete takes a finding off the list, recorded as rejected (``deleted``).  Whole-series
classification scores are shown as one line per model.  Every row, line and the header say the results are
AI-generated and by which model.
"""

from __future__ import annotations

import getpass

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox,
                               QFormLayout, QHBoxLayout, QHeaderView, QLabel, QPushButton, QSlider, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from workstation.model.finding import Finding, FindingKind, Status
from workstation.model.volume import Volume
from workstation.ui.qt_compat import emit

COLUMNS = ("Finding", "Score", "Size", "Slice", "Status", "Model (AI-generated)")
_STATUS_COLOURS = {Status.PENDING: None, Status.ACCEPTED: QColor(60, 160, 60), Status.REJECTED: QColor(190, 60, 60),
                   Status.EDITED: QColor(70, 130, 220)}


def model_label(finding: Finding) -> str:
    p = finding.provenance
    return f"{p.model_title or p.model_id} {p.model_version}".strip()


def size_text(finding: Finding) -> str:
    """Volume in mL for regions, "whole series" for classes, the box in mm otherwise."""
    if finding.kind is FindingKind.CLASSIFICATION:
        return "whole series"
    if finding.volume_mm3 > 0:
        return f"{finding.volume_mm3 / 1000.0:.1f} mL"
    if finding.kind is FindingKind.POINT:
        return "point"
    return " x ".join(f"{s:.0f}" for s in finding.size_mm) + " mm"


def slice_number(finding: Finding, volume: Volume | None) -> str:
    """1-based slice (k) of the source series where the centroid lies."""
    if volume is None or finding.kind is FindingKind.CLASSIFICATION:
        return ""
    k = int(np.rint(volume.lps_to_index(np.asarray(finding.centroid_mm))[2]))
    return str(k + 1) if 0 <= k < volume.shape[0] else ""


def decision_tooltip(finding: Finding) -> str:
    d = finding.decision
    if d is None:
        return "Not reviewed yet"
    return f"{d.status.value.capitalize()} by {d.by} at {d.at.astimezone().strftime('%Y-%m-%d %H:%M:%S %Z')}"


class FindingEditDialog(QDialog):
    """Change a finding's label (any text, the model's labels offered) and, for a box, its corners in mm."""

    def __init__(self, finding: Finding, labels: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Edit finding: {finding.label} ({model_label(finding)}, AI-generated)")
        self.finding = finding
        self.label = QComboBox()
        self.label.setEditable(True)
        self.label.addItems(list(dict.fromkeys([finding.label, *labels])))
        form = QFormLayout(self)
        form.addRow("Label", self.label)
        self.corners: list[QDoubleSpinBox] = []
        if finding.kind is FindingKind.BOX:
            for name, point in (("From (x, y, z) mm", finding.bbox_min_mm), ("To (x, y, z) mm", finding.bbox_max_mm)):
                row = QHBoxLayout()
                for v in point:
                    box = QDoubleSpinBox()
                    box.setRange(-10000.0, 10000.0)
                    box.setDecimals(1)
                    box.setValue(float(v))
                    row.addWidget(box)
                    self.corners.append(box)
                form.addRow(name, row)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)

    def new_label(self) -> str | None:
        text = self.label.currentText().strip()
        return text if text and text != self.finding.label else None

    def new_box(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        if not self.corners:
            return None
        values = [round(b.value(), 1) for b in self.corners]
        old = [round(v, 1) for v in (*self.finding.bbox_min_mm, *self.finding.bbox_max_mm)]
        return None if values == old else (tuple(values[:3]), tuple(values[3:]))


class FindingsPanel(QWidget):
    jump_requested = Signal(object)  # Finding
    decided = Signal(object)  # the new Finding, after accept / reject / edit
    deleted = Signal(object)  # the Finding taken off the list (recorded as rejected)
    opacity_changed = Signal(float)  # 0..1
    store_requested = Signal()  # "Store to archive": SEG + SR of the results with their decisions

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.findings: list[Finding] = []
        self.removed: list[Finding] = []  # deleted by the radiologist, each with a REJECTED decision
        self._volumes: dict[str, Volume] = {}  # finding uid -> the volume it was found on
        self.label_choices: dict[str, list[str]] = {}  # model id -> its label names (for the edit dialog)
        self._class_lines: dict[str, str] = {}  # model id -> classification line
        self._class_models: dict[str, str] = {}  # model id -> "title version"
        self.user = getpass.getuser()
        self.header = QLabel("No AI results yet.")
        self.header.setWordWrap(True)
        self.classification = QLabel()
        self.classification.setWordWrap(True)
        self.classification.hide()
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
        self.edit_button = QPushButton("Edit...")
        self.delete_button = QPushButton("Delete")
        self.accept_button.clicked.connect(lambda: self.decide_selected(True))
        self.reject_button.clicked.connect(lambda: self.decide_selected(False))
        self.edit_button.clicked.connect(self.edit_selected)
        self.delete_button.clicked.connect(self.delete_selected)
        self.store_button = QPushButton("Store to archive")
        self.store_button.setToolTip("Store the AI results with your decisions to the archive (DICOM SEG + SR)")
        self.store_button.clicked.connect(lambda: emit(self.store_requested))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.opacity.valueChanged.connect(lambda v: emit(self.opacity_changed, v / 100.0))
        self.dialog: FindingEditDialog | None = None
        self._build()
        self._update_buttons()
        self.table.itemSelectionChanged.connect(self._update_buttons)

    def _build(self) -> None:
        buttons = QHBoxLayout()
        for b in (self.accept_button, self.reject_button, self.edit_button, self.delete_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        slider = QHBoxLayout()
        slider.addWidget(QLabel("Overlay opacity"))
        slider.addWidget(self.opacity, 1)
        col = QVBoxLayout(self)
        col.setContentsMargins(4, 4, 4, 4)
        col.addWidget(self.header)
        col.addWidget(self.classification)
        col.addWidget(self.table, 1)
        col.addLayout(buttons)
        col.addLayout(slider)
        col.addWidget(self.store_button)  # a row of its own: the dock keeps its width

    # -- content -----------------------------------------------------------------------------------------
    def add_findings(self, findings, volume: Volume | None, model: str) -> None:
        """Append one run's findings (found on ``volume`` by ``model``, e.g. "title 1.0.0")."""
        for f in findings:
            self.findings.append(f)
            if volume is not None:
                self._volumes[f.uid] = volume
            self._add_row(f)
        self._update_header()

    def _update_header(self) -> None:
        models = sorted({model_label(f) for f in self.findings} | set(self._class_models.values()))
        if not models:
            return
        self.header.setText("<b>AI-generated results</b> (not a diagnosis; review each finding): " + ", ".join(models))
        self.header.setStyleSheet("color: #ffa500;")

    def set_classification(self, model_id: str, model: str, scores) -> None:
        """One line "<model> (AI-generated): label score, ..." for a whole-series classification (None removes)."""
        if scores:
            parts = ", ".join(f"{label} {score:.2f}" for label, score in scores)
            self._class_lines[model_id] = f"Classification by {model} (AI-generated): {parts}"
            self._class_models[model_id] = model
        else:
            self._class_lines.pop(model_id, None)
            self._class_models.pop(model_id, None)
        self.classification.setText("\n".join(self._class_lines.values()))
        self.classification.setStyleSheet("color: #ffa500;")
        self.classification.setVisible(bool(self._class_lines))
        self._update_header()

    def clear_model(self, model_id: str) -> None:
        """Drop the findings of ``model_id`` (a new run replaces the old one)."""
        keep = [f for f in self.findings if f.provenance.model_id != model_id]
        self.removed = [f for f in self.removed if f.provenance.model_id != model_id]
        self.findings = []
        self.table.setRowCount(0)
        for f in keep:
            self.findings.append(f)
            self._add_row(f)
        self.set_classification(model_id, "", None)

    def _add_row(self, f: Finding) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        self._fill_row(row, f)

    def _fill_row(self, row: int, f: Finding) -> None:
        texts = (f.label, f"{f.score:.2f}", size_text(f), slice_number(f, self._volumes.get(f.uid)),
                 f.status.value.capitalize(), model_label(f) + " (AI)")
        for col, text in enumerate(texts):
            item = QTableWidgetItem(text)
            item.setToolTip(decision_tooltip(f) if col == 4 else f"AI-generated ({f.kind.value}) by {model_label(f)}")
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

    def report_findings(self) -> list[Finding]:
        """What goes into the SR: the listed findings and the deleted ones (rejected), each with its decision."""
        return [*self.findings, *self.removed]

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
        return self._replace(row, old.accept(self.user) if accept else old.reject(self.user))

    def edit(self, row: int, *, label: str | None = None, bbox_mm=None) -> Finding:
        """Change the label and/or box of the finding in ``row``; recorded as EDITED by the user, now."""
        return self._replace(row, self.findings[row].edit(self.user, label=label, bbox_mm=bbox_mm))

    def edit_selected(self) -> FindingEditDialog | None:
        """Open the edit dialog on the selected finding (non-blocking); OK applies the edit."""
        row = self.selected_row()
        if row is None:
            return None
        f = self.findings[row]
        self.dialog = FindingEditDialog(f, self.label_choices.get(f.provenance.model_id, []), self)
        self.dialog.accepted.connect(lambda d=self.dialog, r=row: self._apply_dialog(d, r))
        self.dialog.open()
        return self.dialog

    def _apply_dialog(self, dialog: FindingEditDialog, row: int) -> None:
        label, box = dialog.new_label(), dialog.new_box()
        if (label is not None or box is not None) and row < len(self.findings) \
                and self.findings[row].uid == dialog.finding.uid:
            self.edit(row, label=label, bbox_mm=box)

    def delete_selected(self) -> Finding | None:
        row = self.selected_row()
        return None if row is None else self.delete(row)

    def delete(self, row: int) -> Finding:
        """Take the finding off the list; it is kept for the report as rejected by the user."""
        gone = self.findings.pop(row).reject(self.user)
        self.table.removeRow(row)
        self.removed.append(gone)
        emit(self.deleted, gone)
        self._update_buttons()
        return gone

    def _replace(self, row: int, new: Finding) -> Finding:
        old = self.findings[row]
        self.findings[row] = new
        if old.uid in self._volumes:
            self._volumes[new.uid] = self._volumes[old.uid]
        self._fill_row(row, new)
        emit(self.decided, new)
        return new

    def _update_buttons(self) -> None:
        on = self.selected_row() is not None
        for b in (self.accept_button, self.reject_button, self.edit_button, self.delete_button):
            b.setEnabled(on)
