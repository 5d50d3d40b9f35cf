"""Fixtures for the unit tests of the render layer."""

from __future__ import annotations

import pytest

#: Size of the offscreen window the render tests draw into (width, height).
RENDER_SIZE = (256, 256)


@pytest.fixture
def view():
    """A SliceView in its own offscreen render window: yields (slice view, render window)."""
    from workstation.render import _vtk as vtk
    from workstation.render.offscreen import make_render_window
    from workstation.render.slice_view import SliceView

    rw = make_render_window(RENDER_SIZE)
    ren = vtk.vtkRenderer()
    rw.AddRenderer(ren)
    yield SliceView(ren), rw
    rw.Finalize()
