"""Pre-processing: the model's grid, resampling between grids with SimpleITK, and intensity scaling.

Grids are described as Volumes (voxels ``[k, j, i]``, index->LPS affine); SimpleITK images are in LPS
too, so the bridge only has to carry spacing, origin and direction across.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from workstation.ai.manifest import InputSpec, IntensitySpec, Normalisation
from workstation.model.volume import Volume

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
    fill = float(volume.info.padding_value if volume.info.padding_value is not None else volume.voxels.min())
    image = to_sitk(volume.voxels, volume.affine)
    data = resample(image, affine, shape, labels=False, fill=fill, pixel_type=sitk.sitkFloat32)
    return data, affine


def normalise(data: np.ndarray, spec: IntensitySpec) -> np.ndarray:
    """Scale intensities in place (float32) as the manifest says; returns ``data``."""
    method = spec.normalise
    if method is Normalisation.NONE:
        return data
    if method is Normalisation.ZSCORE:
        sample = data[::2, ::2, ::2]
        data -= np.float32(sample.mean())
        data /= np.float32(max(float(sample.std()), 1e-6))
        return data
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
    data -= np.float32(lo)
    data /= np.float32(max(hi - lo, 1e-6))
    np.clip(data, 0.0, 1.0, out=data)
    return data


def nonzero_box(labels: np.ndarray) -> tuple[slice, slice, slice] | None:
    """The smallest box ``[k, j, i]`` holding every non-zero label (None when there is none)."""
    box = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(labels.any(axis=others))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
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
    image = resample_image(to_sitk(values, model_affine), part.affine, part.shape, labels=True)
    return sitk.GetArrayFromImage(image), target


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
