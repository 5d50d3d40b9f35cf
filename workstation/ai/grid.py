"""Pre-processing: the model's grid, resampling between grids with SimpleITK, and intensity scaling.

Grids are described as Volumes (voxels ``[k, j, i]``, index->LPS affine); SimpleITK images are in LPS
too, so the bridge only has to carry spacing, origin and direction across.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from workstation.ai.manifest import InputSpec, IntensitySpec, Normalisation
from workstation.model.volume import Volume

#: Slices per step of the intensity scaling (a 256 x 256 float32 slice is 256 KiB).
_NORMALISE_SLAB = 4

#: Unit LPS vector each orientation letter points toward.
_LETTER = {"L": (1, 0, 0), "R": (-1, 0, 0), "P": (0, 1, 0), "A": (0, -1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}


def orientation_matrix(letters: str) -> np.ndarray:
    """3x3 matrix whose columns are the LPS unit vectors of the i, j, k axes named by ``letters``."""
    return np.array([_LETTER[c] for c in letters.upper()], dtype=float).T


def model_grid(volume: Volume, spec: InputSpec) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The model grid's affine and shape ``(k, j, i)``, centred on the source volume.

    With no ``size`` in the manifest the grid just covers the source volume's extent.
    """
    direction = orientation_matrix(spec.orientation)
    spacing = np.asarray(spec.spacing_mm, float)
    if spec.size is not None:
        size = np.asarray(spec.size, int)
    else:
        ks, js, is_ = volume.shape
        corners = np.array([[i, j, k] for i in (0, is_ - 1) for j in (0, js - 1) for k in (0, ks - 1)], float)
        extent = np.ptp(volume.index_to_lps(corners) @ direction, axis=0)
        size = np.maximum(1, np.ceil(extent / spacing + 1).astype(int))
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing
    affine[:3, 3] = volume.center_lps() - affine[:3, :3] @ ((size - 1) / 2.0)
    return affine, (int(size[2]), int(size[1]), int(size[0]))


def to_sitk(voxels: np.ndarray, affine: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(voxels)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(v) for v in affine[:3, 3]])
    image.SetDirection([float(v) for v in (affine[:3, :3] / spacing).ravel()])
    return image


def resample(image: sitk.Image, affine: np.ndarray, shape: tuple[int, int, int], *, labels: bool,
             fill: float = 0.0, pixel_type: int | None = None) -> np.ndarray:
    """Resample ``image`` onto the grid (affine, shape ``(k, j, i)``): nearest for labels, else linear."""
    return sitk.GetArrayFromImage(resample_image(image, affine, shape, labels=labels, fill=fill,
                                                 pixel_type=pixel_type))


def resample_image(image: sitk.Image, affine: np.ndarray, shape: tuple[int, int, int], *, labels: bool,
                   fill: float = 0.0, pixel_type: int | None = None) -> sitk.Image:
    """:func:`resample`, the SimpleITK image itself (copy its pixels once, where they go)."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return sitk.Resample(
        image, [int(shape[2]), int(shape[1]), int(shape[0])], sitk.Transform(),
        sitk.sitkNearestNeighbor if labels else sitk.sitkLinear,
        [float(v) for v in affine[:3, 3]], [float(s) for s in spacing],
        [float(v) for v in (affine[:3, :3] / spacing).ravel()], float(fill),
        image.GetPixelID() if pixel_type is None else pixel_type,
    )


def to_model_grid(volume: Volume, spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """The source voxels resampled onto the model grid as float32 ``[k, j, i]``, and that grid's affine."""
    affine, shape = model_grid(volume, spec)
    return sitk.GetArrayFromImage(_on_model_grid(volume, affine, shape)), affine


