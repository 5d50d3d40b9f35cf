"""The "Sync" panel: what the outbox holds and where each item stands, plus a status-bar summary.

Per item: status (queued / sending / sent / failed, the words of ``workstation sync status``), the
archive, attempts, the last error and when the next retry is due; "Retry now" makes every waiting or
failed item due at once.  The panel reads the outbox through :class:`~workstation.sync.service.SyncService`
on a timer and when the worker thread reports a pass; it never sends anything itself.
"""

from __future__ import annotations

import datetime as _dt
import time

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMainWindow,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from workstation.sync.outbox import ItemStatus, OutboxItem
from workstation.ui.qt_compat import emit

COLUMNS = ("Status", "Archive", "Instance", "Attempts", "Error", "Next retry")


def next_retry_text(item: OutboxItem, now: float | None = None) -> str:
    """"in 12 s (14:03:07)" for a queued item that waits after a failed try; "" otherwise."""
    now = time.time() if now is None else now
    if item.status is not ItemStatus.QUEUED or item.attempts == 0:
        return ""
    wait = item.next_attempt_at - now
    at = _dt.datetime.fromtimestamp(item.next_attempt_at).strftime("%H:%M:%S")
    return f"in {wait:.0f} s ({at})" if wait > 0.5 else "now"


def summary_text(counts: dict[str, int]) -> str:
    waiting = counts.get("queued", 0) + counts.get("sending", 0)
    parts = [f"{waiting} waiting"] if waiting else []
    if counts.get("failed"):
        parts.append(f"{counts['failed']} failed")
    return "Sync: " + (", ".join(parts) if parts else "all sent")


class _Bridge(QObject):
    changed = Signal()


class SyncPanel(QWidget):
    """The outbox as a table, refreshed every ``interval_ms`` and after each pass of the worker."""

    refreshed = Signal()  # after every refresh: the status-bar button follows at once, not a timer tick later

    def __init__(self, service, parent: QWidget | None = None, interval_ms: int = 1000) -> None:
        super().__init__(parent)
        self.service = service
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.summary = QLabel()
        self.retry_button = QPushButton("Retry now")
        self.retry_button.setToolTip("Try every waiting and failed item again now")
        self.retry_button.clicked.connect(self.retry_now)
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.retry_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table)
        self._bridge = _Bridge(self)
        self._bridge.changed.connect(self.refresh)  # queued: the worker thread emits
        self._listener = lambda: emit(self._bridge.changed)
        service.listeners.append(self._listener)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.refresh)
        self.timer.start(interval_ms)
        self.destroyed.connect(self._detach)
        self.refresh()

    def _detach(self, *_args) -> None:
        if self._listener in self.service.listeners:
            self.service.listeners.remove(self._listener)

    def retry_now(self) -> None:
        self.service.retry_now()
        self.refresh()

    def refresh(self) -> None:
        items = self.service.items()
        counts = {s.value: 0 for s in ItemStatus}
        for item in items:
            counts[item.status.value] += 1
        self.summary.setText(summary_text(counts))
        emit(self.refreshed)
        self.retry_button.setEnabled(counts["queued"] + counts["failed"] > 0)
        self.table.setRowCount(len(items))
        now = time.time()
        for row, item in enumerate(items):
            error = item.last_error if item.status is not ItemStatus.SENT else ""
            cells = (item.status.value, item.archive, item.sop_instance_uid, str(item.attempts), error,
                     next_retry_text(item, now))
            for col, text in enumerate(cells):
                cell = self.table.item(row, col)
                if cell is None:
                    cell = QTableWidgetItem()
                    self.table.setItem(row, col, cell)
                if cell.text() != text:
                    cell.setText(text)
                    cell.setToolTip(text if col in (2, 4) else "")


class SyncStatusButton(QToolButton):
    """The status-bar summary ("Sync: 2 waiting, 1 failed"); a click shows or hides the panel's dock."""

    def __init__(self, panel: SyncPanel, dock: QDockWidget) -> None:
        super().__init__()
        self.setAutoRaise(True)
        self.panel, self.dock = panel, dock
        self.clicked.connect(lambda: dock.setVisible(not dock.isVisible()))
        panel.refreshed.connect(self._update)
        panel.summary.setText(panel.summary.text())
        self._update()

    def _update(self) -> None:
        self.setText(self.panel.summary.text())


def install_sync_panel(window: QMainWindow, service) -> SyncPanel:
    """Add the Sync dock (hidden until asked for) and its status-bar button to ``window``."""
    panel = SyncPanel(service)
    dock = QDockWidget("Sync", window)
    dock.setObjectName("sync_dock")
    dock.setWidget(panel)
    window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    dock.hide()
    button = SyncStatusButton(panel, dock)
    button.setObjectName("sync_status_button")
    window.statusBar().addPermanentWidget(button)
    window.sync_panel, window.sync_dock, window.sync_button = panel, dock, button
    return panel
