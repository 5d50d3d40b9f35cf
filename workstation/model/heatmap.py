"""A heatmap: one float value per voxel (a model's probability or saliency) on a Volume's grid.

Values are in 0..1 after the model's activation; ``affine`` maps ``(i, j, k, 1)`` to LPS mm like a
:class:`~workstation.model.volume.Volume`'s.  ``model_id`` / ``model_version`` say which model made it, so
every display can mark it as AI-generated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workstation.model.volume import Volume


@dataclass(frozen=True, eq=False)
class Heatmap:
    values: np.ndarray  # float32 [k, j, i], 0..1
    affine: np.ndarray
    label: str
    colour: tuple[int, int, int]
    model_id: str
    model_version: str
    source_series_uid: str = ""

    def __post_init__(self) -> None:
        if self.values.ndim != 3 or self.values.dtype != np.float32:
            raise ValueError(f"heatmap values must be a 3D float32 array, got {self.values.dtype} {self.values.shape}")
        affine = np.asarray(self.affine, float)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {affine.shape}")
        object.__setattr__(self, "affine", affine)

    @classmethod
    def on_grid_of(cls, volume: Volume, values: np.ndarray, label: str, colour: tuple[int, int, int],
                   model_id: str, model_version: str) -> Heatmap:
        if tuple(values.shape) != volume.shape:
            raise ValueError(f"heatmap of shape {values.shape} is not on the volume's grid {volume.shape}")
        return cls(values, volume.affine.copy(), label, colour, model_id, model_version,
                   volume.info.series_instance_uid)

    @property
    def shape(self) -> tuple[int, int, int]:
        k, j, i = self.values.shape
        return (k, j, i)

    def is_on_grid_of(self, volume: Volume, tol_mm: float = 1e-3) -> bool:
        return self.shape == volume.shape and bool(np.allclose(self.affine, volume.affine, atol=tol_mm))
