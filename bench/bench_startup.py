"""Start-up time to a shown window: the workstation against an empty PySide6 QMainWindow, fresh processes."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, print_table

EMPTY = """
import sys, time
from PySide6.QtWidgets import QApplication, QMainWindow
from PySide6.QtCore import QTimer
app = QApplication(sys.argv)
w = QMainWindow(); w.resize(1400, 900); w.show()
QTimer.singleShot(0, app.quit)
app.exec()
"""

WORKSTATION = """
import sys
from PySide6.QtCore import QTimer
from workstation.config import load_settings
from workstation.app import build_app
app, window = build_app(load_settings(), samples=False)
window.show()
QTimer.singleShot(0, app.quit)
app.exec()
"""

REPEATS = 5


def _time(code: str, env: dict[str, str]) -> float:
    times = []
    for _ in range(REPEATS + 1):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=env, cwd=ROOT)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
               "WORKSTATION_HOME": home}
        empty = _time(EMPTY, env)
        try:
            ws = _time(WORKSTATION, env)
        except subprocess.CalledProcessError as exc:
            print(f"workstation start-up failed: {exc.stderr.decode()[-600:]}")
            return
    print_table("Start-up to a shown window (process start to first event-loop turn, median of 5)",
                ["program", "ms", "ratio to empty Qt window"],
                [["empty PySide6 QMainWindow", empty * 1000, 1.0], ["workstation (empty archive)", ws * 1000, ws / empty]])


if __name__ == "__main__":
    main()
