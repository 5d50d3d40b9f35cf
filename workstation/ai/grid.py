"""Pre-processing: the model's grid, resampling between grids with SimpleITK, and intensity scaling.

Grids are described as Volumes (voxels ``[k, j, i]``, index->LPS affine); SimpleITK images are in LPS
too, so the bridge only has to carry spacing, origin and direction across.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

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


def to_source_grid(labels: np.ndarray, confidence: np.ndarray, model_affine: np.ndarray,
                   volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """Labels (nearest) and confidence (linear, uint8) from the model grid onto the volume's grid.

    Only the part of the source grid that can receive a label is resampled: the box around the labels on
    the model grid, widened by a model voxel, mapped into the source grid.  Outside it the labels are 0
    (as a full resampling gives) and the confidence is 255; confidence is read inside labelled regions only.
    """
    out_labels = np.zeros(volume.shape, np.uint8)
    out_conf = np.full(volume.shape, 255, np.uint8)
    box = nonzero_box(labels)
    if box is None:
        return out_labels, out_conf
    (k0, k1), (j0, j1), (i0, i1) = ((s.start - 1, s.stop) for s in box)  # widened by one voxel
    corners = np.array([[i, j, k, 1.0] for i in (i0, i1) for j in (j0, j1) for k in (k0, k1)])
    ijk = volume.lps_to_index((corners @ model_affine.T)[:, :3])
    shape_ijk = np.array(volume.shape[::-1])
    lo = np.clip(np.floor(ijk.min(axis=0)).astype(int) - 1, 0, shape_ijk)
    hi = np.clip(np.ceil(ijk.max(axis=0)).astype(int) + 2, 0, shape_ijk)
    if np.any(hi <= lo):
        return out_labels, out_conf
    target = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    sub = sub_volume(Volume(np.broadcast_to(np.uint8(0), volume.shape), volume.affine), target)

    def into_place(out: np.ndarray, values: np.ndarray, labels: bool) -> None:
        image = resample_image(to_sitk(values, model_affine), sub.affine, sub.shape, labels=labels,
                               pixel_type=sitk.sitkUInt8)
        out[target] = sitk.GetArrayViewFromImage(image)  # one copy, straight into place

    with ThreadPoolExecutor(max_workers=1) as pool:  # SimpleITK lets go of the GIL: both at once
        job = pool.submit(into_place, out_conf, confidence, False)
        into_place(out_labels, labels, True)
        job.result()
    return out_labels, out_conf
