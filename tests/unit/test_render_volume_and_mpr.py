"""Offscreen rendering, the 3D view, the linked MPR, presets, the bridge and real-data checks."""

from __future__ import annotations

import numpy as np
import pytest
import vtk

from tests.shared_data import shared_case
from workstation.model.volume import Window
from workstation.render.bridge import volume_to_vtk
from workstation.render.mpr import MprController, rotation_about
from workstation.render.offscreen import capture, is_software_gl, make_render_window, render_to_png
from workstation.render.presets import VOLUME_PRESETS, WINDOW_PRESETS, resolve_window, scaled_volume_preset
from workstation.render.slice_view import Orientation, SliceView
from workstation.render.volume_view import VolumeView

from ._render_phantoms import blank, load_real, rotation_z, with_spheres


@pytest.fixture(scope="module")
def phantom():
    vol = blank(shape=(40, 48, 56), spacing=(1.0, 1.2, 2.0), rotation=rotation_z(20))
    return with_spheres(vol, [vol.center_lps(), vol.center_lps() + [8, -6, 12]], 7.0)


@pytest.mark.parametrize("view", ["axial", "coronal", "sagittal", "3d"])
def test_render_to_png_not_blank(tmp_path, phantom, view):
    out = render_to_png(phantom, view, tmp_path / f"{view}.png", size=(128, 96), preset="bone" if view != "3d" else None)
    assert out.stat().st_size > 200
    reader = vtk.vtkPNGReader()
    reader.SetFileName(str(out))
    reader.Update()
    assert reader.GetOutput().GetDimensions()[:2] == (128, 96)
    assert reader.GetOutput().GetScalarRange()[1] > 100


def test_bridge_places_voxels_in_lps(phantom):
    img = volume_to_vtk(phantom)
    ijk = np.array([3.0, 5.0, 7.0])
    world = [0.0, 0.0, 0.0]
    img.TransformContinuousIndexToPhysicalPoint(ijk, world)
    assert np.allclose(world, phantom.index_to_lps(ijk))
    assert img.GetPointData().GetScalars().GetValue(0) == phantom.voxels[0, 0, 0]


def test_volume_view_camera_and_mapper(phantom):
    rw = make_render_window((96, 96))
    ren = vtk.vtkRenderer()
    rw.AddRenderer(ren)
    vv = VolumeView(ren)
    vv.set_volume(phantom)
    assert vv.mapper_kind == ("cpu-raycast" if is_software_gl(rw) else "gpu-raycast")
    cam = ren.GetActiveCamera()
    assert np.allclose(cam.GetDirectionOfProjection(), [0, 1, 0], atol=1e-6)
    assert np.allclose(cam.GetViewUp(), [0, 0, 1], atol=1e-6)
    assert set(vv.preset_names()) == {"ct-bone", "ct-soft-tissue", "ct-lung", "ct-angio", "mr-default"}
    vv.set_preset("ct-soft-tissue")
    vv.set_interactive(True)
    vv.rotate(30, 10)
    vv.zoom(1.2)
    assert capture(rw).max() > 50
    vv.set_interactive(False)
    vv.reset_camera()
    assert np.allclose(cam.GetDirectionOfProjection(), [0, 1, 0], atol=1e-6)
    with pytest.raises(ValueError):
        vv.set_preset("nope")


def test_presets_as_data(phantom):
    assert WINDOW_PRESETS["lung"] == Window(-600, 1500)
    assert resolve_window(phantom, "auto") == phantom.auto_window()
    with pytest.raises(ValueError):
        resolve_window(phantom, "nope")
    mr = scaled_volume_preset(phantom, "mr-default")
    assert not mr.relative and mr.opacities[0][0] < mr.opacities[-1][0]
    for p in VOLUME_PRESETS.values():
        values = [c[0] for c in p.colors]
        assert values == sorted(values)


def _mpr():
    rw = make_render_window((300, 100))
    views = []
    for n in range(3):
        ren = vtk.vtkRenderer()
        ren.SetViewport(n / 3, 0, (n + 1) / 3, 1)
        rw.AddRenderer(ren)
        views.append(SliceView(ren))
    return rw, MprController(*views)


