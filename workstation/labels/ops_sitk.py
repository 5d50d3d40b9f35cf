"""Label operations that need connected-component analysis (SimpleITK): small-island removal.

Like :mod:`workstation.model.label_ops`, every operation edits ``labels[k, j, i]`` in place and returns the
:class:`~workstation.model.edits.LabelEdit` for the undo stack (None when nothing changed).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from workstation.model.edits import LabelEdit, replace_region

__all__ = ["island_sizes", "remove_small_islands"]


def _components(mask: np.ndarray, full: bool) -> tuple[np.ndarray, np.ndarray]:
    """Component labels (1 = largest) of a boolean mask and each component's voxel count."""
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    cc = sitk.ConnectedComponent(image, full)
    relabelled = sitk.RelabelComponent(cc, sortByObjectSize=True)
    comp = sitk.GetArrayViewFromImage(relabelled).astype(np.int32)
    counts = np.bincount(comp.ravel())
    return comp, counts


def island_sizes(labels: np.ndarray, value: int, *, full_connectivity: bool = False) -> list[int]:
    """Voxel counts of the connected pieces of segment ``value``, largest first."""
    mask = labels == value
    if not mask.any():
        return []
    _, counts = _components(mask, full_connectivity)
    return [int(c) for c in counts[1:]]


def remove_small_islands(labels: np.ndarray, value: int, spacing: Sequence[float], *,
                         min_size_mm3: float | None = None, keep_largest: int | None = None,
                         full_connectivity: bool = False) -> LabelEdit | None:
    """Erase the pieces of segment ``value`` smaller than ``min_size_mm3`` (or all but the ``keep_largest``).

    Connectivity is by faces (6 neighbours) unless ``full_connectivity`` (26).  ``spacing`` is the voxel
    spacing (sk, sj, si) in mm.
    """
    if (min_size_mm3 is None) == (keep_largest is None):
        raise ValueError("give exactly one of min_size_mm3 or keep_largest")
    if keep_largest is not None and keep_largest < 1:
        raise ValueError(f"keep_largest must be at least 1, got {keep_largest}")
    voxel_mm3 = float(np.prod([float(s) for s in spacing]))
    mask = labels == value
    if not mask.any():
        return None
    idx = [np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
    region = tuple(slice(int(x[0]), int(x[-1]) + 1) for x in idx)
    comp, counts = _components(mask[region], full_connectivity)
    if keep_largest is not None:
        drop = comp > keep_largest
    else:
        small = np.flatnonzero(counts * voxel_mm3 < float(min_size_mm3))
        small = small[small > 0]
        drop = np.isin(comp, small)
    if not drop.any():
        return None
    current = labels[region]
    new = np.where(drop, labels.dtype.type(0), current)
    origin = tuple(s.start for s in region)
    return replace_region(labels, origin, new, f"remove islands {value}")
