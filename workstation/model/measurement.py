"""Measurements in patient space (LPS mm), with statistics computed on a Volume.  numpy only.

A measurement keeps its geometry in millimetres so it reads the same in any view; the statistics of an
ellipse ROI are sampled from the volume on the plane the ellipse was drawn on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workstation.model.volume import Volume


@dataclass(frozen=True, eq=False)
class LengthMeasurement:
    """A straight line between two LPS points."""

    p0: np.ndarray
    p1: np.ndarray

    @property
    def length_mm(self) -> float:
        return float(np.linalg.norm(np.asarray(self.p1, float) - np.asarray(self.p0, float)))


@dataclass(frozen=True)
class RoiStats:
    """Statistics of the voxels inside a ROI (units of the volume, HU for CT)."""

    mean: float
    sd: float
    min: float
    max: float
    count: int
    area_mm2: float

    def text(self, units: str = "") -> str:
        u = f" {units}" if units else ""
        return (
            f"mean {self.mean:.1f}{u}  SD {self.sd:.1f}\n"
            f"min {self.min:.0f}  max {self.max:.0f}\n"
            f"area {self.area_mm2:.1f} mm\u00b2"
        )


@dataclass(frozen=True, eq=False)
class EllipseROI:
    """An ellipse in a plane: centre, two orthogonal in-plane unit axes and the radii along them (mm)."""

    center: np.ndarray
    axis_a: np.ndarray
    axis_b: np.ndarray
    radius_a_mm: float
    radius_b_mm: float

    @property
    def area_mm2(self) -> float:
        return float(np.pi * self.radius_a_mm * self.radius_b_mm)

    def stats(self, volume: Volume) -> RoiStats | None:
        """Nearest-voxel statistics on the ellipse's plane; ``None`` when it covers no voxel."""
        return ellipse_stats(volume, self.center, (self.axis_a, self.axis_b), (self.radius_a_mm, self.radius_b_mm))


def ellipse_stats(
    volume: Volume,
    center: np.ndarray,
    axes: tuple[np.ndarray, np.ndarray],
    radii: tuple[float, float],
) -> RoiStats | None:
    """Statistics of the volume inside an in-plane ellipse.

    The plane is sampled on a grid finer than the finest voxel spacing (half of it), each sample takes
    its nearest voxel; samples outside the grid are ignored.  The area is the ellipse's exact area.
    """
    center = np.asarray(center, float)
    a_dir, b_dir = (np.asarray(v, float) / np.linalg.norm(v) for v in axes)
    ra, rb = float(radii[0]), float(radii[1])
    if ra <= 0 or rb <= 0:
        raise ValueError(f"ellipse radii must be positive, got {radii}")
    step = min(volume.spacing) / 2.0
    ua = np.arange(-ra, ra + step / 2, step)
    ub = np.arange(-rb, rb + step / 2, step)
    ga, gb = np.meshgrid(ua, ub, indexing="ij")
    inside = (ga / ra) ** 2 + (gb / rb) ** 2 <= 1.0
    pts = center + ga[inside, None] * a_dir + gb[inside, None] * b_dir
    ijk = np.rint(volume.lps_to_index(pts)).astype(np.int64)
    ks, js, is_ = volume.shape
    ok = (ijk[:, 0] >= 0) & (ijk[:, 0] < is_) & (ijk[:, 1] >= 0) & (ijk[:, 1] < js) & (ijk[:, 2] >= 0) & (ijk[:, 2] < ks)
    if not ok.any():
        return None
    ijk = ijk[ok]
    vals = volume.voxels[ijk[:, 2], ijk[:, 1], ijk[:, 0]].astype(np.float64)
    return RoiStats(
        mean=float(vals.mean()),
        sd=float(vals.std()),
        min=float(vals.min()),
        max=float(vals.max()),
        count=int(vals.size),
        area_mm2=float(np.pi * ra * rb),
    )
