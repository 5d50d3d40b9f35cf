"""The downloads panel: one row per series retrieved in the background from a remote archive.

Each row shows the series, its state, instances n/N, megabytes and MB/s, and a Cancel button while the
series is queued or running.  "Pause" holds the queue (what is running goes on).  The panel only shows
:class:`~workstation.archive.prefetch.SeriesProgress` values and emits the user's wishes; the study
browser owns the :class:`~workstation.archive.prefetch.Prefetcher` they go to.  The series opened in a
viewport is retrieved by its load task instead: :meth:`DownloadsPanel.watch` shows that task's transfer
(its progress reports that carry bytes) in a row of its own, whose Cancel cancels the load.
"""

from __future__ import annotations

import time
from dataclasses import replace

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QPushButton, QTableWidget,
                               QTableWidgetItem, QToolButton, QVBoxLayout, QWidget)

from workstation.archive.prefetch import CANCELLED, DONE, FAILED, QUEUED, RUNNING, SeriesProgress
from workstation.ui.qt_compat import emit

COLUMNS = ("Series", "State", "Instances", "MB", "MB/s", "")
_FINAL = (DONE, FAILED, CANCELLED)


def progress_cells(p: SeriesProgress) -> tuple[str, str, str, str]:
    """State, "n/N", megabytes and MB/s of one series, as the panel and the series list show them."""
    state = f"failed: {p.error}" if p.state == FAILED and p.error else p.state
    if p.from_cache:
        state = "cached" if p.state == DONE else f"{state} (cache)"
    return (state, f"{p.done}/{p.total or '?'}", f"{p.megabytes:.1f}",
            f"{p.mb_per_s:.1f}" if p.state in (RUNNING, DONE) and not p.from_cache else "")


