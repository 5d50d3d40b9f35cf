"""The two-stage brain extraction pipeline of deepbet, on a workstation Volume.

deepbet (Fisch et al., MIT licence) works on the scan's own voxels, only re-ordered to the closest
canonical axes (R, A, S); it never resamples to a fixed spacing:

1. a nearest-neighbour 128^3 copy of the whole volume -> ``bbox_model.onnx`` -> brain probability;
   the largest connected component above 0.5 gives a bounding box, widened by 10 % on each side;
2. the box of the full-resolution volume, nearest-neighbour resized to 256^3 -> ``model.onnx``;
   its brain probability is resized back into the box;
3. above the threshold, the largest connected component inside the box, with its holes filled.

Intensities: clipped to the 0.5 / 99.5 percentiles of the 128^3 copy (background included), scaled to
0..1, then standardised and mapped to mean 0.449, standard deviation 0.226 (per network input).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from workstation.ai import grid
from workstation.ai.hooks import HookContext, InputRefused, Measured
from workstation.ai.measure import region_on_runs
from workstation.model.tasks import Progress
from workstation.model.volume import Volume

BBOX_MODEL = "bbox_model.onnx"
BBOX_SHAPE = (128, 128, 128)  # the bounding-box network's input
BBOX_MARGIN = 0.1  # widen the box by this fraction of its size on each side
BBOX_MIN_FRACTION = 0.02  # a plane belongs to the box when this fraction of it is brain
_CHUNK = 1 << 20  # voxels per step of the normalisation (float64 sums per chunk, as numpy sums a chunk)


class NoBrainFound(InputRefused):
    """The first stage found no brain in the volume."""


def infer(volume: Volume, context: HookContext) -> Measured:
    m = context.manifest
    shape = tuple(reversed(m.input.size or (256, 256, 256)))
    with context.stage("preprocess"):
        context.report(Progress(0, 4, "pre-processing"))
        perm, flips = axis_map(volume.affine, m.input.orientation)
        x = reorient(volume.voxels, perm, flips)
        small = resize_nearest(x, BBOX_SHAPE)
        if small.dtype.kind == "f":
            small = np.nan_to_num(small)
        low, high = (float(v) for v in np.percentile(small, m.input.intensity.percentiles))
        if high <= low:
            raise NoBrainFound("no brain found in this volume: its voxels are (almost) all alike")
        small = normalise(small, low, high)
    context.cancel.check()
    with context.stage("inference"):
        context.report(Progress(1, 4, "inference: locating the brain"))
        p_small = context.predict(BBOX_MODEL, small[None, None])[0, 1]
    with context.stage("postprocess"):
        box = bounding_box(largest_component(p_small > 0.5), x.shape)
    context.cancel.check()
    with context.stage("preprocess"):
        crop = normalise(resize_nearest(x[box], shape), low, high)
        del x
    with context.stage("inference"):
        context.report(Progress(2, 4, "inference: brain mask"))
        p_crop = context.predict(m.model, crop[None, None])[0, 1]
        del crop
    context.cancel.check()
    with context.stage("postprocess"):
        context.report(Progress(3, 4, "post-processing"))
        # deepbet resizes the probability back into the box (nearest), thresholds it there and keeps the largest
        # region with its holes filled.  Resizing repeats crop voxels in runs, which keeps regions and holes
        # as they are: all of that is done on the crop voxels the resize reads (one per run), then expanded.
        picks = [nearest_index(n, s.stop - s.start) for n, s in zip(p_crop.shape, box)]
        starts, lengths = zip(*(grid.runs(p) for p in picks))
        q = quantise(take_read(p_crop, [p[r] for p, r in zip(picks, starts)]))  # brain probability as 0..255
        del p_crop
        inside = largest_filled(q > m.output.threshold * 255.0)
        region = grid.nonzero_box(inside)  # the brain's read voxels (None: no brain above the threshold)
        # where each read voxel's run lies along the model axes (positions in the reoriented volume)
        runs = [(s.start + r, n) for s, r, n in zip(box, starts, lengths)]
        finding = None if region is None else region_on_runs(
            inside, q, runs, model_to_ijk(perm, flips, volume.shape), volume, m, m.labels[0], box=region)
    context.cancel.check()
    with context.stage("map_back"):
        labels = np.zeros(volume.shape, np.uint8)
        if region is not None:  # the region's read voxels repeated by their runs, put back in the source order
            expanded = grid.repeat_runs(inside[region], [n[r] for n, r in zip(lengths, region)])
            model_box = tuple(slice(int(first[r.start]), int(first[r.stop - 1] + n[r.stop - 1]))
                              for (first, n), r in zip(runs, region))
            copy_blocked(labels[restore_box(model_box, perm, flips, volume.shape)], restore(expanded, perm, flips))
    context.report(Progress(4, 4, "done"))
    return Measured(labels, () if finding is None else (finding,))


def take_read(x: np.ndarray, index: list[np.ndarray]) -> np.ndarray:
    """``x[np.ix_(*index)]``, taking whole planes or rows along one axis at a time and skipping the axes that
    keep every index in order (``x`` itself when all do)."""
    for axis, i in enumerate(index):
        if i.size != x.shape[axis] or not np.array_equal(i, np.arange(i.size)):
            x = np.take(x, i, axis=axis)
    return x


def quantise(p: np.ndarray) -> np.ndarray:
    """Probabilities 0..1 as uint8 0..255 (rounded): the threshold test on them is the one on the probability
    (to 1/510), and a quarter of the bytes to move.  Overwrites ``p``."""
    p *= np.float32(255.0)
    np.rint(p, out=p)
    return p.astype(np.uint8)


def model_to_ijk(perm, flips, source_shape) -> np.ndarray:
    """4x4 mapping positions along the model's axes (reoriented array, ``x0, x1, x2``) to source (i, j, k)."""
    out = np.zeros((4, 4))
    out[3, 3] = 1.0
    for n in range(3):
        c = 2 - perm[n]  # the source index (i, j, k) of source array axis perm[n]
        if flips[n]:
            out[c, n], out[c, 3] = -1.0, source_shape[perm[n]] - 1.0
        else:
            out[c, n] = 1.0
    return out


