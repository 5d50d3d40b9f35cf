"""Series thumbnails in the study browser over the real Orthanc: DICOMweb renders them on the server (WADO-RS
rendered), so nothing is retrieved into the cache; DIMSE cannot render, so it shows none rather than download."""

from __future__ import annotations

from pathlib import Path

from tests.gui.test_remote_browser import LIDC_PATIENT_ID, remote_window  # noqa: F401 - the fixture


def _cached_files(settings) -> list[Path]:
    root = settings.instance_cache_dir
    return [p for p in root.rglob("*") if p.is_file() and p.suffix == ".dcm"] if root.exists() else []


def _select_lidc(browser, name: str) -> str:
    browser.thumbnails.clear()  # the same series is in the local archive, whose thumbnail the browser made
    browser.archive_combo.setCurrentText(name)
    row = next(i for i, s in enumerate(browser.studies) if s.patient_id == LIDC_PATIENT_ID)
    browser.table.selectRow(row)
    assert browser.series_list.count() == 1
    return browser.series[0].series_instance_uid


def test_dicomweb_series_get_rendered_thumbnails_without_a_download(remote_window, settings, qtbot):  # noqa: F811
    browser = remote_window.browser
    uid = _select_lidc(browser, "Orthanc web")
    qtbot.waitUntil(lambda: uid in browser.thumbnails, timeout=30000)
    pixmap = browser.thumbnails[uid]
    assert not pixmap.isNull() and max(pixmap.width(), pixmap.height()) <= 96 and min(pixmap.width(),
                                                                                      pixmap.height()) > 16
    image = pixmap.toImage()
    grays = {image.pixelColor(x, y).value() for x in range(0, image.width(), 4) for y in range(0, image.height(), 4)}
    assert len(grays) > 20  # a CT slice, not a blank square
    assert not browser.series_list.item(0).icon().isNull()
    assert _cached_files(settings) == []  # rendered by the server: the series was not retrieved


def test_dimse_series_show_no_thumbnail_and_download_nothing(remote_window, settings):  # noqa: F811
    browser = remote_window.browser
    uid = _select_lidc(browser, "Orthanc DIMSE")
    assert uid not in browser.thumbnails and browser.series_list.item(0).icon().isNull()
    assert _cached_files(settings) == []
