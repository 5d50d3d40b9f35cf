"""Display presets as data: CT window presets for 2D and transfer functions for volume rendering.

Values are in the volume's output units (HU for CT).  The MR volume preset is written on a 0..1 scale and
is stretched onto the volume's robust percentile range by :func:`scaled_volume_preset`, because MR
intensities have no absolute meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from workstation.model.volume import Volume, Window

#: Common PACS window presets (centre, width).  "auto" is not here: the view resolves it per volume.
WINDOW_PRESETS: dict[str, Window] = {
    "lung": Window(center=-600.0, width=1500.0),
    "mediastinum": Window(center=50.0, width=350.0),
    "bone": Window(center=500.0, width=2000.0),
    "brain": Window(center=40.0, width=80.0),
    "abdomen": Window(center=50.0, width=400.0),
    "liver": Window(center=90.0, width=150.0),
}

AUTO = "auto"


@dataclass(frozen=True)
class VolumePreset:
    """A volume-rendering transfer function.

    ``colors`` are (value, r, g, b) with r, g, b in 0..1; ``opacities`` are (value, opacity).
    ``relative`` presets use values on 0..1 that are mapped onto the volume's percentile range.
    """

    name: str
    colors: tuple[tuple[float, float, float, float], ...]
    opacities: tuple[tuple[float, float], ...]
    shade: bool = True
    ambient: float = 0.2
    diffuse: float = 0.9
    specular: float = 0.2
    specular_power: float = 10.0
    relative: bool = False


VOLUME_PRESETS: dict[str, VolumePreset] = {
    p.name: p
    for p in (
        VolumePreset(
            "ct-bone",
            colors=((-1000, 0, 0, 0), (150, 0.55, 0.25, 0.15), (300, 0.9, 0.82, 0.66), (1500, 1, 1, 0.95)),
            opacities=((-1000, 0), (150, 0), (300, 0.15), (700, 0.7), (1500, 0.9)),
            specular=0.3,
        ),
        VolumePreset(
            "ct-soft-tissue",
            colors=((-1000, 0, 0, 0), (-100, 0.75, 0.45, 0.35), (40, 0.85, 0.55, 0.45), (300, 1, 0.95, 0.85)),
            opacities=((-1000, 0), (-300, 0), (-100, 0.05), (40, 0.25), (300, 0.6), (1500, 0.8)),
        ),
        VolumePreset(
            "ct-lung",
            colors=((-1000, 0.3, 0.3, 1), (-600, 0.75, 0.75, 0.95), (-400, 0.9, 0.6, 0.5), (200, 1, 0.9, 0.8)),
            opacities=((-1000, 0), (-950, 0), (-800, 0.08), (-600, 0.15), (-400, 0), (3000, 0)),
            ambient=0.3,
        ),
        VolumePreset(
            "ct-angio",
            colors=((-1000, 0, 0, 0), (100, 0.6, 0.1, 0.05), (200, 0.95, 0.3, 0.2), (400, 1, 0.9, 0.75), (1500, 1, 1, 1)),
            opacities=((-1000, 0), (120, 0), (200, 0.3), (400, 0.7), (1500, 0.9)),
            specular=0.4,
        ),
        VolumePreset(
            "mr-default",
            colors=((0.0, 0, 0, 0), (0.2, 0.65, 0.5, 0.42), (0.5, 0.95, 0.85, 0.75), (1.0, 1, 1, 1)),
            opacities=((0.0, 0), (0.2, 0), (0.35, 0.12), (0.7, 0.5), (1.0, 0.8)),
            relative=True,
        ),
    )
}


def resolve_window(volume: Volume, name: str | None) -> Window:
    """Window for a preset name; ``None`` or "auto" gives the volume's own (file default or percentile)."""
    if name is None or name == AUTO:
        return volume.auto_window()
    try:
        return WINDOW_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown window preset {name!r}; known: auto, {', '.join(WINDOW_PRESETS)}") from None


def default_volume_preset(volume: Volume) -> str:
    return "ct-bone" if volume.info.modality.upper() == "CT" else "mr-default"


def scaled_volume_preset(volume: Volume, name: str) -> VolumePreset:
    """The named preset with values in the volume's units (relative presets mapped on percentiles)."""
    try:
        preset = VOLUME_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown volume preset {name!r}; known: {', '.join(VOLUME_PRESETS)}") from None
    if not preset.relative:
        return preset
    w = volume.percentile_window(1.0, 99.5)
    lo, span = w.low, w.width
    return replace(
        preset,
        colors=tuple((lo + v * span, r, g, b) for v, r, g, b in preset.colors),
        opacities=tuple((lo + v * span, o) for v, o in preset.opacities),
        relative=False,
    )
