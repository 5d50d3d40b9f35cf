"""Label-map editing operations: brush, eraser, threshold brush, region growing, contour fill,
interpolation between slices and smoothing.  numpy only.

Every operation writes into a ``labels[k, j, i]`` array in place through :mod:`workstation.model.edits` and
returns the :class:`~workstation.model.edits.LabelEdit` (only the changed box, before and after) for the
undo stack, or None when nothing changed.  Sizes are millimetres: ``spacing`` is ``(sk, sj, si)``, the voxel
spacing along the array axes (see :func:`spacing_kji`), so a 5 mm brush is round on anisotropic grids.

A *plane* is an index plane of the grid: ``axis`` 0 is a slice (axial for an axial acquisition), 1 a row
plane (coronal), 2 a column plane (sagittal); ``axis=None`` means the operation works in 3D.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workstation.model.edits import Box, LabelEdit, _slices, paint, replace_region

__all__ = ["brush", "ellipsoid", "fill_polygon", "interpolate_between", "interpolate_gaps", "merge_edits",
           "morphology", "region_grow", "spacing_kji", "stroke_centres"]

Spacing = tuple[float, float, float]


def spacing_kji(affine: np.ndarray) -> Spacing:
    """Voxel spacing (mm) along the array axes k, j, i from an index->LPS affine mapping (i, j, k)."""
    n = np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)
    return (float(n[2]), float(n[1]), float(n[0]))


def _check_spacing(spacing: Sequence[float]) -> Spacing:
    s = tuple(float(v) for v in spacing)
    if len(s) != 3 or not all(v > 0 for v in s):
        raise ValueError(f"spacing must be three positive millimetre values, got {spacing}")
    return s  # type: ignore[return-value]


def ellipsoid(radius_mm: float, spacing: Sequence[float], axis: int | None = None) -> np.ndarray:
    """Boolean mask of the voxels whose centres lie within ``radius_mm`` of the central voxel's centre.

    With ``axis`` the mask is a disc one voxel thick along that axis (a brush in that plane).  The mask
    always holds at least the central voxel.
    """
    s = _check_spacing(spacing)
    if radius_mm < 0:
        raise ValueError(f"a brush radius cannot be negative, got {radius_mm} mm")
    half = [0 if a == axis else int(np.floor(radius_mm / s[a] + 1e-9)) for a in range(3)]
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    d2 = sum((g * s[a]) ** 2 for a, g in enumerate(grids))
    return d2 <= radius_mm * radius_mm + 1e-9


def _plane_axis(axis: int | None) -> None:
    if axis not in (None, 0, 1, 2):
        raise ValueError(f"plane axis must be 0 (k), 1 (j), 2 (i) or None (3D), got {axis!r}")


def brush(labels: np.ndarray, centre: Sequence[int], radius_mm: float, spacing: Sequence[float], value: int, *,
          axis: int | None = None, image: np.ndarray | None = None, hu_range: tuple[float, float] | None = None,
          only_on: int | None = None, description: str = "") -> LabelEdit | None:
    """One brush dab: a disc in the plane normal to ``axis`` (or a sphere) at voxel ``centre`` (k, j, i).

    ``value`` 0 erases.  With ``hu_range`` (needs ``image`` on the same grid) only voxels whose intensity lies
    in ``[low, high]`` are painted: the threshold brush.  ``only_on`` limits the dab to voxels holding that
    label now (eraser of one segment: ``only_on=segment``; painting that never overwrites another segment:
    ``only_on=0``).
    """
    _plane_axis(axis)
    mask = ellipsoid(radius_mm, spacing, axis)
    origin = tuple(int(c) - h // 2 for c, h in zip(centre, mask.shape))
    if hu_range is not None:
        if image is None or image.shape[:3] != labels.shape:
            raise ValueError("the threshold brush needs the image on the label map's grid")
        low, high = sorted(float(v) for v in hu_range)
        mask = mask & _window(image, origin, mask.shape, low, high)
    return paint(labels, mask, value, origin, description or ("erase" if value == 0 else f"brush {value}"),
                 only_on=only_on)


def _window(image: np.ndarray, origin: Sequence[int], shape: Sequence[int], low: float, high: float) -> np.ndarray:
    """``low <= image <= high`` over the box at ``origin`` of ``shape`` (False outside the image)."""
    out = np.zeros(tuple(shape), bool)
    src, dst = [], []
    for o, n, size in zip(origin, image.shape[:3], shape):
        a, b = max(0, o), min(n, o + size)
        if b <= a:
            return out
        src.append(slice(a, b))
        dst.append(slice(a - o, b - o))
    values = image[tuple(src)]
    out[tuple(dst)] = (values >= low) & (values <= high)
    return out


def stroke_centres(a: Sequence[float], b: Sequence[float], radius_mm: float,
                   spacing: Sequence[float]) -> list[tuple[int, int, int]]:
    """Voxel centres of dabs from ``a`` to ``b`` (continuous k, j, i), at most a third of a radius apart.

    Drawn between two mouse positions, they make a stroke without gaps however fast the mouse moves.
    """
    s = np.asarray(_check_spacing(spacing))
    a, b = np.asarray(a, float), np.asarray(b, float)
    length_mm = float(np.linalg.norm((b - a) * s))
    step = max(radius_mm / 3.0, float(s.min()) / 2.0)
    n = max(int(np.ceil(length_mm / step)), 1)
    out: list[tuple[int, int, int]] = []
    for t in np.linspace(0.0, 1.0, n + 1):
        c = tuple(int(v) for v in np.rint(a + t * (b - a)))
        if not out or out[-1] != c:
            out.append(c)  # type: ignore[arg-type]
    return out


def merge_edits(labels: np.ndarray, edits: Sequence[LabelEdit | None], description: str) -> LabelEdit | None:
    """One edit equal to ``edits`` applied in order (already applied to ``labels``): a stroke undoes at once."""
    edits = [e for e in edits if e is not None]
    if not edits:
        return None
    if len(edits) == 1:
        e = edits[0]
        return LabelEdit(description, e.box, e.before, e.after)
    boxes = np.array([e.box for e in edits])
    box: Box = (int(boxes[:, 0].min()), int(boxes[:, 1].max()), int(boxes[:, 2].min()),
                int(boxes[:, 3].max()), int(boxes[:, 4].min()), int(boxes[:, 5].max()))
    after = labels[_slices(box)].copy()
    before = after.copy()
    k0, _, j0, _, i0, _ = box
    for e in reversed(edits):  # undo each edit, newest first, on the local copy
        a0, a1, b0, b1, c0, c1 = e.box
        before[a0 - k0:a1 - k0, b0 - j0:b1 - j0, c0 - i0:c1 - i0] = e.before
    return LabelEdit(description, box, before, after)


# -- region growing ---------------------------------------------------------------------------------------
def region_grow(labels: np.ndarray, image: np.ndarray, seeds: Sequence[Sequence[int]], value: int,
                spacing: Sequence[float], *, intensity_range: tuple[float, float] | None = None,
                confidence: float | None = None, axis: int | None = None, max_radius_mm: float = 50.0,
                only_on: int | None = 0) -> LabelEdit | None:
    """Paint the voxels connected (6-neighbourhood; 4 in a plane) to ``seeds`` whose intensity is in range.

    The range is ``intensity_range`` (low, high), or with ``confidence`` = c the seeds' 3x3(x3)
    neighbourhood mean +- c standard deviations (a confidence-connected region).  Growth stops
    ``max_radius_mm`` from the seeds, and, with ``axis``, stays in the seeds' plane.  ``only_on`` (default 0)
    keeps the region out of other segments.
    """
    _plane_axis(axis)
    s = _check_spacing(spacing)
    seeds_arr = np.asarray(seeds, int).reshape(-1, 3)
    shape = labels.shape
    if seeds_arr.size == 0 or np.any(seeds_arr < 0) or np.any(seeds_arr >= np.asarray(shape)):
        raise ValueError(f"region growing needs seeds inside the grid {shape}, got {seeds_arr.tolist()}")
    if axis is not None and len(set(seeds_arr[:, axis].tolist())) != 1:
        raise ValueError("2D region growing needs all seeds in one plane")
    low, high = _grow_range(image, seeds_arr, intensity_range, confidence, axis)
    lo = [max(0, int(seeds_arr[:, a].min() - np.ceil(max_radius_mm / s[a]))) for a in range(3)]
    hi = [min(shape[a], int(seeds_arr[:, a].max() + np.ceil(max_radius_mm / s[a])) + 1) for a in range(3)]
    if axis is not None:
        lo[axis], hi[axis] = int(seeds_arr[0, axis]), int(seeds_arr[0, axis]) + 1
    region = tuple(slice(a, b) for a, b in zip(lo, hi))
    values = image[region]
    allowed = (values >= low) & (values <= high)
    if only_on is not None:
        current = labels[region]
        allowed &= (current == only_on) | (current == value)
    grown = np.zeros(allowed.shape, bool)
    local = seeds_arr - np.asarray(lo)
    grown[tuple(local.T)] = allowed[tuple(local.T)]
    _flood(grown, allowed)
    return paint(labels, grown, value, tuple(lo), f"region grow {value}", only_on=None)


def _grow_range(image, seeds, intensity_range, confidence, axis) -> tuple[float, float]:
    if intensity_range is not None:
        low, high = sorted(float(v) for v in intensity_range)
        return low, high
    if confidence is None or confidence <= 0:
        raise ValueError("region growing needs an intensity range or a positive confidence multiplier")
    samples = []
    for k, j, i in seeds:
        box = [slice(max(0, c - 1), c + 2) for c in (k, j, i)]
        if axis is not None:
            box[axis] = slice((k, j, i)[axis], (k, j, i)[axis] + 1)
        samples.append(image[tuple(box)].ravel())
    v = np.concatenate(samples).astype(float)
    spread = max(float(v.std()), 1.0)
    return float(v.mean() - confidence * spread), float(v.mean() + confidence * spread)


def _flood(grown: np.ndarray, allowed: np.ndarray) -> None:
    """Grow ``grown`` in place to its 6-connected component within ``allowed``, working on its bounding box."""
    shape = grown.shape
    if not grown.any():
        return
    while True:
        idx = [np.flatnonzero(grown.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
        box = tuple(slice(max(0, int(x[0]) - 1), min(n, int(x[-1]) + 2)) for x, n in zip(idx, shape))
        g, ok = grown[box], allowed[box]
        before = int(np.count_nonzero(g))
        for _ in range(8):  # several cheap steps per bounding-box update
            d = g.copy()
            d[1:] |= g[:-1]
            d[:-1] |= g[1:]
            d[:, 1:] |= g[:, :-1]
            d[:, :-1] |= g[:, 1:]
            d[:, :, 1:] |= g[:, :, :-1]
            d[:, :, :-1] |= g[:, :, 1:]
            g = d & ok
        grown[box] = g
        if int(np.count_nonzero(g)) == before:
            return


# -- contours ---------------------------------------------------------------------------------------------
def fill_polygon(labels: np.ndarray, axis: int, index: int, points: Sequence[Sequence[float]], value: int, *,
                 only_on: int | None = None, description: str = "") -> LabelEdit | None:
    """Fill the closed polygon ``points`` on plane ``index`` of ``axis``.

    Points are continuous in-plane indices ``(u, v)``: the two remaining array axes in order (for axis 0:
    (j, i) = (row, column)).  A voxel is inside when its centre is (even-odd rule), so a polygon and a
    freehand contour fill the same way.
    """
    if axis not in (0, 1, 2):
        raise ValueError(f"contour fill needs a plane axis 0, 1 or 2, got {axis!r}")
    pts = np.asarray(points, float).reshape(-1, 2)
    if len(pts) < 3:
        raise ValueError(f"a contour needs at least 3 points, got {len(pts)}")
    if not 0 <= index < labels.shape[axis]:
        raise ValueError(f"plane {index} is outside the grid (0..{labels.shape[axis] - 1})")
    dims = [n for a, n in enumerate(labels.shape) if a != axis]
    u0 = max(0, int(np.ceil(pts[:, 0].min())))
    u1 = min(dims[0] - 1, int(np.floor(pts[:, 0].max())))
    if u1 < u0:
        return None
    a, b = pts, np.roll(pts, -1, axis=0)
    rows = np.arange(u0, u1 + 1, dtype=float)
    inside = np.zeros((u1 - u0 + 1, dims[1]), bool)
    cols = np.arange(dims[1], dtype=float)
    for (au, av), (bu, bv) in zip(a, b):
        if au == bu:
            continue
        cross = ((au <= rows) & (rows < bu)) | ((bu <= rows) & (rows < au))  # half-open: vertices count once
        if not cross.any():
            continue
        v_at = av + (rows[cross] - au) * (bv - av) / (bu - au)
        inside[cross] ^= cols[None, :] < v_at[:, None]  # toggle everything left of the crossing
    mask = np.expand_dims(inside, axis)
    origin = [0, 0, 0]
    origin[axis] = int(index)
    origin[1 if axis == 0 else 0] = u0
    return paint(labels, mask, value, tuple(origin), description or f"contour {value}", only_on=only_on)


# -- interpolation between slices ---------------------------------------------------------------------------
def _plane(arr: np.ndarray, axis: int, index: int) -> np.ndarray:
    return np.take(arr, index, axis=axis)


def _signed_distance(mask: np.ndarray, pixel_mm: tuple[float, float]) -> np.ndarray:
    """Signed distance (mm) to the edge of a 2D mask: negative inside, positive outside (brute force, chunked)."""
    inside = mask
    pad = np.pad(mask, 1, mode="edge")
    edge_in = inside & ~(pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:])
    edge_out = ~inside & (pad[:-2, 1:-1] | pad[2:, 1:-1] | pad[1:-1, :-2] | pad[1:-1, 2:])
    coords = np.indices(mask.shape).reshape(2, -1).T * np.asarray(pixel_mm)
    out = np.zeros(mask.size)
    flat_in = inside.ravel()
    for targets, pick, sign in ((edge_in, ~flat_in, 1.0), (edge_out, flat_in, -1.0)):
        tp = np.argwhere(targets) * np.asarray(pixel_mm)
        where = np.flatnonzero(pick)
        if len(tp) == 0 or len(where) == 0:
            continue
        chunk = max(1, 2**22 // len(tp))
        for c in range(0, len(where), chunk):
            sel = where[c:c + chunk]
            d2 = ((coords[sel, None, :] - tp[None, :, :]) ** 2).sum(-1)
            out[sel] = sign * np.sqrt(d2.min(1))
    # half a pixel so that a mask edge and the zero level coincide on both sides
    out += np.where(flat_in, -0.5, 0.5) * min(pixel_mm)
    return out.reshape(mask.shape)


def interpolate_between(labels: np.ndarray, value: int, axis: int, index_a: int, index_b: int,
                        spacing: Sequence[float], *, only_on: int | None = 0) -> LabelEdit | None:
    """Fill segment ``value`` on the planes strictly between two drawn planes by shape interpolation.

    Each intermediate plane gets the zero level of the linearly blended signed distance maps of the two
    drawn shapes, so a small circle and a large one give circles of intermediate size, and a shape that
    moves (overlapping its first position) slides across.  Existing labels are only added to (``only_on`` 0: never over another segment).
    """
    if axis not in (0, 1, 2):
        raise ValueError(f"interpolation needs a plane axis 0, 1 or 2, got {axis!r}")
    s = _check_spacing(spacing)
    a, b = sorted((int(index_a), int(index_b)))
    if b - a < 2:
        return None
    if a < 0 or b >= labels.shape[axis]:
        raise ValueError(f"planes {a} and {b} are not both inside the grid (0..{labels.shape[axis] - 1})")
    ma, mb = _plane(labels, axis, a) == value, _plane(labels, axis, b) == value
    if not ma.any() or not mb.any():
        raise ValueError(f"segment {value} must be drawn on both planes {a} and {b} to interpolate")
    both = ma | mb
    rows, cols = np.flatnonzero(both.any(1)), np.flatnonzero(both.any(0))
    margin = 2
    r0, r1 = max(0, rows[0] - margin), min(both.shape[0], rows[-1] + margin + 1)
    c0, c1 = max(0, cols[0] - margin), min(both.shape[1], cols[-1] + margin + 1)
    pixel = tuple(s[x] for x in range(3) if x != axis)
    da = _signed_distance(ma[r0:r1, c0:c1], pixel)  # type: ignore[arg-type]
    db = _signed_distance(mb[r0:r1, c0:c1], pixel)  # type: ignore[arg-type]
    planes = [((p - a) / (b - a)) for p in range(a + 1, b)]
    stack = np.stack([(1 - t) * da + t * db <= 0 for t in planes], axis=axis)
    origin = [0, 0, 0]
    origin[axis] = a + 1
    others = [x for x in range(3) if x != axis]
    origin[others[0]], origin[others[1]] = int(r0), int(c0)
    return paint(labels, stack, value, tuple(origin), f"interpolate {value}", only_on=only_on)


def interpolate_gaps(labels: np.ndarray, value: int, axis: int, spacing: Sequence[float]) -> LabelEdit | None:
    """Interpolate segment ``value`` across every run of empty planes between two drawn ones along ``axis``."""
    if axis not in (0, 1, 2):
        raise ValueError(f"interpolation needs a plane axis 0, 1 or 2, got {axis!r}")
    present = np.flatnonzero((labels == value).any(axis=tuple(x for x in range(3) if x != axis)))
    edits = [interpolate_between(labels, value, axis, int(p), int(q), spacing)
             for p, q in zip(present[:-1], present[1:]) if q - p > 1]
    return merge_edits(labels, edits, f"interpolate {value}")


# -- smoothing ----------------------------------------------------------------------------------------------
def _shift_or(mask: np.ndarray, offsets: np.ndarray, dilate: bool) -> np.ndarray:
    """Dilation (OR over shifted copies) or erosion (AND) of ``mask`` by the structuring offsets."""
    out = np.zeros_like(mask) if dilate else np.ones_like(mask)
    pad = int(np.abs(offsets).max()) if len(offsets) else 0
    padded = np.pad(mask, pad, mode="constant", constant_values=not dilate)
    n = mask.shape
    for dk, dj, di in offsets:
        view = padded[pad + dk:pad + dk + n[0], pad + dj:pad + dj + n[1], pad + di:pad + di + n[2]]
        if dilate:
            out |= view
        else:
            out &= view
    return out


def morphology(labels: np.ndarray, value: int, radius_mm: float, spacing: Sequence[float], *,
               mode: str = "close", axis: int | None = None) -> LabelEdit | None:
    """Smooth segment ``value`` by a morphological ``"open"`` (removes spurs and specks), ``"close"`` (fills
    notches and pinholes) or ``"open+close"`` with a ball (a disc in the plane of ``axis``) of ``radius_mm``.

    Only the segment's own voxels and background change: closing never paints over another segment.
    """
    if mode not in ("open", "close", "open+close"):
        raise ValueError(f"smoothing mode must be 'open', 'close' or 'open+close', got {mode!r}")
    _plane_axis(axis)
    ball = ellipsoid(radius_mm, spacing, axis)
    offsets = np.argwhere(ball) - np.asarray(ball.shape) // 2
    mask = labels == value
    if not mask.any():
        return None
    idx = [np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
    margin = (np.asarray(ball.shape) // 2) * 2 + 1
    lo = [max(0, int(x[0]) - int(m)) for x, m in zip(idx, margin)]
    hi = [min(n, int(x[-1]) + int(m) + 1) for x, n, m in zip(idx, labels.shape, margin)]
    region = tuple(slice(a, b) for a, b in zip(lo, hi))
    m = mask[region]
    steps = {"open": ((False, True),), "close": ((True, False),), "open+close": ((False, True), (True, False))}
    for first, second in steps[mode]:
        m = _shift_or(_shift_or(m, offsets, first), offsets, second)
    current = labels[region]
    new = np.where(m & ((current == 0) | (current == value)), labels.dtype.type(value),
                   np.where(current == value, labels.dtype.type(0), current))
    return replace_region(labels, tuple(lo), new, f"smooth {value} ({mode})")