def test_mpr_linked_point_and_rotation(phantom):
    rw, mpr = _mpr()
    mpr.set_volume(phantom)
    p = phantom.center_lps() + [5.0, -3.0, 4.0]
    mpr.set_point(p)
    for o, v in mpr.views.items():
        assert abs((v.position_mm - p) @ v.normal) < 1e-9
    ax = mpr.views[Orientation.AXIAL]
    # a click in the axial view maps back to the point (viewports are side by side)
    assert np.allclose(ax.display_to_lps(*ax.lps_to_display(p)), p)
    assert ax.value_at_display(*ax.lps_to_display(phantom.center_lps())) == 1000
    cor = mpr.views[Orientation.CORONAL]
    # the phantom's grid is turned 20 degrees about z: the planes are the grid's own
    grid_coronal = rotation_about([0, 0, 1], 20) @ [0, 1, 0]
    assert np.allclose(cor.normal, grid_coronal)
    mpr.rotate(Orientation.AXIAL, 30)
    assert np.allclose(ax.normal, [0, 0, 1])
    assert np.allclose(cor.normal, rotation_about([0, 0, 1], 30) @ grid_coronal)
    for v in mpr.views.values():
        assert abs((v.position_mm - p) @ v.normal) < 1e-9
    assert capture(rw).max() > 100
    mpr.reset_rotation()
    assert np.allclose(cor.normal, grid_coronal)


def test_lidc_real_ct():
    vol = load_real(shared_case("ct-chest-lidc-0001") / "dicom")
    assert vol.shape == (133, 512, 512)
    rw = make_render_window((256, 256))
    ren = vtk.vtkRenderer()
    rw.AddRenderer(ren)
    sv = SliceView(ren)
    sv.set_volume(vol)
    assert sv.slice_count() == 133 and sv.slice_step_mm() == pytest.approx(2.5, abs=0.01)
    sv.set_window(WINDOW_PRESETS["lung"])
    img = capture(rw)
    assert img.std() > 20
    # the readout is the voxel under the cursor; outside the scan circle it is the padding
    c = vol.center_lps()
    assert sv.value_at_display(*sv.lps_to_display(c)) == vol.value_at(c)
    assert sv.value_at_display(*sv.lps_to_display(vol.index_to_lps([2, 2, 66]))) == -2048
    # what is on screen is the data: grey levels at random voxels match the window applied to them
    sv.set_window(Window(0.0, 4096.0))
    sv.set_position_mm(vol.index_to_lps([256, 256, 66]))
    img = capture(rw)
    rng = np.random.default_rng(0)
    ij = rng.uniform(140, 372, size=(300, 2))
    errors = []
    for i, j in ij:
        p = vol.index_to_lps([i, j, 66])
        x, y = sv.lps_to_display(p)
        expected = np.clip((vol.value_at(p) + 2048.0) / 4096.0, 0, 1) * 255
        errors.append(abs(float(img[img.shape[0] - 1 - int(y), int(x), 0]) - expected))
    assert np.median(errors) < 3.0
    sv.set_orientation(Orientation.CORONAL)
    assert sv.slice_count() == 512
    assert sv.slice_step_mm() == pytest.approx(vol.spacing[1])
    assert capture(rw).std() > 20


def test_volume_view_places_rotated_grid_in_lps():
    """A ball on the patient's left of a rotated grid appears right of centre in the anterior view."""
    vol0 = blank(shape=(40, 60, 60), spacing=(1.0, 1.0, 1.5), rotation=rotation_z(30), origin=(-30, -30, 0))
    left = vol0.center_lps() + [15.0, 0.0, 10.0]
    vol = with_spheres(vol0, [left], 6.0)
    rw = make_render_window((128, 128))
    ren = vtk.vtkRenderer()
    rw.AddRenderer(ren)
    vv = VolumeView(ren)
    vv.set_volume(vol)
    img = capture(rw)[..., 0].astype(float)
    rows, cols = np.nonzero(img > 40)
    ren.SetWorldPoint(*vol0.center_lps(), 1.0)
    ren.WorldToDisplay()
    cx, cy, _ = ren.GetDisplayPoint()
    ren.SetWorldPoint(*left, 1.0)
    ren.WorldToDisplay()
    lx, ly, _ = ren.GetDisplayPoint()
    assert lx > cx + 5 and ly > cy + 3  # patient left -> screen right, head -> up
    assert abs(cols.mean() + 0.5 - lx) < 3 and abs((127 - rows.mean()) + 0.5 - ly) < 3
