"""Rendering speed on LIDC 0001 (133 x 512 x 512 CT), offscreen at 512 x 512.

* 2D: SliceView scrolling 100 slices (axial; coronal; axial 10 mm MIP slab), ms per frame, median and p95.
* Oblique MPR: one oblique plane re-cut and drawn per frame while it turns 1 degree a frame.
* 3D: VolumeView first frame (set_volume + render) and steady frames while orbiting, full and interactive
  quality, with the CPU ray caster and the GPU ray caster side by side (the peer comparison: on software
  OpenGL the GPU mapper runs its shaders on the CPU).

Every frame ends with glFinish (``WaitForCompletion``) so the time is the real drawing time.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import vtk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import case_dir, print_table  # noqa: E402

from workstation.render.mpr import rotation_about  # noqa: E402
from workstation.render.offscreen import gl_renderer_string, make_render_window  # noqa: E402
from workstation.render.presets import WINDOW_PRESETS  # noqa: E402
from workstation.render.slice_view import Orientation, SlabMode, SliceView  # noqa: E402
from workstation.render.volume_view import VolumeView  # noqa: E402

SIZE = (512, 512)


def load_lidc(folder: Path):
    """The project loader when it has landed, else SimpleITK (same geometry)."""
    try:
        from workstation.dicom.series import load_series

        return load_series(sorted(p for p in folder.rglob("*") if p.is_file()))[0], "workstation.dicom"
    except ImportError:
        sys.path.insert(0, str(ROOT / "tests" / "unit"))
        from _render_phantoms import load_real

        return load_real(folder), "SimpleITK"


def _frame(rw) -> float:
    t0 = time.perf_counter()
    rw.Render()
    rw.WaitForCompletion()
    return (time.perf_counter() - t0) * 1000.0


def _stats(ms: list[float]) -> tuple[float, float]:
    return statistics.median(ms), float(np.percentile(ms, 95))


def _slice_setup(volume):
    rw = make_render_window(SIZE)
    ren = vtk.vtkRenderer()
    rw.AddRenderer(ren)
    sv = SliceView(ren)
    sv.set_volume(volume)
    sv.set_window(WINDOW_PRESETS["lung"])
    return rw, sv


def bench_scroll(volume, orientation: Orientation, slab: float = 0.0) -> tuple[float, float]:
    rw, sv = _slice_setup(volume)
    sv.set_orientation(orientation)
    sv.set_crosshair(volume.center_lps())
    if slab:
        sv.set_slab(slab, SlabMode.MIP)
    sv.scroll(-sv.slice_count())
    step = max(1, sv.slice_count() // 100) if sv.slice_count() > 100 else 1
    _frame(rw)
    ms = []
    for n in range(100):
        sv.scroll(step if sv.slice_index() + step < sv.slice_count() else -n)
        ms.append(_frame(rw))
    rw.Finalize()
    return _stats(ms)


def bench_oblique(volume) -> tuple[float, float]:
    rw, sv = _slice_setup(volume)
    sv.set_orientation(Orientation.CORONAL)
    _frame(rw)
    ms = []
    for n in range(60):
        sv.set_oblique(rotation_about([0, 0, 1], n + 1) @ rotation_about([1, 0, 0], 15))
        ms.append(_frame(rw))
    rw.Finalize()
    return _stats(ms)


def bench_3d(volume, kind: str, frames: int) -> dict:
    rw = make_render_window(SIZE)
    ren = vtk.vtkRenderer()
    rw.AddRenderer(ren)
    vv = VolumeView(ren, mapper_kind=kind)
    t0 = time.perf_counter()
    vv.set_volume(volume)
    first = (time.perf_counter() - t0) * 1000.0 + _frame(rw)
    out = {"first": first}
    for interactive in (False, True):
        vv.set_interactive(interactive)
        _frame(rw)
        ms = []
        for _ in range(frames):
            vv.rotate(10, 0)
            ms.append(_frame(rw))
        out["interactive" if interactive else "steady"] = _stats(ms)
    rw.Finalize()
    return out


def main() -> None:
    folder = case_dir("ct-chest-lidc-0001")
    if folder is None:
        print("bench_render: ../shared/data/ct-chest-lidc-0001 missing, skipped")
        return
    volume, loader = load_lidc(folder)
    probe = make_render_window((16, 16))
    gl = gl_renderer_string(probe)
    probe.Finalize()
    print(f"LIDC 0001 {volume.shape} loaded by {loader}; OpenGL: {gl}; viewport {SIZE[0]}x{SIZE[1]}")
    rows = []
    for label, o, slab in (
        ("axial scroll, 100 slices", Orientation.AXIAL, 0.0),
        ("coronal scroll, 100 slices", Orientation.CORONAL, 0.0),
        ("axial scroll, 10 mm MIP slab", Orientation.AXIAL, 10.0),
    ):
        med, p95 = bench_scroll(volume, o, slab)
        rows.append([label, med, p95])
    med, p95 = bench_oblique(volume)
    rows.append(["oblique MPR turning 1 deg/frame", med, p95])
    print_table("2D slice views (SliceView, vtkImageResliceMapper), ms/frame", ["case", "median", "p95"], rows)

    rows = []
    for kind, frames in (("cpu-raycast", 10), ("gpu-raycast", 5)):
        r = bench_3d(volume, kind, frames)
        rows.append([kind, r["first"], r["steady"][0], r["steady"][1], r["interactive"][0]])
    print_table(
        "3D volume rendering (VolumeView, ct-bone), ms/frame at 512x512",
        ["mapper", "first frame", "steady median", "steady p95", "interactive median"],
        rows,
    )


if __name__ == "__main__":
    main()
