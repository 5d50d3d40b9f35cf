"""A region measured on a coarse grid whose voxels stand for runs of fine-grid positions.

A nearest-neighbour resize repeats voxels: along each axis, coarse voxel ``c`` becomes the fine positions
``first[c] .. first[c] + length[c] - 1``.  The region's voxel count, centroid, bounding box and mean score on
the fine grid follow from the coarse voxels weighted by their runs, without building the fine grid: a hook
that expands its mask onto the source grid (brain extraction) measures it here for a tenth of the cost of
counting regions again on the expanded labels.  Exact: integer sums carried in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from workstation.ai.grid import nonzero_box
from workstation.model.finding import Finding, FindingKind, Provenance
from workstation.model.volume import Volume

_SLAB = 16  # coarse planes per step: bounds the float copies


def region_on_runs(mask: np.ndarray, values: np.ndarray, runs: Sequence[tuple[np.ndarray, np.ndarray]],
                   to_ijk: np.ndarray, volume: Volume, manifest, spec,
                   box: tuple[slice, slice, slice] | None = None) -> Finding | None:
    """One finding for every non-zero voxel of ``mask`` taken as one region (the caller's region: e.g. the
    largest connected component it kept), or None when it is empty or smaller than the manifest allows.

    ``mask`` and ``values`` (uint8, the score 0..255 of each voxel) are on the coarse grid; ``runs[a]`` is
    (first, length) per coarse voxel along axis ``a``; ``to_ijk`` (4x4) maps fine positions (x0, x1, x2) to the
    volume's (i, j, k) indices.  The score is the region's mean value / 255, as :func:`region_findings` gives.
    ``box``: the smallest box holding the mask's non-zero voxels, when the caller knows it already.
    """
    if manifest.output.max_findings_per_label == 0:
        return None
    if box is None:
        box = nonzero_box(mask)
        if box is None:
            return None
    m, v = mask[box], values[box]
    first = [np.asarray(runs[a][0], np.float64)[box[a]] for a in range(3)]
    length = [np.asarray(runs[a][1], np.float64)[box[a]] for a in range(3)]
    position_sum = [f * n + n * (n - 1) / 2.0 for f, n in zip(first, length)]  # sum of a run's positions
    # reduce the last axis against [length, position sum] (mask) and length (mask * values), a slab at a time
    last = np.stack([length[2], position_sum[2]], axis=1)
    counts = np.empty(m.shape[:2] + (2,), np.float64)
    scored = np.empty(m.shape[:2], np.float64)
    for z in range(0, m.shape[0], _SLAB):
        slab = m[z:z + _SLAB]
        counts[z:z + _SLAB] = slab.astype(np.float64) @ last
        scored[z:z + _SLAB] = (slab * v[z:z + _SLAB]).astype(np.float64) @ length[2]
    n = length[0] @ counts[..., 0] @ length[1]
    voxel_mm3 = float(abs(np.linalg.det(volume.affine[:3, :3])))
    if n < max(1, math.ceil(manifest.output.min_volume_mm3 / voxel_mm3)):
        return None
    centre = np.array([position_sum[0] @ counts[..., 0] @ length[1], length[0] @ counts[..., 0] @ position_sum[1],
                       length[0] @ counts[..., 1] @ length[1]]) / n
    total = float(length[0] @ scored @ length[1])
    lo = np.array([first[a][0] for a in range(3)])
    hi = np.array([first[a][-1] + length[a][-1] - 1 for a in range(3)])
    corners = np.array([[x0, x1, x2, 1.0] for x0 in (lo[0], hi[0]) for x1 in (lo[1], hi[1]) for x2 in (lo[2], hi[2])])
    lps = volume.index_to_lps((corners @ to_ijk.T)[:, :3])
    centroid = volume.index_to_lps((to_ijk @ np.append(centre, 1.0))[:3])
    return Finding(
        kind=FindingKind.REGION, label=spec.name, score=round(float(total / n / 255.0), 4),
        centroid_mm=tuple(float(c) for c in centroid), bbox_min_mm=tuple(float(c) for c in lps.min(axis=0)),
        bbox_max_mm=tuple(float(c) for c in lps.max(axis=0)),
        provenance=Provenance(manifest.id, manifest.version, manifest.title),
        volume_mm3=float(n) * voxel_mm3, segment_number=spec.value,
        series_instance_uid=volume.info.series_instance_uid,
    )
