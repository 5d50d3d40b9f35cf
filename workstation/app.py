"""Composition root: settings -> local archive -> task runner -> main window.  The only module that wires
the parts together; everything else receives its collaborators."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from workstation.config import Settings, load_settings

_STYLE = Path(__file__).resolve().parents[1] / "resources" / "style.qss"


def shared_data_dir() -> Path | None:
    """``$WORKSTATION_SHARED_DATA``, else ``<repo>/../shared/data`` when it exists."""
    env = os.environ.get("WORKSTATION_SHARED_DATA")
    if env:
        return Path(env) if Path(env).is_dir() else None
    import workstation

    candidate = Path(workstation.__file__).resolve().parents[1].parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def _qt_app():
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Workstation")
    app.setOrganizationName("Workstation")
    if _STYLE.is_file():
        app.setStyleSheet(_STYLE.read_text(encoding="utf-8"))
    return app


def _install_samples_task(archive):
    from workstation.archive.samples import install_samples

    data = shared_data_dir()

    def run(progress, cancel):
        return install_samples(archive, data, progress)

    return run


def build_app(settings: Settings, *, samples: bool, synchronous: bool | None = None):
    """Create (or reuse) the QApplication and a main window on ``settings``; returns (app, window).

    With ``samples`` the bundled sample studies are installed on first run (in the background, with
    progress in the status bar); the browser refreshes when they are in.
    """
    app = _qt_app()
    from workstation.ai.registry import discover
    from workstation.archive.local import LocalArchive
    from workstation.archive.switch import ArchiveSwitch
    from workstation.ui.archives_dialog import archives_editor, remote_factories
    from workstation.ui.main_window import MainWindow
    from workstation.ui.tasks import TaskRunner

    archive = LocalArchive(settings.archive_dir)
    switch = ArchiveSwitch(archive, remote_factories(settings))  # Local + the configured remote archives
    runner = TaskRunner(synchronous=synchronous)
    from workstation.ai.registry import BUILTIN_PLUGINS

    window = MainWindow(switch, runner, plugins=discover((BUILTIN_PLUGINS, *settings.plugin_dirs)))
    window.ai.configure(user=settings.user_name, autorun=settings.ai_autorun,
                        results_dir=settings.home / "ai-results", threads=settings.ai_threads)
    runner.setParent(window)
    window.browser.set_archives_editor(archives_editor(settings, switch, runner))
    from workstation.sync.cli import outbox_dir
    from workstation.sync.service import SyncService
    from workstation.ui.sync_panel import install_sync_panel

    window.sync = sync = SyncService(outbox_dir(settings), switch.client)  # one outbox, one worker thread
    install_sync_panel(window, sync)
    sync.start()
    app.aboutToQuit.connect(sync.close)
    window.destroyed.connect(lambda *_: sync.stop(2.0))
    from workstation.ui.annotation_controller import AnnotationController

    window.annotation = AnnotationController(window, settings.home, annotator=settings.user_name or None)
    window.finish_setup(settings.home / "window-layout.ini")  # docks arranged, last run's layout restored
    if samples:
        def setup(handle) -> None:
            handle.done.connect(window.browser.refresh)

        runner.submit("install samples", _install_samples_task(archive), setup=setup,
                      on_progress=lambda p: window.show_status(p.text or "Installing samples..."),
                      on_failed=lambda msg: window.show_status(f"Samples not installed: {msg}"))
    else:
        window.browser.refresh()
    return app, window


def _no_display_message() -> str | None:
    """Why a window cannot open here, or None.  Qt itself would abort the process with a core dump."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return ("no display to open the workstation window on (DISPLAY is not set). Run it from a desktop "
            "session, or under a virtual one with `xvfb-run -a workstation`; the command line "
            "(`workstation --help`) works without a display.")


def run_gui(settings: Settings | None = None, samples: bool = True) -> int:
    """Start the desktop application; returns the exit code."""
    problem = _no_display_message()
    if problem:
        print(f"workstation: {problem}", file=sys.stderr)
        return 1
    settings = settings or load_settings()
    app, window = build_app(settings, samples=samples)
    window.show()
    return int(app.exec())
