"""GUI test fixtures: Qt offscreen, synchronous tasks, a main window on a temporary home with LIDC imported."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any Qt import

import shutil
from pathlib import Path

import pytest

from tests.shared_data import shared_case

LIDC = "ct-chest-lidc-0001"


def _link_tree(src: Path, dst: Path) -> None:
    """Copy an archive folder cheaply: hard links for the (immutable) instance files, copies for the index."""

    def copy(s, d):
        if Path(s).suffix.startswith(".sqlite") or "index" in Path(s).name:
            return shutil.copy2(s, d)
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)
        return d

    shutil.copytree(src, dst, copy_function=copy)


@pytest.fixture(scope="session")
def lidc_archive_dir(tmp_path_factory) -> Path:
    """An archive folder with the LIDC chest CT imported once per test session."""
    from workstation.archive.local import LocalArchive

    case = shared_case(LIDC)
    root = tmp_path_factory.mktemp("template") / "archive"
    archive = LocalArchive(root)
    report = archive.import_paths([case])
    archive.close()
    assert report.imported, report.skipped
    return root


@pytest.fixture
def settings(tmp_path, monkeypatch):
    from workstation.config import load_settings

    monkeypatch.setenv("WORKSTATION_HOME", str(tmp_path / "home"))
    return load_settings()


@pytest.fixture
def main_window_factory(qtbot, settings, lidc_archive_dir):
    """Builds the application's main window (tasks synchronous, LIDC in the local archive, browser filled)
    from the settings file as it is when called; closes it after the test."""
    from workstation.app import build_app
    from workstation.config import load_settings

    windows = []

    def make():
        _link_tree(lidc_archive_dir, settings.archive_dir)
        _app, window = build_app(load_settings({"WORKSTATION_HOME": str(settings.home)}), samples=False,
                                 synchronous=True)
        qtbot.addWidget(window)
        window.resize(1200, 800)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.browser._stop_prefetch()
        window.runner.cancel_all()
        window.runner.wait(10000)
        window.close()  # finalizes the VTK windows while every object is alive
        window.archive.close()


@pytest.fixture
def main_window(main_window_factory):
    """The application's main window, tasks synchronous, LIDC in the archive, browser filled."""
    return main_window_factory()


def open_first_series(window):
    """Double-click the first series in the browser; returns the active viewport."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    lst = window.browser.series_list
    assert lst.count() >= 1
    rect = lst.visualItemRect(lst.item(0))
    # Qt 6 item views only take a double-click that follows a press on the same item.
    QTest.mouseClick(lst.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
    QTest.mouseDClick(lst.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())
    vp = window.viewer.active_slice_viewport()
    assert vp.volume is not None, "double-click did not load the series"
    vp.render_now()
    return vp
