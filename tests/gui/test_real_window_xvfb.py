"""Drive the real-window check from the main suite: a child pytest under ``xvfb-run`` on a real X server.

The child runs ``tests/gui/test_real_window.py`` with the xcb platform, so the viewports are real
QVTKRenderWindowInteractor windows, takes screenshots, and checks they are not blank. Running it in a
child keeps DISPLAY away from this (offscreen) process, where it would make VTK abort.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_real_window_under_xvfb(tmp_path):
    xvfb_run = shutil.which("xvfb-run")
    if xvfb_run is None:
        reason = "xvfb-run is not installed (Debian package xvfb)"
        if os.environ.get("WORKSTATION_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(WORKSTATION_REAL_WINDOW="1", QT_QPA_PLATFORM="xcb", WORKSTATION_SCREENSHOT_DIR=str(tmp_path))
    result = subprocess.run(
        [xvfb_run, "-a", "-s", "-screen 0 1600x1000x24", sys.executable, "-m", "pytest",
         "tests/gui/test_real_window.py", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert " passed" in output and "skipped" not in output.splitlines()[-1], output[-2000:]
    shots = sorted(tmp_path.glob("*.png"))
    assert shots, "the real-window run saved no screenshot"