def model_input(volume: Volume, spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """:func:`to_model_grid` and :func:`normalise` (``spec.intensity``) in one: the same values, scaled straight
    from SimpleITK's pixels into the array the model is given (one copy of the grid fewer)."""
    affine, shape = model_grid(volume, spec)
    image = _on_model_grid(volume, affine, shape)
    data = normalise(sitk.GetArrayViewFromImage(image), spec.intensity, out=np.empty(shape, np.float32))
    del image  # the view is read before this: the scaled values are in ``data``
    return data, affine


def _on_model_grid(volume: Volume, affine: np.ndarray, shape: tuple[int, int, int]) -> sitk.Image:
    fill = float(volume.info.padding_value if volume.info.padding_value is not None else volume.voxels.min())
    image = to_sitk(volume.voxels, volume.affine)
    return resample_image(image, affine, shape, labels=False, fill=fill, pixel_type=sitk.sitkFloat32)


def normalise(data: np.ndarray, spec: IntensitySpec, out: np.ndarray | None = None) -> np.ndarray:
    """Scale intensities (float32) as the manifest says, in place or into ``out``; returns the result."""
    result = data if out is None else out
    method = spec.normalise
    if method is Normalisation.NONE:
        if out is not None:
            out[...] = data
        return result
    clip = method is not Normalisation.ZSCORE
    if method is Normalisation.ZSCORE:
        sample = data[::2, ::2, ::2]
        offset, step = np.float32(sample.mean()), np.float32(max(float(sample.std()), 1e-6))
    else:
        if method is Normalisation.WINDOW:
            lo, hi = spec.window  # validated present
        elif method is Normalisation.MINMAX:
            lo, hi = float(data.min()), float(data.max())
        else:  # robust: percentiles of the voxels above the background minimum
            sample = data[::2, ::2, ::2]
            sample = sample[sample > sample.min()]
            if sample.size == 0:
                sample = data.ravel()[:1]
            lo, hi = (float(v) for v in np.percentile(sample, spec.percentiles))
        offset, step = np.float32(lo), np.float32(max(hi - lo, 1e-6))

    def scale(source: np.ndarray, into: np.ndarray) -> None:
        np.subtract(source, offset, out=into)
        into /= step
        if clip:
            np.clip(into, 0.0, 1.0, out=into)

    if data.ndim == 0 or data.shape[0] <= _NORMALISE_SLAB:
        scale(data, result)
        return result
    # the steps slab by slab (each slab stays in a core's cache), the slabs side by side: numpy lets go of the GIL
    with ThreadPoolExecutor(max_workers=workers()) as pool:
        list(pool.map(lambda z: scale(data[z:z + _NORMALISE_SLAB], result[z:z + _NORMALISE_SLAB]),
                      range(0, data.shape[0], _NORMALISE_SLAB)))
    return result


def workers() -> int:
    """Threads for the steps that release the GIL (numpy, SimpleITK): the cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def nonzero_box(labels: np.ndarray) -> tuple[slice, slice, slice] | None:
    """The smallest box ``[k, j, i]`` holding every non-zero label (None when there is none)."""
    # two passes over the array: along k (slices holding a label), and down to one [j, i] plane
    plane = labels.any(axis=0)
    box = []
    for hit in (labels.any(axis=(1, 2)), plane.any(axis=1), plane.any(axis=0)):
        at = np.flatnonzero(hit)
        if at.size == 0:
            return None
        box.append(slice(int(at[0]), int(at[-1]) + 1))
    return (box[0], box[1], box[2])


def sub_volume(volume: Volume, box: tuple[slice, slice, slice]) -> Volume:
    """The part of ``volume`` inside ``box`` (a view) with its affine moved so that positions stay the same."""
    affine = volume.affine.copy()
    affine[:3, 3] += affine[:3, :3] @ np.array([box[2].start, box[1].start, box[0].start], float)
    return Volume(volume.voxels[box], affine, volume.info)


def region_findings_in_box(find, labels: np.ndarray, confidence: np.ndarray, volume: Volume, manifest) -> list:
    """``find(labels, confidence, volume, manifest)`` run on the box around the labels only: the same
    regions (positions in LPS mm are unchanged), without scanning the empty rest of the source grid."""
    box = nonzero_box(labels)
    if box is None:
        return []
    return find(labels[box], confidence[box], sub_volume(volume, box), manifest)


def source_box_of(model_box: tuple[slice, slice, slice], model_affine: np.ndarray,
                  volume: Volume) -> tuple[slice, slice, slice] | None:
    """The part of the volume's grid that nearest-neighbour sampling can take from ``model_box`` (a box
    of the model grid): its corners, widened by a model voxel, mapped into the source grid (None: outside)."""
    (k0, k1), (j0, j1), (i0, i1) = ((s.start - 1, s.stop) for s in model_box)
    corners = np.array([[i, j, k, 1.0] for i in (i0, i1) for j in (j0, j1) for k in (k0, k1)])
    ijk = volume.lps_to_index((corners @ model_affine.T)[:, :3])
    shape_ijk = np.array(volume.shape[::-1])
    lo = np.clip(np.floor(ijk.min(axis=0)).astype(int) - 1, 0, shape_ijk)
    hi = np.clip(np.ceil(ijk.max(axis=0)).astype(int) + 2, 0, shape_ijk)
    if np.any(hi <= lo):
        return None
    return (slice(int(lo[2]), int(hi[2])), slice(int(lo[1]), int(hi[1])), slice(int(lo[0]), int(hi[0])))


def nearest_to_source(values: np.ndarray, model_affine: np.ndarray,
                      volume: Volume) -> tuple[np.ndarray, tuple[slice, slice, slice]] | None:
    """``values`` (model grid ``[k, j, i]``) sampled by nearest neighbour onto the volume's grid -- only onto
    the part of it that can receive a non-zero value: returns that part and where it goes in the volume's
    grid (None when every value is 0 or the grids do not meet).  Elsewhere the result would be 0.

    Grids with parallel axes (in any order) are mapped by repeating model voxels along each axis (several
    times faster, the same voxels); others (an oblique source) by SimpleITK's resampling.
    """
    box = nonzero_box(values)
    if box is None:
        return None
    target = source_box_of(box, model_affine, volume)
    if target is None:
        return None
    part = sub_volume(Volume(np.broadcast_to(np.uint8(0), volume.shape), volume.affine), target)
    sampling = nearest_sampling(model_affine, values.shape, part)
    if sampling is not None:
        out = np.zeros(part.shape, values.dtype)
        sampling.expand_into(out, sampling.compress(values))
        return out, target
    # an oblique source: the corners of the model box reach far beyond the values' own voxels into the source
    # grid.  Bound the part by where the non-zero voxels themselves land, and resample it slab by slab, each
    # slab only over the box its share of them can reach (most of a box around a head is air)
    reach = _Reach.of(values[box], sub_volume(Volume(values, model_affine), box).affine, volume)
    tight = None if reach is None else reach.box(volume.shape)
    if tight is None:
        return None
    target = _intersect(target, tight)
    if target is None:
        return None
    out = np.zeros(tuple(s.stop - s.start for s in target), values.dtype)
    image = to_sitk(values, model_affine)
    anywhere = Volume(np.broadcast_to(np.uint8(0), volume.shape), volume.affine)
    for slab in reach.slabs(target, volume.shape):
        part = sub_volume(anywhere, slab)
        piece = resample_image(image, part.affine, part.shape, labels=True)
        out[tuple(slice(s.start - t.start, s.stop - t.start) for s, t in zip(slab, target))] = \
            sitk.GetArrayViewFromImage(piece)
        del piece
    return out, target


#: Source slices per slab, at least, when an oblique mapping goes slab by slab; and the most slabs.
_SLAB_SLICES = 16
_MAX_SLABS = 16


def _intersect(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, slice, slice] | None:
    box = tuple(slice(max(p.start, q.start), min(p.stop, q.stop)) for p, q in zip(a, b))
    return None if any(s.stop <= s.start for s in box) else (box[0], box[1], box[2])


@dataclass(frozen=True, eq=False)
class _Reach:
    """Where the non-zero voxels of a model grid land in a source grid's continuous indices ``(i, j, k)``.

    A source voxel reads model voxel ``v`` when its continuous model index ``u`` is within half a voxel of
    ``v`` on every axis; source index ``x = N (u - c)`` is linear in ``u``, so along source axis ``a`` it lies
    within ``half[a] = 0.5 * sum|N[a]|`` of ``N[a] (v - c)``.  Along a row of model voxels ``N v`` moves on a
    straight line: the row's non-zero voxels all lie on the segment from its first (``start``) to its last
    (``end``) non-zero voxel.
    """

    start: np.ndarray  # [rows, 3] source (i, j, k) of each row's first non-zero voxel
    end: np.ndarray  # [rows, 3] ... and of its last
    half: np.ndarray  # [3] half a model voxel, in source voxels, along each source axis

    @classmethod
    def of(cls, values: np.ndarray, model_affine: np.ndarray, volume: Volume) -> _Reach | None:
        nonzero = values != 0
        k, j = np.nonzero(nonzero.any(axis=2))  # rows holding a non-zero voxel
        if k.size == 0:
            return None
        first = np.argmax(nonzero, axis=2)[k, j]
        last = values.shape[2] - 1 - np.argmax(nonzero[:, :, ::-1], axis=2)[k, j]
        to_source = np.linalg.inv(volume.affine) @ model_affine  # model (i, j, k, 1) -> source continuous index

        def at(i: np.ndarray) -> np.ndarray:
            return np.stack([i, j, k], axis=1).astype(float) @ to_source[:3, :3].T + to_source[:3, 3]

        return cls(at(first), at(last), 0.5 * np.abs(to_source[:3, :3]).sum(axis=1))

    def _around(self, lo: np.ndarray, hi: np.ndarray, shape: tuple[int, int, int]) -> tuple[slice, slice, slice] | None:
        """The box ``[k, j, i]`` of source voxels within reach of continuous indices lo..hi, a voxel to spare."""
        shape_ijk = np.array(shape[::-1])
        a = np.clip(np.floor(lo - self.half).astype(int) - 1, 0, shape_ijk)
        b = np.clip(np.ceil(hi + self.half).astype(int) + 2, 0, shape_ijk)
        if np.any(b <= a):
            return None
        return (slice(int(a[2]), int(b[2])), slice(int(a[1]), int(b[1])), slice(int(a[0]), int(b[0])))

    def box(self, shape: tuple[int, int, int]) -> tuple[slice, slice, slice] | None:
        """A box of the source grid (``shape``) holding every voxel that can read a non-zero value."""
        ends = np.concatenate([self.start, self.end])
        return self._around(ends.min(axis=0), ends.max(axis=0), shape)

    def slabs(self, target: tuple[slice, slice, slice],
              shape: tuple[int, int, int]) -> list[tuple[slice, slice, slice]]:
        """``target`` cut into slabs along its first axis (source k), each narrowed to the voxels of the slab
        that can read a non-zero value: the parts of the rows' segments whose k is within reach of the slab."""
        k0, k1 = target[0].start, target[0].stop
        count = max(1, min(_MAX_SLABS, (k1 - k0) // _SLAB_SLICES))
        edges = np.unique(np.linspace(k0, k1, count + 1).round().astype(int))
        p, d = self.start, self.end - self.start
        slabs = []
        for s0, s1 in zip(edges[:-1], edges[1:]):
            lo, hi = s0 - self.half[2] - 1.0, s1 - 1 + self.half[2] + 1.0  # k of a row point that can reach it
            with np.errstate(divide="ignore", invalid="ignore"):
                ta, tb = (lo - p[:, 2]) / d[:, 2], (hi - p[:, 2]) / d[:, 2]
            flat = d[:, 2] == 0  # rows at one k: all of the row or none of it
            inside = (p[:, 2] >= lo) & (p[:, 2] <= hi)
            t0 = np.maximum(np.where(flat, np.where(inside, 0.0, np.inf), np.minimum(ta, tb)), 0.0)
            t1 = np.minimum(np.where(flat, np.where(inside, 1.0, -np.inf), np.maximum(ta, tb)), 1.0)
            hit = t0 <= t1
            if not hit.any():
                continue
            a = p[hit] + t0[hit, None] * d[hit]
            b = p[hit] + t1[hit, None] * d[hit]
            box = self._around(np.minimum(a, b).min(axis=0), np.maximum(a, b).max(axis=0), shape)
            if box is not None:
                box = _intersect((slice(int(s0), int(s1)),) + box[1:], target)
            if box is not None:
                slabs.append(box)
        return slabs


def source_box_of_voxels(values: np.ndarray, model_affine: np.ndarray,
                         volume: Volume) -> tuple[slice, slice, slice] | None:
    """The part of the volume's grid that nearest-neighbour sampling of the model grid (``values`` ``[k, j, i]``
    on ``model_affine``) can give a non-zero value -- a box holding every such source voxel, a voxel wider on
    each side than exact (None: no non-zero value, or the grids do not meet).  See :class:`_Reach`.
    """
    reach = _Reach.of(values, model_affine, volume)
    return None if reach is None else reach.box(volume.shape)


# -- nearest-neighbour sampling between grids with parallel axes ---------------------------------------------
@dataclass(frozen=True, eq=False)
class NearestSampling:
    """How a source grid samples a model grid by nearest neighbour when the two grids' axes are parallel
    (in any order and direction), as SimpleITK's nearest-neighbour resampling does, axis by axis.

    Source array axis ``n`` reads model array axis ``axes[n]``.  Along it the source positions
    ``start[n]`` .. ``start[n] + sum(length[n]) - 1`` fall inside the model grid; they come in runs of
    consecutive positions reading the same model index: run ``r`` has ``length[n][r]`` positions and reads
    model index ``index[n][r]``.  The *compressed* grid holds one voxel per run on every axis (the model
    voxels the source sees, in source order); expanding it by the run lengths gives the source grid.
    """

    axes: tuple[int, int, int]
    start: tuple[int, int, int]
    index: tuple[np.ndarray, np.ndarray, np.ndarray]
    length: tuple[np.ndarray, np.ndarray, np.ndarray]

    def compress(self, model_array: np.ndarray) -> np.ndarray:
        """The model voxels the source grid reads, one per run, as a contiguous array in source axis order."""
        moved = model_array.transpose(self.axes)
        return np.ascontiguousarray(moved[np.ix_(*self.index)])

    def run_starts(self, n: int) -> np.ndarray:
        """First source position of every run along source axis ``n``."""
        return self.start[n] + np.concatenate(([0], np.cumsum(self.length[n])[:-1])).astype(np.int64)

    def expand_into(self, out: np.ndarray, compressed: np.ndarray) -> None:
        """Write ``compressed`` expanded by the run lengths into ``out`` (the source grid); only the part of
        the source grid holding the compressed grid's non-zero box is written, the rest is left alone."""
        box = nonzero_box(compressed)
        if box is None:
            return
        lengths = [self.length[n][box[n]] for n in range(3)]
        firsts = [int(self.run_starts(n)[box[n].start]) for n in range(3)]
        out[tuple(slice(f, f + int(n.sum())) for f, n in zip(firsts, lengths))] = repeat_runs(compressed[box], lengths)


def runs(picked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each run of equal consecutive values of ``picked`` starts, and how long it is."""
    starts = np.flatnonzero(np.diff(picked, prepend=picked[:1] - 1))
    return starts, np.diff(np.append(starts, picked.size))


def repeat_runs(x: np.ndarray, lengths) -> np.ndarray:
    """``x`` with its voxels repeated ``lengths[a][i]`` times along each axis ``a``."""
    for axis, n in enumerate(lengths):
        x = np.repeat(x, n, axis=axis)
    return x


def nearest_sampling(model_affine: np.ndarray, model_shape: tuple[int, int, int],
                     volume: Volume) -> NearestSampling | None:
    """The :class:`NearestSampling` of ``volume``'s grid reading the model grid, or None when the grids'
    axes are not parallel (an oblique source: resample with SimpleITK instead) or do not overlap."""
    to_model = np.linalg.inv(model_affine) @ volume.affine  # source index (i, j, k, 1) -> model continuous index
    source_ijk = volume.shape[::-1]
    model_ijk = tuple(model_shape)[::-1]
    pairs: dict[int, int] = {}  # source ijk axis -> model ijk axis
    for c in range(3):
        column = np.abs(to_model[:3, c])
        r = int(np.argmax(column))
        # every other model axis must move by well under a thousandth of a voxel across the whole source axis
        if r in pairs.values() or np.any(np.delete(column, r) * source_ijk[c] > 1e-3):
            return None
        pairs[c] = r
    axes, start, index, length = [], [], [], []
    for n in range(3):  # source array axis n = source ijk axis 2 - n
        c = 2 - n
        r = pairs[c]
        positions = np.arange(source_ijk[c])
        # SimpleITK's nearest neighbour rounds half up; the other source axes contribute (nearly) nothing
        picked = np.floor(to_model[r, c] * positions + to_model[r, 3] + 0.5).astype(np.int64)
        inside = np.flatnonzero((picked >= 0) & (picked < model_ijk[r]))
        if inside.size == 0:
            return None
        picked = picked[inside[0]:inside[-1] + 1]
        starts, lengths = runs(picked)
        axes.append(2 - r)
        start.append(int(inside[0]))
        index.append(picked[starts])
        length.append(lengths.astype(np.int64))
    return NearestSampling((axes[0], axes[1], axes[2]), (start[0], start[1], start[2]),
                           (index[0], index[1], index[2]), (length[0], length[1], length[2]))
