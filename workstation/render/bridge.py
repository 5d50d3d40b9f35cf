"""numpy/:class:`Volume` <-> VTK image data.

Two placements of the same voxels are offered:

* :func:`volume_to_vtk` -- the image carries origin, spacing *and* direction matrix, so its physical
  coordinates are LPS mm (for filters and exporters that honour ``vtkImageData.DirectionMatrix``).
* :func:`volume_to_local_vtk` + :func:`prop_matrix` -- the image sits at the origin with identity
  direction and the rigid part of the affine goes into the prop's ``UserMatrix``.  The views use this form
  because every VTK mapper (the fixed-point ray caster included) honours prop matrices, while direction
  matrix support differs between mappers.
"""

from __future__ import annotations

import numpy as np
from workstation.render import _vtk as vtk
from vtkmodules.util import numpy_support

from workstation.model.volume import Volume


def _scalars(volume: Volume) -> vtk.vtkDataArray:
    vox = volume.voxels
    if vox.ndim != 3:
        raise ValueError(f"only scalar volumes are rendered, got voxels of shape {vox.shape}")
    # VTK wants x (column) fastest: a C-ordered [k, j, i] array flattened is exactly that, so no copy when
    # the array is already contiguous.  The reference is kept on the vtk array (deep=False keeps numpy's).
    flat = np.ascontiguousarray(vox).reshape(-1)
    if flat.dtype == np.bool_:
        flat = flat.astype(np.uint8)
    arr = numpy_support.numpy_to_vtk(flat, deep=False)
    arr._numpy_reference = flat  # keep the buffer alive as long as the vtk array
    arr.SetName("voxels")
    return arr


def _image(volume: Volume) -> vtk.vtkImageData:
    k, j, i = volume.shape
    img = vtk.vtkImageData()
    img.SetDimensions(i, j, k)
    img.SetSpacing(*volume.spacing)
    img.GetPointData().SetScalars(_scalars(volume))
    return img


def volume_to_vtk(volume: Volume) -> vtk.vtkImageData:
    """Zero-copy vtkImageData whose physical coordinates are LPS mm (origin, spacing, direction)."""
    img = _image(volume)
    img.SetOrigin(*volume.origin)
    img.SetDirectionMatrix(*np.asarray(volume.direction, float).reshape(-1))
    return img


def volume_to_local_vtk(volume: Volume) -> vtk.vtkImageData:
    """Zero-copy vtkImageData at the origin with identity direction; place it with :func:`prop_matrix`."""
    return _image(volume)


def prop_matrix(volume: Volume) -> vtk.vtkMatrix4x4:
    """Rigid index-mm -> LPS transform (direction columns + origin) for a prop's ``UserMatrix``."""
    m = np.eye(4)
    m[:3, :3] = volume.direction
    m[:3, 3] = volume.origin
    return numpy_to_matrix(m)


def numpy_to_matrix(m: np.ndarray) -> vtk.vtkMatrix4x4:
    out = vtk.vtkMatrix4x4()
    out.DeepCopy(np.asarray(m, float).reshape(-1).tolist())
    return out


def vtk_to_numpy_image(img: vtk.vtkImageData) -> np.ndarray:
    """Scalars of a vtkImageData as a [k, j, i] (or [k, j, i, c]) numpy view."""
    i, j, k = img.GetDimensions()
    arr = numpy_support.vtk_to_numpy(img.GetPointData().GetScalars())
    comps = img.GetNumberOfScalarComponents()
    return arr.reshape((k, j, i, comps) if comps > 1 else (k, j, i))
