"""Brush latency on LIDC 0001 (133 x 512 x 512 CT): mouse event to rendered frame, through the real
viewport (Qt offscreen, SliceViewport 512 x 512, the annotation session and label overlay).

Each sample is one mouse move of a stroke: the Qt event goes through the canvas handler and the viewport's
tools to the annotation session, which paints the dabs since the last position and marks the overlay
modified; the frame is then rendered and read back (glFinish included).  The peer is the same viewport
redrawing with no edit (a plain frame), so the ratio shows what painting adds.  Goal: under 16 ms.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import case_dir, print_table  # noqa: E402

MOVES = 120
GOAL_MS = 16.0


def _stats(ms: list[float]) -> tuple[float, float]:
    return statistics.median(ms), float(np.percentile(ms, 95))


def _volume(folder: Path):
    from workstation.dicom.series import load_series

    return load_series(sorted(p for p in folder.rglob("*") if p.is_file()))[0]


def main() -> int:
    folder = case_dir("ct-chest-lidc-0001")
    if folder is None:
        print("bench_annotate: shared data ct-chest-lidc-0001 is missing; skipped")
        return 0
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from workstation.labels.schema import Tool, load_schema
    from workstation.model.annotation import Annotation
    from workstation.ui.annotation_tools import AnnotationOverlay, AnnotationSession
    from workstation.ui.tools import Tool as ViewTool
    from workstation.ui.viewport import SliceViewport

    app = QApplication.instance() or QApplication([])
    volume = _volume(folder)
    vp = SliceViewport()
    vp.resize(512 + vp.scrollbar.sizeHint().width() + 4, 512 + 4)
    vp.show()
    app.processEvents()
    vp.set_volume(volume)
    segments = load_schema("lung-nodule").model_segments()
    doc = Annotation(np.zeros(volume.shape, np.uint8), volume.affine, segments, study_uid="bench",
                     series_uid=volume.info.series_instance_uid or "bench", annotator="bench")
    overlay = AnnotationOverlay(vp.view)
    overlay.show(doc)
    session = AnnotationSession(doc, volume, lambda box: overlay.changed() if box is not None else None)
    vp.tools.annotator = session
    vp.set_tool(ViewTool.ANNOTATE)
    vp.render_now()
    w, h = vp.canvas.display_size()
    path = [QPoint(int(w * (0.25 + 0.5 * t)), int(h * (0.5 + 0.15 * np.sin(6 * t)))) for t in np.linspace(0, 1, MOVES)]
    rows = []
    plain = []
    for _ in range(MOVES):
        t0 = time.perf_counter()
        overlay.changed()  # the same upload the brush causes, without an edit
        vp.render_now()
        plain.append((time.perf_counter() - t0) * 1000.0)
    base = _stats(plain)[0]
    rows.append(["plain frame (no edit)", f"{w}x{h}", *_stats(plain), 1.0])
    cases = [("brush 3 mm disc", Tool.BRUSH, 3.0, False), ("brush 10 mm disc", Tool.BRUSH, 10.0, False),
             ("threshold brush 10 mm", Tool.HU_BRUSH, 10.0, False), ("brush 5 mm sphere (3D)", Tool.BRUSH, 5.0, True),
             ("eraser 10 mm", Tool.ERASER, 10.0, False)]
    for title, tool, radius, sphere in cases:
        session.tool, session.radius_mm, session.sphere = tool, radius, sphere
        ms = []
        QTest.mousePress(vp.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, path[0])
        for p in path[1:]:
            t0 = time.perf_counter()
            QTest.mouseMove(vp.canvas, p)
            vp.render_now()
            ms.append((time.perf_counter() - t0) * 1000.0)
        QTest.mouseRelease(vp.canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, path[-1])
        med, p95 = _stats(ms)
        rows.append([title, f"{w}x{h}", med, p95, med / base])
    from workstation.render.offscreen import gl_renderer_string

    print_table(f"Brush stroke: mouse move -> rendered frame, LIDC 0001 axial, {MOVES} moves "
                f"(goal < {GOAL_MS:g} ms; GL: {gl_renderer_string(vp.canvas.render_window)})",
                ["case", "viewport", "median ms", "p95 ms", "x plain frame"], rows)
    print(f"\nundo history: {len(doc.undo_stack)} strokes, {doc.undo_stack.nbytes / 2**20:.1f} MiB")
    vp.canvas.close_canvas()
    return 0


if __name__ == "__main__":
    main()
