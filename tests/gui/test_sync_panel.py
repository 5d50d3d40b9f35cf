"""The Sync panel in the real main window: the app's worker thread drains the outbox, the panel shows
each item's status, error and next retry, and "Retry now" tries a waiting item at once."""

from __future__ import annotations

import pytest

from tests.integration.orthanc import free_port
from tests.unit.test_sync_outbox import make_dicom
from workstation.sync.outbox import ItemStatus
from workstation.ui.sync_panel import COLUMNS

pytestmark = pytest.mark.shared_data


def _row(panel, uid: str) -> dict[str, str]:
    table = panel.table
    for r in range(table.rowCount()):
        if table.item(r, COLUMNS.index("Instance")).text() == uid:
            return {name: table.item(r, c).text() for c, name in enumerate(COLUMNS)}
    return {}


def test_sync_panel_shows_items_and_retries(qtbot, settings, main_window_factory, tmp_path):
    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / "workstation.toml").write_text(
        f'[[archives]]\nname = "Down"\nkind = "dicomweb"\nurl = "http://127.0.0.1:{free_port()}/dicom-web"\n'
        "timeout = 2\n")
    window = main_window_factory()
    service, panel = window.sync, window.sync_panel
    try:
        assert service.running and window.sync_dock.isHidden()
        window.sync_button.click()
        assert window.sync_dock.isVisible()

        good = service.enqueue(make_dicom(tmp_path / "src", 0), "Local")
        qtbot.waitUntil(lambda: _row(panel, good.sop_instance_uid).get("Status") == "sent", timeout=20000)
        assert window.archive.client("Local").find_series(
            _study_of(good.path)) != []  # really stored in the local archive

        bad = service.enqueue(make_dicom(tmp_path / "src", 1), "Down")
        qtbot.waitUntil(lambda: _row(panel, bad.sop_instance_uid).get("Error", "") != "", timeout=30000)
        row = _row(panel, bad.sop_instance_uid)
        assert row["Status"] in ("queued", "sending") and row["Archive"] == "Down"
        assert "cannot reach" in row["Error"] or "Down" in row["Error"]
        qtbot.waitUntil(lambda: _row(panel, bad.sop_instance_uid)["Next retry"].startswith("in "), timeout=10000)
        assert "waiting" in window.sync_button.text()
        attempts = int(_row(panel, bad.sop_instance_uid)["Attempts"])
        assert panel.retry_button.isEnabled()
        panel.retry_button.click()  # due now: the worker tries again without waiting out the backoff
        qtbot.waitUntil(lambda: int(_row(panel, bad.sop_instance_uid)["Attempts"]) > attempts, timeout=30000)
        statuses = {i.sop_instance_uid: i.status for i in service.items()}
        assert statuses[good.sop_instance_uid] is ItemStatus.SENT
        assert statuses[bad.sop_instance_uid] in (ItemStatus.QUEUED, ItemStatus.SENDING)
    finally:
        service.close()
    assert not service.running


def _study_of(path) -> str:
    from pydicom import dcmread

    return str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)
