"""Resample a tilted or unevenly spaced stack of parallel slices onto a regular orthogonal grid.

Why not a SimpleITK ``Resample``: an ITK image is a regular grid, and an unevenly spaced stack is
not one, so it cannot even be described as the input.  The slices are, however, parallel planes
sharing their in-plane axes.  Each target slice therefore lies between two acquired planes: we take
both planes at the target's in-plane coordinates (bilinear, a constant sub-pixel shift per plane
that accounts for the tilt) and blend them linearly by distance along the normal.  That is exactly
trilinear interpolation between parallel planes, done once, one target slice at a time (memory:
the output plus two slice buffers).

Target grid: same row/column directions and pixel spacing, normal = row x column cosine; in-plane
extent grown to cover every acquired slice (a tilted stack drifts sideways); slices from the first
to the last acquired position, step = the smallest regular acquired step (not finer than the pixel
spacing), adjusted so that the first and last positions fall exactly on the grid.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from workstation.dicom.plan import SeriesPlan
from workstation.dicom.stack import regular_step, unit_axes
from workstation.model.volume import Volume, affine_from_geometry


def resample_to_regular_grid(volume: Volume, plan: SeriesPlan, fill: float) -> Volume:
    """The acquired ``volume`` (slices in plan order) resampled onto an orthogonal, even grid."""
    r, c, n = unit_axes(plan.row_cosine, plan.column_cosine)
    dr, dc = plan.pixel_spacing
    pos = np.array([s.position for s in plan.slices], float)
    rel = pos - pos[0]
    u, v, s = rel @ r, rel @ c, rel @ n  # in-plane offsets (mm) and normal distance of every plane
    rows, cols = plan.rows, plan.columns
    u0, v0 = float(u.min()), float(v.min())
    out_cols = int(math.ceil((float(u.max()) - u0) / dc - 1e-6)) + cols
    out_rows = int(math.ceil((float(v.max()) - v0) / dr - 1e-6)) + rows
    span = float(s[-1] - s[0])
    step = regular_step(np.diff(s), plan.pixel_spacing)
    count = max(2, int(round(span / step)) + 1)
    step = span / (count - 1)
    origin = pos[0] + u0 * r + v0 * c
    affine = affine_from_geometry(r, c, n, (dc, dr, step), origin)
    out = np.empty((count, out_rows, out_cols), volume.voxels.dtype)
    src = volume.voxels
    for m in range(count):
        target = m * step
        k = int(np.clip(np.searchsorted(s, target, side="right") - 1, 0, len(s) - 2))
        w = float(np.clip((target - s[k]) / (s[k + 1] - s[k]), 0.0, 1.0))
        plane = _shifted(src[k], (u0 - u[k]) / dc, (v0 - v[k]) / dr, (out_rows, out_cols), fill)
        if w > 1e-6:
            nxt = _shifted(src[k + 1], (u0 - u[k + 1]) / dc, (v0 - v[k + 1]) / dr, (out_rows, out_cols), fill)
            plane = plane * np.float32(1.0 - w) + nxt * np.float32(w)
        if out.dtype.kind in "iu":
            np.rint(plane, out=plane)
        out[m] = plane
    info = replace(volume.info, padding_value=volume.info.padding_value)
    return Volume(out, affine, info)


def _shifted(img: np.ndarray, di: float, dj: float, shape: tuple[int, int], fill: float) -> np.ndarray:
    """out[j, i] = img[j + dj, i + di] by bilinear interpolation; ``fill`` outside the image."""
    i0, j0 = math.floor(di), math.floor(dj)
    fi, fj = np.float32(di - i0), np.float32(dj - j0)
    out = np.zeros(shape, np.float32)
    for oj, wj in ((0, 1 - fj), (1, fj)):
        if wj < 1e-6:
            continue
        for oi, wi in ((0, 1 - fi), (1, fi)):
            if wi < 1e-6:
                continue
            out += np.float32(wj * wi) * _window(img, i0 + oi, j0 + oj, shape, fill)
    return out


def _window(img: np.ndarray, di: int, dj: int, shape: tuple[int, int], fill: float) -> np.ndarray:
    """out[j, i] = img[j + dj, i + di] for integer offsets, ``fill`` where that falls outside."""
    out = np.full(shape, fill, np.float32)
    h, w = img.shape[:2]
    j_lo, j_hi = max(0, -dj), min(shape[0], h - dj)
    i_lo, i_hi = max(0, -di), min(shape[1], w - di)
    if j_lo < j_hi and i_lo < i_hi:
        out[j_lo:j_hi, i_lo:i_hi] = img[j_lo + dj:j_hi + dj, i_lo + di:i_hi + di]
    return out
