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
from workstation.ai.hooks import HookContext, InputRefused
from workstation.model.tasks import Progress
from workstation.model.volume import Volume

BBOX_MODEL = "bbox_model.onnx"
BBOX_SHAPE = (128, 128, 128)  # the bounding-box network's input
BBOX_MARGIN = 0.1  # widen the box by this fraction of its size on each side
BBOX_MIN_FRACTION = 0.02  # a plane belongs to the box when this fraction of it is brain


class NoBrainFound(InputRefused):
    """The first stage found no brain in the volume."""


def infer(volume: Volume, context: HookContext) -> tuple[np.ndarray, np.ndarray]:
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
        # brain probability as 0..255 before resizing: a quarter of the bytes to move, and the
        # threshold test on it is the same as on the probability (to 1/510)
        q8 = np.rint(p_crop * np.float32(255.0)).astype(np.uint8)
        del p_crop
        # the largest region and its holes on the crop voxels the resize reads (one per run of box voxels
        # reading the same one): resizing repeats voxels, which keeps regions and holes as they are
        picks = [nearest_index(n, s.stop - s.start) for n, s in zip(q8.shape, box)]
        starts, lengths = zip(*(grid.runs(p) for p in picks))  # the first box voxel of each run, its length
        q_read = q8[np.ix_(*[p[r] for p, r in zip(picks, starts)])]
        del q8
        inside = grid.repeat_runs(fill_holes(largest_component(q_read > m.output.threshold * 255.0)), lengths)
        q = grid.repeat_runs(q_read, lengths)
    with context.stage("map_back"):
        labels = np.zeros(volume.shape, np.uint8)
        confidence = np.full(volume.shape, 255, np.uint8)  # outside the box: certainly not brain
        np.subtract(255, q, out=q, where=~inside.view(bool))  # confidence: of brain inside, of background outside
        target_box = restore_box(box, perm, flips, volume.shape)
        labels[target_box] = restore(inside, perm, flips)
        confidence[target_box] = restore(q, perm, flips)
    context.report(Progress(4, 4, "done"))
    return labels, confidence


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

    The gather walks ``x`` in its memory order (``x`` is often a transposed view of the scan), then one
    copy puts the result in C order: twice as fast as gathering along the view's own axes."""
    index = [nearest_index(n, o) for n, o in zip(x.shape, shape)]
    order = sorted(range(3), key=lambda a: -abs(x.strides[a]))  # slowest-varying axis first
    gathered = x.transpose(order)[np.ix_(*[index[a] for a in order])]
    return np.ascontiguousarray(gathered.transpose(np.argsort(order)))


def normalise(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip to ``low..high`` scaled to 0..1, standardise, then mean 0.449 / sd 0.226 (float32, new array)."""
    y = x.astype(np.float32)
    if x.dtype.kind == "f":
        np.nan_to_num(y, copy=False)
    y -= np.float32(low)
    y *= np.float32(1.0 / max(high - low, 1e-6))
    np.clip(y, 0.0, 1.0, out=y)
    mean, sd = mean_sd(y)
    scale = 0.226 / max(sd, 1e-6)
    y *= np.float32(scale)
    y += np.float32(0.449 - mean * scale)  # (y - mean) * scale + 0.449, in two passes
    return y


def mean_sd(y: np.ndarray, chunk: int = 1 << 20) -> tuple[float, float]:
    """Mean and sample standard deviation, summed in float64 a chunk at a time (no full-size temporaries)."""
    flat = y.reshape(-1)
    total = squares = 0.0
    for start in range(0, flat.size, chunk):
        c = flat[start:start + chunk].astype(np.float64)
        total += float(c.sum())
        squares += float(c @ c)
    n = flat.size
    mean = total / n
    return mean, max((squares - n * mean * mean) / max(n - 1, 1), 0.0) ** 0.5


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of ``mask`` (uint8 0/1); all zero when ``mask`` is empty."""
    components = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8, copy=False)), True)
    shape = sitk.LabelShapeStatisticsImageFilter()  # the sizes, without relabelling the whole image by size
    shape.ComputePerimeterOff()
    shape.Execute(components)
    regions = shape.GetLabels()
    if not regions:
        return np.zeros(mask.shape, np.uint8)
    largest = min(regions, key=lambda r: (-shape.GetNumberOfPixels(r), r))  # a tie: the first, as relabelling
    return sitk.GetArrayFromImage(sitk.BinaryThreshold(components, largest, largest, 1, 0)).astype(np.uint8, copy=False)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` (uint8 0/1) with its holes filled: every background region (face-connected) that does not
    reach the array's border becomes foreground -- what SimpleITK's BinaryFillhole gives, in one labelling."""
    image = sitk.ConnectedComponent(sitk.GetImageFromArray((mask == 0).view(np.uint8)), False)
    background = sitk.GetArrayViewFromImage(image)  # valid while ``image`` lives
    faces = [background[0], background[-1], background[:, 0], background[:, -1], background[:, :, 0],
             background[:, :, -1]]
    outside = np.unique(np.concatenate([f.ravel() for f in faces]))
    keep = np.ones(int(background.max()) + 1, np.uint8)  # label 0 is the mask itself: kept
    keep[outside[outside > 0]] = 0
    filled = keep[background]
    return filled


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
