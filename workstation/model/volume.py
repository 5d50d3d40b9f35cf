"""A 3D image on a grid placed in DICOM patient space (LPS, millimetres).

Conventions used everywhere in the workstation:

* ``voxels`` is indexed ``[k, j, i]`` = ``[slice, row, column]`` (C order, the way DICOM stores frames).
* ``affine`` maps a homogeneous index column vector ``(i, j, k, 1)`` -- column, row, slice -- to patient
  coordinates ``(x, y, z, 1)`` in LPS millimetres.  Its first three columns are the column step, row step and
  slice step vectors; their norms are the spacings.  The loader always delivers an orthogonal grid
  (tilted or unevenly spaced acquisitions are resampled once, at load time), so every distance in mm
  computed from the affine is right in any view.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class Photometric(enum.Enum):
    """How stored values map to brightness."""

    MONOCHROME2 = "MONOCHROME2"  # higher value = brighter
    MONOCHROME1 = "MONOCHROME1"  # higher value = darker: display inverted
    RGB = "RGB"


@dataclass(frozen=True)
class Window:
    """A display window: centre and width in output units (HU for CT)."""

    center: float
    width: float

    @property
    def low(self) -> float:
        return self.center - self.width / 2.0

    @property
    def high(self) -> float:
        return self.center + self.width / 2.0


@dataclass(frozen=True)
class VolumeInfo:
    """Display and provenance attributes of a volume (no pixel data)."""

    modality: str = "OT"
    series_instance_uid: str = ""
    study_instance_uid: str = ""
    frame_of_reference_uid: str = ""
    patient_name: str = ""
    patient_id: str = ""
    study_date: str = ""
    series_description: str = ""
    series_number: int | None = None
    units: str = ""  # "HU" for CT after the modality LUT
    photometric: Photometric = Photometric.MONOCHROME2
    default_window: Window | None = None
    gantry_tilt_deg: float = 0.0
    #: Slice positions along the slice normal (mm) as acquired, before any regularisation.
    acquired_slice_positions_mm: tuple[float, ...] = ()
    #: Values that mean "no data" (CT padding outside the scan circle), kept out of display ranges.
    padding_value: float | None = None
    warnings: tuple[str, ...] = ()
    #: SOP Instance UIDs of the source images, one per slice of the acquired stack (for references).
    source_sop_instance_uids: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class Volume:
    """Voxels plus the 4x4 index->LPS affine.  Immutable by convention: never write into ``voxels``."""

    voxels: np.ndarray
    affine: np.ndarray
    info: VolumeInfo = field(default_factory=VolumeInfo)

    def __post_init__(self) -> None:
        if self.voxels.ndim not in (3, 4):
            raise ValueError(f"voxels must be [slices, rows, columns] (or with a trailing RGB axis), got shape {self.voxels.shape}")
        affine = np.asarray(self.affine, dtype=float)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {affine.shape}")
        object.__setattr__(self, "affine", affine)

    # -- grid --------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """(slices, rows, columns)."""
        k, j, i = self.voxels.shape[:3]
        return (k, j, i)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """(column, row, slice) spacing in mm: the norms of the affine's first three columns."""
        n = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(n[0]), float(n[1]), float(n[2]))

    @property
    def origin(self) -> np.ndarray:
        """LPS position of voxel (0, 0, 0), the centre of the first pixel of the first slice."""
        return self.affine[:3, 3].copy()

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit column, row and slice directions in LPS."""
        return self.affine[:3, :3] / np.asarray(self.spacing)

    @property
    def nbytes(self) -> int:
        return int(self.voxels.nbytes)

    def index_to_lps(self, ijk: np.ndarray) -> np.ndarray:
        """Map (..., 3) continuous indices (i=column, j=row, k=slice) to LPS mm."""
        ijk = np.asarray(ijk, dtype=float)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def lps_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """Map (..., 3) LPS mm to continuous (i, j, k) indices."""
        xyz = np.asarray(xyz, dtype=float)
        inv = np.linalg.inv(self.affine)
        return xyz @ inv[:3, :3].T + inv[:3, 3]

    def center_lps(self) -> np.ndarray:
        k, j, i = self.shape
        return self.index_to_lps(np.array([(i - 1) / 2.0, (j - 1) / 2.0, (k - 1) / 2.0]))

    def middle_voxel_lps(self) -> np.ndarray:
        """The centre of the voxel at the middle of the grid (the lower one of two middles).

        Where a view opens: on a slice of the grid, not between two (the centre of a grid with an even
        number of slices lies half-way, where a view would blend two slices and the label tools, which
        draw on the nearest, could pick the one not shown)."""
        k, j, i = self.shape
        return self.index_to_lps(np.array([(i - 1) // 2, (j - 1) // 2, (k - 1) // 2], float))

    def nearest_voxel_lps(self, xyz) -> np.ndarray:
        """The centre of the voxel nearest to an LPS point (the point itself may lie outside the grid)."""
        return self.index_to_lps(np.rint(self.lps_to_index(np.asarray(xyz, float))))

    def value_at(self, xyz: np.ndarray) -> float | None:
        """Nearest-voxel value at an LPS point, or None outside the grid."""
        i, j, k = np.rint(self.lps_to_index(xyz)).astype(int)
        ks, js, is_ = self.shape
        if 0 <= i < is_ and 0 <= j < js and 0 <= k < ks:
            return float(self.voxels[k, j, i])
        return None

    def display_range(self) -> tuple[float, float]:
        """Min and max of the voxels, padding excluded (for auto windows and transfer functions)."""
        v = self.voxels
        lo, hi = float(v.min()), float(v.max())
        pad = self.info.padding_value
        if pad is not None and lo <= pad:
            sample = v[:: max(1, v.shape[0] // 16)]
            real = sample[sample > pad]
            if real.size:
                lo = float(real.min())
        return lo, hi

    def auto_window(self) -> Window:
        """The file's default window, else a robust percentile window (used for MR 'auto')."""
        if self.info.default_window is not None:
            return self.info.default_window
        return self.percentile_window()

    def slice_window(self, k: int) -> Window:
        """:meth:`auto_window` from slice ``k`` alone (for a volume still loading, whose slice ``k`` is decoded)."""
        if self.info.default_window is not None:
            return self.info.default_window
        return self.percentile_window(slices=slice(k, k + 1))

    def percentile_window(self, low_pct: float = 0.5, high_pct: float = 99.5, slices: slice | None = None) -> Window:
        v = self.voxels[slices if slices is not None else slice(None, None, max(1, self.voxels.shape[0] // 32)),
                        ::2, ::2]
        pad = self.info.padding_value
        if pad is not None:
            v = v[v > pad]
        if v.size == 0:
            return Window(0.0, 1.0)
        lo, hi = np.percentile(v, [low_pct, high_pct])
        width = max(float(hi - lo), 1.0)
        return Window(float(lo) + width / 2.0, width)


def affine_from_geometry(
    column_dir: np.ndarray,
    row_dir: np.ndarray,
    slice_dir: np.ndarray,
    spacing: tuple[float, float, float],
    origin: np.ndarray,
) -> np.ndarray:
    """Build an index->LPS affine from unit directions, (column, row, slice) spacing and origin."""
    a = np.eye(4)
    a[:3, 0] = np.asarray(column_dir, float) * spacing[0]
    a[:3, 1] = np.asarray(row_dir, float) * spacing[1]
    a[:3, 2] = np.asarray(slice_dir, float) * spacing[2]
    a[:3, 3] = np.asarray(origin, float)
    return a