def axis_map(affine: np.ndarray, letters: str) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """How to re-order the source array ``[k, j, i]`` to the model's axes (no resampling).

    The model's array axis ``n`` points along the letter ``letters[2 - n]``; it takes the source axis
    closest to that direction (``perm[n]``), reversed where they point opposite ways (``flips[n]``).
    """
    target = grid.orientation_matrix(letters)
    source = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    perm: list[int] = []
    flips: list[bool] = []
    for n in range(3):
        want = target[:, 2 - n]
        dots = {a: float(source[:, 2 - a] @ want) for a in range(3) if a not in perm}
        best = max(dots, key=lambda a: abs(dots[a]))
        perm.append(best)
        flips.append(dots[best] < 0)
    return tuple(perm), tuple(flips)


def reorient(voxels: np.ndarray, perm, flips) -> np.ndarray:
    """The source voxels in the model's axis order: a view (no copy, the source dtype kept)."""
    x = voxels.transpose(perm)
    return x[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]


def restore(x: np.ndarray, perm, flips) -> np.ndarray:
    """Inverse of :func:`reorient` (on any array in the model's axis order)."""
    x = x[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]
    return x.transpose(np.argsort(perm))


def restore_box(box: tuple[slice, ...], perm, flips, source_shape) -> tuple[slice, ...]:
    """The source-array slices covering the model-order box ``box``."""
    out: list[slice] = [slice(None)] * 3
    for n, (s, f) in enumerate(zip(box, flips)):
        length = source_shape[perm[n]]
        out[perm[n]] = slice(length - s.stop, length - s.start) if f else s
    return tuple(out)


def nearest_index(n: int, o: int) -> np.ndarray:
    """The input index each of ``o`` output voxels reads when ``n`` voxels are resized to ``o`` (voxel centres)."""
    return np.minimum(((np.arange(o) + 0.5) * (n / o)).astype(np.int64), n - 1)


def resize_nearest(x: np.ndarray, shape) -> np.ndarray:
    """Nearest-neighbour resize sampling each output voxel's centre (PyTorch's ``nearest-exact``).

    ``x`` is often a transposed view of the scan: the voxels are gathered along its axes in memory order --
    at once where the output is much smaller than ``x``, else whole planes, then rows, then voxels, skipping
    the axes that keep every index (measured faster for each case) -- then put in C order by a blocked copy."""
    index = [nearest_index(n, o) for n, o in zip(x.shape, shape)]
    order = sorted(range(3), key=lambda a: -abs(x.strides[a]))  # slowest-varying axis first
    gathered = x.transpose(order)
    wanted = [index[a] for a in order]
    gathered = gathered[np.ix_(*wanted)] if 2 * int(np.prod(shape)) < x.size else take_read(gathered, wanted)
    gathered = gathered.transpose(np.argsort(order))
    out = np.empty(gathered.shape, gathered.dtype)
    copy_blocked(out, gathered)
    return out


def copy_blocked(out: np.ndarray, x: np.ndarray, planes: int = 4) -> None:
    """``out[...] = x`` for 3-D arrays of one shape whose fastest-varying axes differ (one is a transposed view
    of the other's layout): a few planes across the third axis at a time, so that what each step reads and
    writes stays in the processor's cache -- about four times faster than one strided copy of the whole."""
    fast_out = int(np.argmin([abs(s) for s in out.strides]))
    fast_x = int(np.argmin([abs(s) for s in x.strides]))
    if fast_out == fast_x or x.ndim != 3:
        out[...] = x
        return
    across = ({0, 1, 2} - {fast_out, fast_x}).pop()
    for start in range(0, x.shape[across], planes):
        step = tuple(slice(start, start + planes) if a == across else slice(None) for a in range(3))
        out[step] = x[step]


