"""Geometry of a stack of parallel slices: sort along the normal, find tilt, uneven steps and gaps.

The loader delivers an orthogonal, evenly spaced grid.  A stack whose positions do not step along
the slice normal (gantry tilt) or whose steps differ by more than :data:`STEP_TOLERANCE` is marked
for resampling; :func:`regular_step` chooses the step of the regular grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from workstation.dicom.plan import SliceSource, Vec3

#: Relative difference between slice steps still treated as "even" (1 %).
STEP_TOLERANCE = 0.01
#: In-plane drift of the slice origins, in pixels, still treated as "no shear".
SHEAR_TOLERANCE_PX = 0.05


@dataclass(frozen=True)
class StackGeometry:
    slices: tuple[SliceSource, ...]
    positions_mm: tuple[float, ...]
    tilt_deg: float
    needs_resampling: bool
    warnings: tuple[str, ...]


def unit_axes(row_cosine: Vec3, column_cosine: Vec3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit row cosine (along i), column cosine (along j) and slice normal (their cross product)."""
    r = np.asarray(row_cosine, float)
    c = np.asarray(column_cosine, float)
    r /= np.linalg.norm(r)
    c /= np.linalg.norm(c)
    n = np.cross(r, c)
    return r, c, n / np.linalg.norm(n)


def analyse_stack(
    sources: list[SliceSource],
    row_cosine: Vec3,
    column_cosine: Vec3,
    pixel_spacing: tuple[float, float],
    thickness: float | None,
    header_tilt: float | None,
) -> StackGeometry:
    """Sort slices by ImagePositionPatient projected on the normal and describe the stack."""
    r, c, n = unit_axes(row_cosine, column_cosine)
    pos = np.array([s.position for s in sources], float)
    dist = pos @ n
    order = np.argsort(dist, kind="stable")
    warnings: list[str] = []
    keep = [int(order[0])]
    for idx in order[1:]:
        if abs(dist[idx] - dist[keep[-1]]) < 1e-3:
            warnings.append(f"slices {_name(sources[keep[-1]])} and {_name(sources[idx])} share position "
                            f"{dist[idx]:.2f} mm with different SOP Instance UIDs; kept the first")
            continue
        keep.append(int(idx))
    slices = tuple(sources[i] for i in keep)
    pos, dist = pos[keep], dist[keep]
    tilt, shear = _tilt(pos, r, c, n, pixel_spacing)
    if header_tilt and abs(header_tilt) > 0.01 and tilt < 0.01:
        tilt = abs(header_tilt)  # a tilt that the positions do not show (e.g. a single slice)
    steps = np.diff(dist)
    uneven = steps.size > 1 and (steps.max() - steps.min()) > STEP_TOLERANCE * float(np.median(steps))
    if shear:
        warnings.append(f"gantry tilt {tilt:.1f} deg: resampled onto an orthogonal grid")
    if uneven:
        step = regular_step(steps, pixel_spacing)
        warnings.append(f"uneven slice spacing ({', '.join(_distinct(steps))} mm): resampled to {step:.2f} mm")
    warnings.extend(_gaps(dist, steps))
    return StackGeometry(slices, tuple(float(d) for d in dist), float(tilt), bool(shear or uneven),
                         tuple(warnings))


def _name(s: SliceSource) -> str:
    import os

    return os.path.basename(s.path) + (f"#{s.frame + 1}" if s.frame else "")


def _tilt(pos: np.ndarray, r, c, n, pixel_spacing) -> tuple[float, bool]:
    """Angle between stack direction and normal, and whether the slice origins drift in-plane."""
    if len(pos) < 2:
        return 0.0, False
    rel = pos - pos[0]
    drift_i = np.abs(rel @ r) / pixel_spacing[1]
    drift_j = np.abs(rel @ c) / pixel_spacing[0]
    shear = bool(max(drift_i.max(), drift_j.max()) > SHEAR_TOLERANCE_PX)
    d = pos[-1] - pos[0]
    cosang = abs(float(d @ n)) / max(float(np.linalg.norm(d)), 1e-9)
    return math.degrees(math.acos(min(1.0, cosang))), shear


def _distinct(steps: np.ndarray) -> list[str]:
    """The step values in order of appearance, consecutive repeats folded: 4.0, 1.08, 7.0."""
    out: list[str] = []
    for s in steps:
        text = f"{s:.2f}"
        text = text[:-1] if text.endswith("0") else text  # 4.0, 1.08, 2.5
        if not out or out[-1] != text:
            out.append(text)
    return out


def regular_steps(steps: np.ndarray) -> np.ndarray:
    """Steps that occur at least twice (within tolerance): the scanner's intended spacings."""
    return np.array([s for s in steps if np.sum(np.abs(steps - s) <= STEP_TOLERANCE * s + 1e-6) >= 2])


def regular_step(steps: np.ndarray, pixel_spacing: tuple[float, float]) -> float:
    """Step of the regular grid: the smallest intended spacing, never finer than the pixels.

    One-off short steps (an overlap between two acquisitions, like the 1.08 mm step of the GE tilt
    head) are ignored: resampling everything to them would multiply memory for no added detail.
    """
    regular = regular_steps(steps)
    step = float(regular.min()) if regular.size else float(np.median(steps))
    return max(step, min(pixel_spacing))


def _gaps(dist: np.ndarray, steps: np.ndarray) -> list[str]:
    """Warn about steps much larger than the usual one that occur only once: likely missing slices."""
    if steps.size < 2:
        return []
    regular = regular_steps(steps)
    expected = float(np.median(regular)) if regular.size else float(np.median(steps))
    out = []
    for k, s in enumerate(steps):
        once = np.sum(np.abs(steps - s) <= STEP_TOLERANCE * s + 1e-6) < 2
        if s > 1.5 * expected and once:
            out.append(f"gap of {s:.1f} mm between slice positions {dist[k]:.1f} and {dist[k + 1]:.1f} "
                       f"(expected ~{expected:.1f} mm): possibly missing slices")
    return out
