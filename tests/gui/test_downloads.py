"""Per-series background downloads (progress, cancel, pause) and pins, in the browser over the real Orthanc.

A study with three series (copies of 12 head-CT slices each, new UIDs) is uploaded to the session's Orthanc
under a patient ID of its own, so the other tests' studies are untouched.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from tests.gui.conftest import open_first_series
from tests.gui.test_remote_browser import remote_window  # noqa: F401 - the fixture
from tests.integration.orthanc import dicom_files
from tests.shared_data import shared_case
from workstation.archive.prefetch import CANCELLED, DONE, QUEUED, RUNNING
from workstation.ui.study_browser import PIN_MARK

SLICES = 12


@pytest.fixture
def three_series_study(orthanc, tmp_path):
    """(patient ID, study UID, series UIDs) of a new three-series study on Orthanc."""
    patient, study = f"DOWNLOADS-{uuid.uuid4().hex[:8]}", generate_uid()
    files = dicom_files(shared_case("ct-head-ge-tilt") / "dicom")[:SLICES]
    paths, series_uids = [], []
    for n in range(1, 4):
        series = generate_uid()
        series_uids.append(series)
        for f in files:
            ds = dcmread(f)
            ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = patient, study, series
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.SeriesNumber, ds.SeriesDescription = n, f"copy {n}"
            path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    orthanc.server.upload(paths)
    return patient, study, series_uids


def _show_study(window, archive_name: str, patient: str):
    browser = window.browser
    browser.archive_combo.setCurrentText(archive_name)
    browser.form.patient_id.setText(patient)
    browser.refresh()
    assert len(browser.studies) == 1
    browser.table.selectRow(0)
    assert browser.series_list.count() == 3
    return browser


def _cache(browser):
    return browser.archive.client().cache_index


@pytest.mark.parametrize("name", ["Orthanc web", "Orthanc DIMSE"])
def test_background_series_show_progress_and_cancel_per_series(remote_window, three_series_study,  # noqa: F811
                                                                qtbot, name):
    patient, _study, _ = three_series_study
    browser = _show_study(remote_window, name, patient)
    browser.retrievals.concurrency = 1
    panel = browser.downloads
    panel.pause_button.click()  # hold the queue: both background series stay queued until resumed
    assert panel.pause_button.isChecked() and panel.pause_button.text() == "Resume"
    vp = open_first_series(remote_window)  # the opened series loads in the viewport...
    assert vp.volume.shape[0] == SLICES
    opened = vp.volume.info.series_instance_uid
    assert browser.priors.header.text().startswith("No prior studies of ") and patient in browser.priors.header.text()
    others = [s.series_instance_uid for s in browser.series if s.series_instance_uid != opened]
    # its transfer has a row of its own; the other two series wait in the Downloads tab
    assert set(panel.rows) == {opened, *others}
    # (a DIMSE retrieval reports from its association's thread: those reports may land after the load's end)
    qtbot.waitUntil(lambda: panel.cells(opened)[2] == f"{SLICES}/{SLICES}", timeout=10000)
    label, state, count, mb, _rate = panel.cells(opened)
    assert label.endswith("(opened)") and state == DONE and count == f"{SLICES}/{SLICES}" and float(mb) > 1.0
    assert [panel.cells(uid)[1] for uid in others] == [QUEUED, QUEUED]
    assert "(paused)" in panel.summary.text()
    keep, cancel = others
    panel.cancel_button(cancel).click()
    assert panel.cells(cancel)[1] == CANCELLED and not panel.cancel_button(cancel).isEnabled()
    panel.pause_button.click()  # resume
    qtbot.waitUntil(lambda: panel.states[keep].state == DONE, timeout=60000)
    description, state, count, mb, rate = panel.cells(keep)
    assert description.startswith("copy ") and state == DONE and count == f"{SLICES}/{SLICES}"
    assert float(mb) > 1.0 and float(rate) > 0
    assert not panel.cancel_button(keep).isEnabled()
    item = next(browser.series_list.item(i) for i in range(browser.series_list.count())
                if browser.series_list.item(i).data(Qt.ItemDataRole.UserRole) == keep)
    assert f"done: {SLICES}/{SLICES} instances" in item.text()
    assert panel.states[cancel].state == CANCELLED  # a cancelled series is not picked up again
    cache = _cache(browser)
    assert cache.complete_files(keep) is not None and cache.complete_files(cancel) is None
    panel.clear_finished()
    assert panel.table.rowCount() == 0 and panel.summary.text() == "No background downloads."


def test_pin_and_unpin_a_remote_study_from_its_menu(remote_window, three_series_study, qtbot):  # noqa: F811
    patient, study_uid, series_uids = three_series_study
    browser = remote_window.browser
    assert browser.study_menu(browser.studies[0]) is None  # the local archive has no cache to pin in
    browser = _show_study(remote_window, "Orthanc web", patient)
    cached = series_uids[0]
    browser.archive.fetch_series(cached)  # read before: whole in the cache
    study = browser.studies[0]
    menu = browser.study_menu(study)
    assert [a.text() for a in menu.actions()] == ["Keep offline (pin)"]
    menu.actions()[0].trigger()
    cache = _cache(browser)
    assert study_uid in cache.pinned()
    assert browser.table.item(0, 0).text().startswith(PIN_MARK)
    # pinning keeps it offline: every series of the study is retrieved into the cache in the background
    qtbot.waitUntil(lambda: all(browser.downloads.states.get(u) is not None
                                and browser.downloads.states[u].state == DONE for u in series_uids), timeout=60000)
    assert all(cache.complete_files(u) is not None for u in series_uids)
    _label, state, count, mb, rate = browser.downloads.cells(cached)
    assert (state, count, rate) == ("cached", f"{SLICES}/{SLICES}", "") and float(mb) > 1.0  # no transfer to time
    assert [browser.downloads.cells(u)[1] for u in series_uids[1:]] == [DONE, DONE]
    browser.refresh()  # the mark comes from the cache index, not from the widget
    assert browser.table.item(0, 0).text().startswith(PIN_MARK)
    menu = browser.study_menu(browser.studies[0])
    assert [a.text() for a in menu.actions()] == ["Unpin"]
    menu.actions()[0].trigger()
    assert study_uid not in cache.pinned()
    assert not browser.table.item(0, 0).text().startswith(PIN_MARK)


def _double_click_series(browser, uid: str) -> None:
    lst = browser.series_list
    item = next(lst.item(i) for i in range(lst.count()) if lst.item(i).data(Qt.ItemDataRole.UserRole) == uid)
    rect = lst.visualItemRect(item)
    QTest.mouseClick(lst.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
    QTest.mouseDClick(lst.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())


def test_opening_a_series_being_retrieved_waits_for_that_retrieval(remote_window,  # noqa: F811
                                                                    three_series_study, qtbot, monkeypatch):
    """One transfer per series: the load starts after the background retrieval of the same series ended."""
    patient, _study, _ = three_series_study
    browser = _show_study(remote_window, "Orthanc web", patient)
    browser.retrievals.concurrency = 1
    first, second, third = (s.series_instance_uid for s in browser.series)
    client = browser.archive.client()
    real_fetch, gate, events = client.fetch_series, threading.Event(), []

    def held(uid, progress=None, cancel=None, study_instance_uid=None):
        """The real retrieval; the second series' background one waits until the test lets it go."""
        events.append(("start", uid))
        if uid == second and not gate.is_set():
            gate.wait(30)
        try:
            return real_fetch(uid, progress, cancel, study_instance_uid=study_instance_uid)
        finally:
            events.append(("end", uid))

    monkeypatch.setattr(client, "fetch_series", held)
    vp = open_first_series(remote_window)
    assert vp.volume.info.series_instance_uid == first
    panel = browser.downloads
    qtbot.waitUntil(lambda: second in panel.states and panel.states[second].state == RUNNING, timeout=30000)
    assert panel.states[third].state == QUEUED
    _double_click_series(browser, second)  # the reader opens the series being retrieved
    assert vp.volume.info.series_instance_uid == first  # not a second transfer: it waits for the first
    gate.set()
    qtbot.waitUntil(lambda: vp.volume.info.series_instance_uid == second, timeout=60000)
    assert vp.volume.shape[0] == SLICES
    ours = [kind for kind, uid in events if uid == second]
    assert ours == ["start", "end", "start", "end"]  # background retrieval, then the load (from the cache)
    label, state, count, _mb, rate = panel.cells(second)
    assert label.endswith("(opened)") and state == "cached" and count == f"{SLICES}/{SLICES}" and rate == ""