def normalise(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip to ``low..high`` scaled to 0..1, standardise, then mean 0.449 / sd 0.226 (float32, new array).

    A chunk at a time, each step on a chunk while it is in the processor's cache: one pass converts, clips
    and sums (in float64), a second scales."""
    y = np.empty(x.shape, np.float32)
    source, flat = np.ascontiguousarray(x).reshape(-1), y.reshape(-1)
    offset, inverse = np.float32(low), np.float32(1.0 / max(high - low, 1e-6))
    total = squares = 0.0
    for start in range(0, flat.size, _CHUNK):
        c = flat[start:start + _CHUNK]
        c[...] = source[start:start + _CHUNK]
        if x.dtype.kind == "f":
            np.nan_to_num(c, copy=False)
        c -= offset
        c *= inverse
        np.clip(c, 0.0, 1.0, out=c)
        wide = c.astype(np.float64)
        total += float(wide.sum())
        squares += float(wide @ wide)
    n = flat.size
    mean = total / n
    sd = max((squares - n * mean * mean) / max(n - 1, 1), 0.0) ** 0.5
    scale = np.float32(0.226 / max(sd, 1e-6))
    shift = np.float32(0.449 - mean * (0.226 / max(sd, 1e-6)))
    for start in range(0, flat.size, _CHUNK):
        c = flat[start:start + _CHUNK]
        c *= scale
        c += shift  # (y - mean) * scale + 0.449
    return y


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of ``mask`` (uint8 0/1); all zero when ``mask`` is empty."""
    mask = mask.astype(np.uint8, copy=False)
    labelling = sitk.ConnectedComponentImageFilter()
    labelling.FullyConnectedOn()
    components = labelling.Execute(sitk.GetImageFromArray(mask))
    if labelling.GetObjectCount() <= 1:  # the mask is one region (or empty): it is its own largest
        return mask
    shape = sitk.LabelShapeStatisticsImageFilter()  # the sizes, without relabelling the whole image by size
    shape.ComputePerimeterOff()
    shape.Execute(components)
    regions = shape.GetLabels()
    largest = min(regions, key=lambda r: (-shape.GetNumberOfPixels(r), r))  # a tie: the first, as relabelling
    return (sitk.GetArrayViewFromImage(components) == largest).view(np.uint8)


def largest_filled(mask: np.ndarray) -> np.ndarray:
    """``fill_holes(largest_component(mask))``, labelled only inside the box around the mask: every region
    lies in it, and a background voxel on its faces touches background outside it, which reaches the array's
    border -- so the box's faces stand for the border (a third of the voxels fewer on deepbet's crop)."""
    box = grid.nonzero_box(mask)
    out = np.zeros(mask.shape, np.uint8)
    if box is not None:
        out[box] = fill_holes(largest_component(mask[box]))
    return out


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` (uint8 0/1) with its holes filled: every background region (face-connected) that does not
    reach the array's border becomes foreground -- what SimpleITK's BinaryFillhole gives, in one labelling."""
    image = sitk.ConnectedComponent(sitk.GetImageFromArray((mask == 0).view(np.uint8)), False)
    background = sitk.GetArrayViewFromImage(image)  # valid while ``image`` lives
    faces = [background[0], background[-1], background[:, 0], background[:, -1], background[:, :, 0],
             background[:, :, -1]]
    outside = np.unique(np.concatenate([f.ravel() for f in faces]))
    outside = outside[outside > 0]  # label 0 is the mask itself: kept
    if outside.size == 1:  # the usual case: one background region around the mask
        return (background != outside[0]).view(np.uint8)
    keep = np.ones(int(background.max()) + 1, np.uint8)
    keep[outside] = 0
    return keep[background]


def bounding_box(mask_small: np.ndarray, shape) -> tuple[slice, ...]:
    """Box around the brain of ``mask_small``, scaled to ``shape`` and widened by the margin."""
    box = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        planes = np.flatnonzero(mask_small.mean(axis=others) > BBOX_MIN_FRACTION)
        if planes.size == 0:
            raise NoBrainFound("no brain found in this volume (is it a head scan?)")
        scale = shape[axis] / mask_small.shape[axis]
        centre = np.round((planes.max() + 1 + planes.min()) / 2 * scale)
        size = np.round((planes.max() + 1 - planes.min()) * scale * (1 + 2 * BBOX_MARGIN))
        box.append(slice(max(0, int(centre - size / 2)), min(shape[axis], int(centre + size / 2))))
    return tuple(box)
