"""The study list of the browser: one row a study, its columns fitted to the panel.

Short columns (date, modalities, counts) fit their contents; the description takes what is left; names and
numbers that may be long (patient, ID, accession) get their contents' width, at most their share of the room
the short columns and a readable description leave (and at most ``WIDE_COLUMN``), never less than a readable
least width: in a wide panel everything is in view, in a narrow one the table scrolls sideways.  A cut text
ends in "..." and shows whole in its tooltip.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget

STUDY_COLUMNS = ("Patient", "Date", "Mod", "Description", "ID", "Accession", "Series", "Images")
FIT_COLUMNS = (1, 2, 6, 7)  # date, modalities, counts: short, always whole
DESCRIPTION_COLUMN = 3
CAPPED_COLUMNS = {0: (0.45, 120), 4: (0.35, 80), 5: (0.2, 60)}  # patient, ID, accession: share of the room, least px
WIDE_COLUMN = 200  # px
MIN_DESCRIPTION = 80  # px


class StudyTable(QTableWidget):
    """Read-only, one row selected at a time; the columns are fitted again when the table's width changes."""

    def __init__(self) -> None:
        super().__init__(0, len(STUDY_COLUMNS))
        self.setHorizontalHeaderLabels(STUDY_COLUMNS)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.verticalHeader().hide()
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for col in FIT_COLUMNS:
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(DESCRIPTION_COLUMN, QHeaderView.ResizeMode.Stretch)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)

    def fit_columns(self) -> None:
        """Give patient, ID and accession their width (see the module's docstring); after a fill or a resize."""
        room = self.viewport().width() - sum(self.columnWidth(c) for c in FIT_COLUMNS) - MIN_DESCRIPTION
        for col, (share, least) in CAPPED_COLUMNS.items():
            self.resizeColumnToContents(col)
            self.setColumnWidth(col, min(self.columnWidth(col), WIDE_COLUMN, max(least, int(share * room))))

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self.fit_columns()
