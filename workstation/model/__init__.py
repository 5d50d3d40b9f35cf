"""The workstation's data model: pure Python + numpy, no Qt, VTK, pydicom or network."""

from workstation.model.refs import InstanceRef, SeriesRef, StudyRef
from workstation.model.volume import Photometric, Volume, VolumeInfo, Window, affine_from_geometry

__all__ = [
    "InstanceRef",
    "Photometric",
    "SeriesRef",
    "StudyRef",
    "Volume",
    "VolumeInfo",
    "Window",
    "affine_from_geometry",
]
