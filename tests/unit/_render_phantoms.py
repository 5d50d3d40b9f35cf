"""Synthetic volumes for the render tests (numpy only) and a SimpleITK reader for the real-data checks."""

from __future__ import annotations

import numpy as np

from workstation.model.volume import Photometric, Volume, VolumeInfo, Window, affine_from_geometry

CT = VolumeInfo(modality="CT", units="HU", default_window=Window(40.0, 400.0), padding_value=-2048.0)


def rotation_z(deg: float) -> np.ndarray:
    t = np.radians(deg)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])


def blank(shape=(40, 64, 64), spacing=(1.0, 1.0, 2.0), rotation=None, origin=(-30.0, -40.0, 10.0), info=CT) -> Volume:
    """An all -1000 HU volume; ``rotation`` (3x3) turns its grid in patient space."""
    d = np.eye(3) if rotation is None else np.asarray(rotation, float)
    affine = affine_from_geometry(d[:, 0], d[:, 1], d[:, 2], spacing, np.asarray(origin, float))
    return Volume(np.full(shape, -1000, np.int16), affine, info)


def with_spheres(volume: Volume, centers_lps, radius_mm: float, value: int = 1000) -> Volume:
    """Copy of ``volume`` with bright balls at the given LPS centres."""
    k, j, i = np.indices(volume.shape)
    ijk = np.stack([i, j, k], axis=-1).astype(float)
    xyz = volume.index_to_lps(ijk)
    vox = volume.voxels.copy()
    for c in centers_lps:
        vox[np.linalg.norm(xyz - np.asarray(c, float), axis=-1) <= radius_mm] = value
    return Volume(vox, volume.affine, volume.info)


def monochrome1(volume: Volume) -> Volume:
    from dataclasses import replace

    return Volume(volume.voxels, volume.affine, replace(volume.info, photometric=Photometric.MONOCHROME1))


def load_real(dicom_dir) -> Volume:
    """The project loader when it exists, else SimpleITK (tests only)."""
    files = sorted(p for p in dicom_dir.rglob("*") if p.is_file())
    try:
        from workstation.dicom.series import load_series
    except ImportError:
        load_series = None
    if load_series is not None:
        return load_series(files)[0]
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(dicom_dir)))
    img = reader.Execute()
    d = np.asarray(img.GetDirection(), float).reshape(3, 3)
    affine = affine_from_geometry(d[:, 0], d[:, 1], d[:, 2], img.GetSpacing(), np.asarray(img.GetOrigin()))
    vox = sitk.GetArrayFromImage(img).astype(np.int16)
    return Volume(vox, affine, CT)
