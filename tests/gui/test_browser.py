"""Study browser: import with a broken file, search, delete, background loading."""

from __future__ import annotations

import shutil

import pytest

from tests.gui.conftest import LIDC
from tests.shared_data import shared_case

pytestmark = pytest.mark.shared_data


def test_import_folder_with_broken_file_reports_reason(main_window, tmp_path, qtbot):
    src = shared_case(LIDC)
    folder = tmp_path / "incoming"
    folder.mkdir()
    for f in sorted(p for p in (src / "dicom").rglob("*") if p.is_file())[:3]:
        shutil.copy(f, folder / f.name)
    (folder / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage")
    flow = main_window.browser.import_flow
    flow.start([folder])
    report = flow.last_report
    assert report is not None
    assert len(report.duplicates) == 3  # already in the archive
    dialog = flow.last_dialog
    assert dialog is not None and dialog.isVisible()
    skipped = {s.path.split("/")[-1]: s.reason for s in report.skipped}
    assert "broken.dcm" in skipped
    assert any(r == skipped["broken.dcm"] for r in dialog.reasons())
    assert skipped["broken.dcm"].strip()
    dialog.accept()


def test_search_by_patient_id_and_modality(main_window):
    b = main_window.browser
    b.form.patient_id.setText("NOPE*")
    b.refresh()
    assert b.studies == []
    b.form.patient_id.setText("LIDC*")
    b.form.modality.setCurrentText("CT")
    b.refresh()
    assert len(b.studies) == 1
    assert b.table.item(0, 4).text() == "LIDC-IDRI-0001"


def test_delete_study_asks_first(main_window, monkeypatch):
    b = main_window.browser
    b.table.selectRow(0)
    monkeypatch.setattr(b, "confirm", lambda title, text: False)
    b.delete_selected_study()
    assert len(b.studies) == 1
    monkeypatch.setattr(b, "confirm", lambda title, text: True)
    b.delete_selected_study()
    assert b.studies == []
    assert b.series_list.count() == 0


def test_background_loading_streams_and_keeps_gui_alive(main_window, qtbot):
    """With real threads: the first slice shows before the load finishes, progress shows, then it's done."""
    main_window.runner.synchronous = False
    ticks = []
    from PySide6.QtCore import QTimer

    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    vp = main_window.viewer.active_slice_viewport()
    seen_partial = []
    vp._partial.arrived.connect(lambda v: seen_partial.append(v))
    ref = main_window.browser.series[0]
    handle = main_window.open_series(ref)
    assert vp.loading and vp.progress.isVisible() is not None
    qtbot.waitUntil(lambda: handle.is_done, timeout=30000)
    timer.stop()
    assert handle.error is None
    assert seen_partial, "the partial volume never reached the viewport"
    assert vp.volume.shape == (133, 512, 512)
    assert not vp.loading
    assert ticks, "event loop did not run while loading"
    assert vp.capture().std() > 20


def test_drop_folder_on_window_imports(main_window, tmp_path):
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    folder = tmp_path / "dropped"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder))])
    ev = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                    Qt.KeyboardModifier.NoModifier)
    main_window.dropEvent(ev)
    report = main_window.browser.import_flow.last_report
    assert report is not None and [s.path.endswith("notes.txt") for s in report.skipped] == [True]


def test_shared_data_dir_from_environment(tmp_path, monkeypatch):
    from workstation.app import shared_data_dir

    monkeypatch.setenv("WORKSTATION_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    monkeypatch.setenv("WORKSTATION_SHARED_DATA", str(tmp_path / "missing"))
    assert shared_data_dir() is None


def test_long_names_and_descriptions_leave_the_counts_in_view(main_window, qtbot):
    """A long description or patient name is cut with "..." (whole in its tooltip), never pushing the series
    and image counts out of the table."""
    from workstation.model.refs import StudyRef

    main_window.resize(1600, 900)  # the smallest screen a reading room has
    main_window.show()
    qtbot.waitExposed(main_window)
    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()
    browser = main_window.browser
    long_name = "VERYLONGFAMILYNAME-" * 6 + "^GIVEN"
    description = "CT CHEST ABDOMEN PELVIS WITH CONTRAST, ARTERIAL AND PORTAL VENOUS PHASES, " * 3
    browser._show_studies([StudyRef("1.2.3", patient_name=long_name, patient_id="ID-" + "9" * 60,
                                    study_date="20260101", study_description=description, modalities=("CT",),
                                    number_of_series=12, number_of_instances=4321)])
    t = browser.table
    browser.setFixedWidth(900)  # the browser widened by its user (it is a side panel)
    QApplication.processEvents()
    viewport = t.viewport().width()
    assert viewport > 800
    for col in (6, 7):  # series, images
        assert t.columnViewportPosition(col) + t.columnWidth(col) <= viewport
    assert t.item(0, 3).toolTip() == description and long_name.split("^")[0] in t.item(0, 0).toolTip()
    assert t.columnWidth(0) <= 200 and t.columnWidth(4) <= 200
