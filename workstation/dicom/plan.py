"""What :func:`workstation.dicom.series.examine` finds out from headers, for the loader to act on."""

from __future__ import annotations

import enum
from dataclasses import dataclass

Vec3 = tuple[float, float, float]


class SeriesKind(enum.Enum):
    """How a series is turned into volumes."""

    VOLUME = "volume"  # a stack of single-frame slices
    MULTIFRAME = "multiframe"  # one multi-frame file with per-frame geometry (enhanced CT/MR, ...)
    IMAGES = "images"  # a projection image or cine without 3D geometry: a 1-slice (or frames) volume


@dataclass(frozen=True)
class SliceSource:
    """One slice of the acquired stack: a single-frame file, or one frame of a multi-frame file."""

    path: str
    sop_instance_uid: str
    frame: int = 0  # 0-based frame index inside the file
    position: Vec3 | None = None  # ImagePositionPatient (LPS mm) of the first transmitted pixel
    raw_offset: int | None = None  # where native little-endian pixel data starts (None: decode via pydicom)
    slope: float = 1.0
    intercept: float = 0.0


@dataclass(frozen=True)
class SeriesPlan:
    """One loadable stack found in a series, with everything the loader needs except the pixels.

    ``files`` and ``positions_mm`` follow the slice order along the slice normal (ascending).  For a
    multi-frame file, ``files`` holds that one path and ``positions_mm`` has one entry per frame.
    """

    series_instance_uid: str
    study_instance_uid: str
    modality: str
    series_description: str
    series_number: int | None
    kind: SeriesKind
    files: tuple[str, ...]
    positions_mm: tuple[float, ...]
    stack_key: str  # what set this stack apart inside its series ("" when the series was not split)
    warnings: tuple[str, ...]
    slices: tuple[SliceSource, ...] = ()
    rows: int = 0
    columns: int = 0
    #: ImageOrientationPatient[:3]: the direction of increasing column index i.
    row_cosine: Vec3 = (1.0, 0.0, 0.0)
    #: ImageOrientationPatient[3:]: the direction of increasing row index j.
    column_cosine: Vec3 = (0.0, 1.0, 0.0)
    #: PixelSpacing as DICOM writes it: (spacing between rows, spacing between columns) in mm.
    pixel_spacing: tuple[float, float] = (1.0, 1.0)
    slice_thickness: float | None = None
    frame_of_reference_uid: str = ""
    patient_name: str = ""
    patient_id: str = ""
    study_date: str = ""
    #: Angle between the stack direction and the slice normal (deg), or the header's GantryDetectorTilt.
    gantry_tilt_deg: float = 0.0
    #: True when the stack is sheared or unevenly spaced and must be resampled onto a regular grid.
    needs_resampling: bool = False
    #: (center, width) from the header (first value when multi-valued), if any.
    window: tuple[float, float] | None = None
    #: Size in bytes of each of ``files`` when examined (-1: unknown); checked again before loading.
    file_sizes: tuple[int, ...] = ()

    @property
    def num_slices(self) -> int:
        return len(self.slices)

    @property
    def normal(self) -> Vec3:
        r, c = self.row_cosine, self.column_cosine
        return (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
