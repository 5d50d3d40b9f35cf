"""3D volume rendering of a Volume in a vtkRenderer.

The mapper is chosen by what the machine has: on software OpenGL (Mesa llvmpipe, SwiftShader) the CPU
fixed-point ray caster is several times faster than the GPU ray caster running on emulated shaders; on a
real GPU the GPU ray caster wins.  Large volumes are downsampled for 3D only (2D views keep full
resolution), and an interactive mode trades image quality for frame rate while the user rotates.
"""

from __future__ import annotations

import numpy as np
from workstation.render import _vtk as vtk

from workstation.model.volume import Volume
from workstation.render.ai_3d import Detections3D, HeatmapSurface3D
from workstation.render.bridge import prop_matrix, volume_to_local_vtk
from workstation.render.labelmap_3d import LabelSurfaces
from workstation.render.offscreen import is_software_gl
from workstation.render.presets import VOLUME_PRESETS, default_volume_preset, scaled_volume_preset

CPU_RAYCAST = "cpu-raycast"
GPU_RAYCAST = "gpu-raycast"

#: Above this many voxels the CPU ray caster gets a 2x in-plane downsampled copy.
_CPU_MAX_VOXELS = 12_000_000


class VolumeView:
    """Volume rendering of one volume; the owner calls ``render_window.Render()``.

    ``mapper_kind`` None picks by machine on :meth:`set_volume`; pass "cpu-raycast" or "gpu-raycast" to force.
    """

    def __init__(self, renderer: vtk.vtkRenderer, mapper_kind: str | None = None) -> None:
        if mapper_kind not in (None, CPU_RAYCAST, GPU_RAYCAST):
            raise ValueError(f"mapper_kind must be {CPU_RAYCAST!r} or {GPU_RAYCAST!r}, got {mapper_kind!r}")
        self.renderer = renderer
        self._requested_kind = mapper_kind
        self._kind: str | None = None
        self._volume: Volume | None = None
        self._preset_name: str | None = None
        self._interactive = False
        self._mapper = None
        self._prop = vtk.vtkVolume()
        self._vprop = vtk.vtkVolumeProperty()
        self._vprop.SetInterpolationTypeToLinear()
        self._prop.SetProperty(self._vprop)
        self._prop.VisibilityOff()
        renderer.AddVolume(self._prop)
        renderer.SetBackground(0.0, 0.0, 0.0)
        #: label-map surfaces by key (e.g. the AI model's id), each toggled on its own
        self.label_surfaces: dict[str, LabelSurfaces] = {}
        #: AI detection boxes / points and the newest heatmap's iso-surface, made on first use
        self.detections: Detections3D | None = None
        self.heatmap_surface: HeatmapSurface3D | None = None

    @property
    def volume(self) -> Volume | None:
        return self._volume

    @property
    def mapper_kind(self) -> str:
        """"cpu-raycast" or "gpu-raycast" (decided on first use when not forced)."""
        if self._kind is None:
            self._kind = self._requested_kind or self._pick_kind()
        return self._kind

    def _pick_kind(self) -> str:
        rw = self.renderer.GetRenderWindow()
        if rw is None:
            return CPU_RAYCAST
        return CPU_RAYCAST if is_software_gl(rw) else GPU_RAYCAST

    def _make_mapper(self):
        if self.mapper_kind == GPU_RAYCAST:
            mapper = vtk.vtkGPUVolumeRayCastMapper()
            mapper.SetAutoAdjustSampleDistances(False)
            mapper.SetUseJittering(False)
        else:
            mapper = vtk.vtkFixedPointVolumeRayCastMapper()
            mapper.SetAutoAdjustSampleDistances(False)  # no interactor sets update rates offscreen
            mapper.SetNumberOfThreads(vtk.vtkMultiThreader.GetGlobalDefaultNumberOfThreads())
        mapper.SetBlendModeToComposite()
        return mapper

    def set_volume(self, volume: Volume) -> None:
        """Render ``volume`` with its modality's default preset, seen from the front."""
        self._volume = volume
        self._mapper = self._make_mapper()
        image = volume_to_local_vtk(volume)
        if self.mapper_kind == CPU_RAYCAST and int(np.prod(volume.shape)) > _CPU_MAX_VOXELS:
            image = self._downsample(image)
        self._mapper.SetInputData(image)
        self._image = image
        self._prop.SetMapper(self._mapper)
        self._prop.SetUserMatrix(prop_matrix(volume))
        self._prop.VisibilityOn()
        self.set_preset(default_volume_preset(volume))
        self.set_interactive(False)
        self.reset_camera()

    def set_label_surfaces(self, key: str, labelmap, visible: bool = True) -> LabelSurfaces | None:
        """Show ``labelmap`` (a LabelMap) as coloured surfaces under ``key``; None removes that key's surfaces."""
        surfaces = self.label_surfaces.get(key)
        if labelmap is None:
            if surfaces is not None:
                surfaces.remove()
                del self.label_surfaces[key]
            return None
        if surfaces is None:
            surfaces = self.label_surfaces[key] = LabelSurfaces(self.renderer)
        if surfaces.labelmap is not labelmap:
            surfaces.set_labelmap(labelmap)
        surfaces.set_visible(visible)
        return surfaces

    def set_detections(self, items) -> Detections3D | None:
        """Draw these detections (a sequence of :class:`~workstation.render.detections_layer.Drawn`)."""
        if self.detections is None:
            if not items:
                return None
            self.detections = Detections3D(self.renderer)
        self.detections.set_items(items)
        return self.detections

    def set_heatmap_surface(self, heatmap, threshold: float = 0.5) -> HeatmapSurface3D | None:
        """Show ``heatmap`` (a Heatmap) as its iso-surface at ``threshold``; None hides it."""
        if self.heatmap_surface is None:
            if heatmap is None:
                return None
            self.heatmap_surface = HeatmapSurface3D(self.renderer)
        if heatmap is not self.heatmap_surface.heatmap or threshold != self.heatmap_surface.threshold:
            self.heatmap_surface.set_heatmap(heatmap, threshold)
        return self.heatmap_surface

    @staticmethod
    def _downsample(image: vtk.vtkImageData) -> vtk.vtkImageData:
        """Halve the in-plane resolution (block mean), keeping the physical extent."""
        shrink = vtk.vtkImageShrink3D()
        shrink.SetInputData(image)
        shrink.SetShrinkFactors(2, 2, 1)
        shrink.AveragingOn()
        shrink.Update()
        out = shrink.GetOutput()
        # vtkImageShrink3D keeps the origin at the first kept voxel; centre the block on the original
        # voxels it averages (half an original voxel further) so the volume does not shift.
        sx, sy, _ = image.GetSpacing()
        ox, oy, oz = out.GetOrigin()
        out.SetOrigin(ox + sx / 2.0, oy + sy / 2.0, oz)
        return out

    def preset_names(self) -> list[str]:
        return list(VOLUME_PRESETS)

    @property
    def preset(self) -> str | None:
        return self._preset_name

    def set_preset(self, name: str) -> None:
        """Apply a transfer-function preset from :data:`VOLUME_PRESETS`."""
        if self._volume is None:
            raise RuntimeError("set_volume first")
        p = scaled_volume_preset(self._volume, name)
        color = vtk.vtkColorTransferFunction()
        for value, r, g, b in p.colors:
            color.AddRGBPoint(value, r, g, b)
        opacity = vtk.vtkPiecewiseFunction()
        for value, o in p.opacities:
            opacity.AddPoint(value, o)
        self._vprop.SetColor(color)
        self._vprop.SetScalarOpacity(opacity)
        self._vprop.SetShade(bool(p.shade))
        self._vprop.SetAmbient(p.ambient)
        self._vprop.SetDiffuse(p.diffuse)
        self._vprop.SetSpecular(p.specular)
        self._vprop.SetSpecularPower(p.specular_power)
        self._preset_name = name

    # -- quality ---------------------------------------------------------------------------------------
    @property
    def interactive(self) -> bool:
        return self._interactive

    def set_interactive(self, on: bool) -> None:
        """Coarser sampling while the user drags (on), full quality when the view settles (off)."""
        self._interactive = bool(on)
        if self._mapper is None or self._volume is None:
            return
        base = min(self._image.GetSpacing())
        if isinstance(self._mapper, vtk.vtkFixedPointVolumeRayCastMapper):
            self._mapper.SetSampleDistance(base * (2.0 if on else 1.0))
            self._mapper.SetImageSampleDistance(2.0 if on else 1.0)
            self._mapper.SetInteractiveSampleDistance(base * 2.0)
        else:
            self._mapper.SetSampleDistance(base * (1.5 if on else 0.5))

    # -- camera -------------------------------------------------------------------------------------------
    def reset_camera(self) -> None:
        """Anterior view, head up: camera in front of the patient (-y in LPS) looking +y, view up +z."""
        cam = self.renderer.GetActiveCamera()
        cam.ParallelProjectionOff()
        if self._volume is None:
            return
        center = self._volume.center_lps()
        cam.SetFocalPoint(*center)
        cam.SetPosition(*(center - np.array([0.0, 1.0, 0.0])))
        cam.SetViewUp(0.0, 0.0, 1.0)
        self.renderer.ResetCamera()
        self.renderer.ResetCameraClippingRange()

    def rotate(self, azimuth_deg: float, elevation_deg: float) -> None:
        """Orbit the camera about the focal point (azimuth about view up, elevation about screen right)."""
        cam = self.renderer.GetActiveCamera()
        cam.Azimuth(float(azimuth_deg))
        cam.Elevation(float(elevation_deg))
        cam.OrthogonalizeViewUp()
        self.renderer.ResetCameraClippingRange()

    def zoom(self, factor: float) -> None:
        if factor <= 0:
            raise ValueError("zoom factor must be positive")
        self.renderer.GetActiveCamera().Zoom(float(factor))
        self.renderer.ResetCameraClippingRange()
