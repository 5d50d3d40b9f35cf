"""A label map: one integer label per voxel on a :class:`~workstation.model.volume.Volume`'s grid.

Label 0 is always background; every other value present is described by a :class:`Segment` (its name,
colour, what it is as a coded concept, and which algorithm made it).  The voxel array follows the Volume
conventions: indexed ``[k, j, i]`` with ``affine`` mapping ``(i, j, k, 1)`` to LPS millimetres.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from workstation.model.volume import Volume


@dataclass(frozen=True)
class Code:
    """A coded concept: (code value, coding scheme designator, code meaning), e.g. ("68523003", "SCT", ...)."""

    value: str
    scheme: str
    meaning: str

    def __post_init__(self) -> None:
        if not (self.value and self.scheme and self.meaning):
            raise ValueError(f"a code needs a value, a scheme and a meaning, got {self}")


class AlgorithmType(enum.Enum):
    """How a segment was made (the DICOM SEG segment algorithm types)."""

    AUTOMATIC = "AUTOMATIC"
    SEMIAUTOMATIC = "SEMIAUTOMATIC"
    MANUAL = "MANUAL"


#: The algorithm family of AI models (DCMR CID 7162).
ARTIFICIAL_INTELLIGENCE = Code("123110", "DCM", "Artificial Intelligence")


@dataclass(frozen=True)
class Algorithm:
    """The algorithm behind a segment: an AI model's id (as name) and version, or a person's tool."""

    name: str
    version: str
    type: AlgorithmType = AlgorithmType.AUTOMATIC
    family: Code = ARTIFICIAL_INTELLIGENCE


@dataclass(frozen=True)
class Segment:
    """What one label value means."""

    number: int
    name: str
    colour: tuple[int, int, int]
    category: Code
    type: Code
    algorithm: Algorithm | None = None  # None: drawn by hand

    def __post_init__(self) -> None:
        if not 1 <= self.number <= 65535:
            raise ValueError(f"segment numbers run from 1 to 65535, got {self.number}")
        if len(self.colour) != 3 or not all(0 <= int(c) <= 255 for c in self.colour):
            raise ValueError(f"segment {self.number}: colour must be three values 0..255, got {self.colour}")


@dataclass(frozen=True, eq=False)
class LabelMap:
    """Integer labels on a grid (``labels[k, j, i]``), the segments they stand for, and where they came from."""

    labels: np.ndarray
    affine: np.ndarray
    segments: tuple[Segment, ...]
    frame_of_reference_uid: str = ""
    source_series_uid: str = ""

    def __post_init__(self) -> None:
        if self.labels.ndim != 3 or self.labels.dtype.kind != "u":
            raise ValueError(f"labels must be a 3D unsigned integer array, got {self.labels.dtype} {self.labels.shape}")
        affine = np.asarray(self.affine, dtype=float)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {affine.shape}")
        object.__setattr__(self, "affine", affine)
        numbers = [s.number for s in self.segments]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"segment numbers must be unique, got {numbers}")

    @classmethod
    def on_grid_of(cls, volume: Volume, labels: np.ndarray, segments: tuple[Segment, ...]) -> LabelMap:
        """A label map on exactly the grid of ``volume`` (same shape and affine)."""
        if tuple(labels.shape) != volume.shape:
            raise ValueError(f"labels of shape {labels.shape} are not on the volume's grid {volume.shape}")
        return cls(labels, volume.affine.copy(), tuple(segments), volume.info.frame_of_reference_uid,
                   volume.info.series_instance_uid)

    @property
    def shape(self) -> tuple[int, int, int]:
        k, j, i = self.labels.shape
        return (k, j, i)

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    def is_on_grid_of(self, volume: Volume, tol_mm: float = 1e-3) -> bool:
        return self.shape == volume.shape and bool(np.allclose(self.affine, volume.affine, atol=tol_mm))

    def segment(self, number: int) -> Segment:
        for s in self.segments:
            if s.number == number:
                return s
        raise KeyError(f"no segment {number} (have {[s.number for s in self.segments]})")

    def mask(self, number: int) -> np.ndarray:
        return self.labels == number

    def volume_mm3(self, number: int) -> float:
        return float(np.count_nonzero(self.labels == number)) * self.voxel_volume_mm3

    def counts(self) -> dict[int, int]:
        """Voxel count of every segment (zero for those absent)."""
        found = np.bincount(self.labels.ravel(), minlength=max([0] + [s.number for s in self.segments]) + 1)
        return {s.number: int(found[s.number]) for s in self.segments}