class DownloadsPanel(QWidget):
    cancel_requested = Signal(str)  # series UID
    pause_toggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: dict[str, int] = {}  # series UID -> table row
        self.states: dict[str, SeriesProgress] = {}
        self.labels: dict[str, str] = {}
        self._cancels: dict[str, object] = {}  # series UID -> cancel of the load task watched in its row
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("downloads_table")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.summary = QLabel("No background downloads.")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("Start no further background download until resumed")
        self.pause_button.toggled.connect(self._on_pause)
        self.cancel_all_button = QPushButton("Cancel all")
        self.cancel_all_button.clicked.connect(self.cancel_all)
        self.clear_button = QPushButton("Clear finished")
        self.clear_button.clicked.connect(self.clear_finished)
        row = QHBoxLayout()
        row.addWidget(self.summary, 1)
        row.addWidget(self.pause_button)
        row.addWidget(self.cancel_all_button)
        row.addWidget(self.clear_button)
        col = QVBoxLayout(self)
        col.setContentsMargins(0, 0, 0, 0)
        col.addLayout(row)
        col.addWidget(self.table, 1)

    def show_progress(self, p: SeriesProgress, label: str = "") -> None:
        """Add or update the row of ``p.series_uid``; ``label`` names the series (first time)."""
        row = self.rows.get(p.series_uid)
        before = self.states.get(p.series_uid)
        if before is not None and before.state in _FINAL and p.state not in (QUEUED, *_FINAL):
            return  # a report that overtook the end on its way here; only a new request (queued) restarts
        if row is None:
            row = self.table.rowCount()
            self.table.insertRow(row)
            self.rows[p.series_uid] = row
            self.labels[p.series_uid] = label or p.series_uid
            name = QTableWidgetItem(self.labels[p.series_uid])
            name.setToolTip(p.series_uid)
            self.table.setItem(row, 0, name)
            button = QToolButton()
            button.setText("Cancel")
            button.setToolTip("Cancel this series' download (it resumes where it stopped when asked again)")
            button.clicked.connect(lambda _=False, uid=p.series_uid: self._cancel(uid))
            self.table.setCellWidget(row, len(COLUMNS) - 1, button)
        self.states[p.series_uid] = p
        for col, text in enumerate(progress_cells(p), start=1):
            self.table.setItem(row, col, QTableWidgetItem(text))
        self.cancel_button(p.series_uid).setEnabled(p.state not in _FINAL)
        self._update_summary()

    def watch(self, series_uid: str, label: str, handle, *, from_cache: bool = False) -> None:
        """Show the retrieval of a series by a load task (a :class:`~workstation.ui.tasks.TaskHandle`);
        ``from_cache``: the series is whole in the cache already (no transfer to time)."""
        started = time.monotonic()
        if series_uid in self.rows:
            self._remove(series_uid)  # a fresh row: its Cancel cancels this load only
        row = [SeriesProgress(series_uid, RUNNING, from_cache=from_cache)]
        self._cancels[series_uid] = handle.cancel
        self.show_progress(row[0], f"{label} (opened)")

        def on_progress(p) -> None:
            if p.bytes_done <= 0:
                return  # not the transfer: the header reading and decoding that follow carry no bytes
            if row[0].state in _FINAL and series_uid not in self.rows:
                return  # its row was cleared
            if row[0].state in _FINAL:
                # a report from the retrieval's own thread can arrive after the task's end: count it in
                row[0] = replace(row[0], done=max(row[0].done, p.done), total=max(row[0].total, p.total),
                                 bytes_done=max(row[0].bytes_done, p.bytes_done))
            else:
                row[0] = replace(row[0], done=p.done, total=p.total, bytes_done=p.bytes_done,
                                 seconds=time.monotonic() - started)
            self.show_progress(row[0])

        def on_end(state: str, error: str = "") -> None:
            if self._cancels.get(series_uid) == handle.cancel:
                del self._cancels[series_uid]  # the row's Cancel goes to a later background download
            done = row[0].total or row[0].done
            row[0] = replace(row[0], state=state, error=error, done=done if state == DONE else row[0].done,
                             seconds=row[0].seconds or time.monotonic() - started)
            self.show_progress(row[0])

        handle.progress.connect(on_progress)
        handle.finished.connect(lambda _volume: on_end(DONE))
        handle.failed.connect(lambda message: on_end(FAILED, message))
        handle.cancelled.connect(lambda: on_end(CANCELLED))

    def _cancel(self, series_uid: str) -> None:
        if series_uid in self._cancels:
            self._cancels[series_uid]()  # the load task of the series on screen
        else:
            emit(self.cancel_requested, series_uid)

    def _remove(self, series_uid: str) -> None:
        gone = self.rows.pop(series_uid)
        self.table.removeRow(gone)
        self.rows = {uid: r - (r > gone) for uid, r in self.rows.items()}
        self.states.pop(series_uid, None)
        self.labels.pop(series_uid, None)
        self._cancels.pop(series_uid, None)

    def cancel_button(self, series_uid: str) -> QToolButton:
        return self.table.cellWidget(self.rows[series_uid], len(COLUMNS) - 1)

    def cells(self, series_uid: str) -> tuple[str, ...]:
        """The texts of a series' row (what the user reads)."""
        row = self.rows[series_uid]
        return tuple(self.table.item(row, c).text() for c in range(len(COLUMNS) - 1))

    def cancel_all(self) -> None:
        for uid, p in list(self.states.items()):
            if p.state in (QUEUED, RUNNING):
                self._cancel(uid)

    def clear_finished(self) -> None:
        """Drop the rows of series that are done, failed or cancelled."""
        keep = [(p, self.labels[uid]) for uid, p in self.states.items() if p.state not in _FINAL]
        self.table.setRowCount(0)
        self.rows, self.states, self.labels = {}, {}, {}
        self._cancels = {uid: c for uid, c in self._cancels.items() if any(p.series_uid == uid for p, _ in keep)}
        for p, label in keep:
            self.show_progress(p, label)
        self._update_summary()

    def clear(self) -> None:
        self.table.setRowCount(0)
        self.rows, self.states, self.labels, self._cancels = {}, {}, {}, {}
        self.pause_button.setChecked(False)
        self._update_summary()

    def _on_pause(self, on: bool) -> None:
        self.pause_button.setText("Resume" if on else "Pause")
        emit(self.pause_toggled, on)
        self._update_summary()

    def _update_summary(self) -> None:
        states = [p.state for p in self.states.values()]
        if not states:
            self.summary.setText("No background downloads.")
            return
        active = sum(s in (QUEUED, RUNNING) for s in states)
        mb = sum(p.megabytes for p in self.states.values())
        paused = " (paused)" if self.pause_button.isChecked() else ""
        self.summary.setText(f"{active} of {len(states)} series downloading{paused}, {mb:.1f} MB so far")
