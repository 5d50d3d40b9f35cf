"""Offscreen render windows, pixel capture and the one-shot ``render_to_png`` used by the CLI.

``render_to_png`` goes through the same :class:`SliceView` / :class:`VolumeView` the window uses, so a
picture from the command line is the picture on screen.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from workstation.render import _vtk as vtk
from vtkmodules.util import numpy_support

from workstation.model.volume import Photometric, Volume

_SOFTWARE_GL = ("llvmpipe", "softpipe", "swiftshader", "software rasterizer", "gdi generic")


def make_render_window(size: tuple[int, int] = (512, 512), offscreen: bool = True) -> vtk.vtkRenderWindow:
    """A render window of ``size`` (w, h); offscreen ones render without a display (EGL/OSMesa)."""
    rw = _headless_window() if offscreen else None
    rw = rw or vtk.vtkRenderWindow()
    if offscreen:
        rw.SetOffScreenRendering(1)
    rw.SetSize(int(size[0]), int(size[1]))
    rw.SetMultiSamples(0)  # no MSAA: costs time on software GL and blurs pixel-exact tests
    return rw


def _headless_window() -> vtk.vtkRenderWindow | None:
    """An EGL window on a Linux machine with no X display.

    VTK's default factory tries X first and prints 'bad X server connection' before falling back, which
    is noise in the CLI and in test logs; asking for EGL directly skips that.
    """
    if not sys.platform.startswith("linux") or os.environ.get("DISPLAY"):
        return None
    try:
        from vtkmodules.vtkRenderingOpenGL2 import vtkEGLRenderWindow
    except ImportError:
        return None
    return vtkEGLRenderWindow()


def gl_renderer_string(render_window: vtk.vtkRenderWindow) -> str:
    """The OpenGL renderer string (e.g. "llvmpipe (LLVM 15...)"); initialises the context if needed."""
    if not render_window.GetRenderers().GetNumberOfItems():
        render_window.AddRenderer(vtk.vtkRenderer())
    if render_window.GetNeverRendered():
        render_window.Render()  # the GL context exists only after a first render
    for line in (render_window.ReportCapabilities() or "").splitlines():
        if "renderer string" in line.lower():
            return line.split(":", 1)[1].strip()
    return ""


def is_software_gl(render_window: vtk.vtkRenderWindow) -> bool:
    """True on CPU OpenGL (Mesa llvmpipe/softpipe, SwiftShader, Windows GDI), where CPU ray casting wins."""
    name = gl_renderer_string(render_window).lower()
    return any(s in name for s in _SOFTWARE_GL)


def capture(render_window: vtk.vtkRenderWindow, render: bool = True) -> np.ndarray:
    """Grab the window as an (H, W, 3) uint8 array, top row first (like a PNG).

    With ``render`` the window renders first; without, the pixels of its last render are read as they are
    (a widget painting its own frame must not trigger another render from inside its paint event).
    """
    if render:
        render_window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(render_window)
    grab.SetInputBufferTypeToRGB()
    grab.ReadFrontBufferOff()
    grab.SetShouldRerender(int(render))
    grab.Update()
    img = grab.GetOutput()
    w, h, _ = img.GetDimensions()
    arr = numpy_support.vtk_to_numpy(img.GetPointData().GetScalars()).reshape(h, w, -1)[:, :, :3]
    return np.ascontiguousarray(arr[::-1])  # VTK rows start at the bottom


def save_png(pixels: np.ndarray, out: Path) -> Path:
    """Write an (H, W, 3) uint8 array (top row first) as PNG."""
    h, w, _ = pixels.shape
    img = vtk.vtkImageData()
    img.SetDimensions(w, h, 1)
    arr = numpy_support.numpy_to_vtk(np.ascontiguousarray(pixels[::-1]).reshape(-1, 3), deep=True)
    img.GetPointData().SetScalars(arr)
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(out))
    writer.SetInputData(img)
    writer.Write()
    return out


def render_to_png(
    volume: Volume,
    view: str,
    out: Path,
    *,
    position_mm=None,
    preset: str | None = None,
    size: tuple[int, int] = (512, 512),
) -> Path:
    """Render one view of ``volume`` to a PNG file and return its path.

    ``view`` is 'axial', 'coronal', 'sagittal' or '3d'.  For slice views ``preset`` names a window preset
    (or "auto"), ``position_mm`` an LPS point the plane passes through (default: the volume centre).  For
    '3d' ``preset`` names a volume-rendering preset.
    """
    from workstation.render.presets import resolve_window
    from workstation.render.slice_view import Orientation, SliceView
    from workstation.render.volume_view import VolumeView

    out = Path(out)
    rw = make_render_window(size)
    ren = vtk.vtkRenderer()
    rw.AddRenderer(ren)
    view = view.lower()
    if view == "3d":
        vv = VolumeView(ren)
        vv.set_volume(volume)
        if preset:
            vv.set_preset(preset)
    elif view in ("axial", "coronal", "sagittal"):
        sv = SliceView(ren)
        sv.set_volume(volume)
        sv.set_orientation(Orientation[view.upper()])
        if position_mm is not None:
            sv.set_position_mm(np.asarray(position_mm, float))
        sv.set_window(resolve_window(volume, preset))
        sv.set_invert(volume.info.photometric is Photometric.MONOCHROME1)
        sv.fit()
    else:
        raise ValueError(f"view must be axial, coronal, sagittal or 3d, got {view!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_png(capture(rw), out)
