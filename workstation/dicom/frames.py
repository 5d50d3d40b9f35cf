"""One header -> slice candidates: a single-frame slice, every frame of a multi-frame file, or an image.

Enhanced multi-frame objects keep geometry, rescale and window in functional groups: a per-frame
item overrides the shared one.  This module resolves those so the rest of the loader sees the same
:class:`SliceSource` for a classic slice and for a frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydicom.dataset import Dataset

from workstation.dicom.errors import DicomReadError
from workstation.dicom.plan import SeriesKind, SliceSource, Vec3
from workstation.dicom.reading import RAW_LITTLE_ENDIAN, PixelLocation, transfer_syntax

#: Modalities that are projections or video: no 3D stack even when several share a series.
_PROJECTION_MODALITIES = {"CR", "DX", "MG", "IO", "PX", "XA", "RF", "US", "ES", "XC", "GM", "SM"}


@dataclass(frozen=True)
class Candidate:
    kind: SeriesKind
    group_key: tuple
    geometry_key: str
    source: SliceSource
    rows: int
    columns: int
    row_cosine: Vec3
    column_cosine: Vec3
    pixel_spacing: tuple[float, float] | None
    slice_thickness: float | None
    header_tilt: float | None
    window: tuple[float, float] | None
    frames: int = 1
    frame_bytes: int = 0
    extra: dict = field(default_factory=dict, compare=False)


def _first(value) -> float | None:
    """First value of a possibly multi-valued numeric attribute."""
    if value is None or value == "":
        return None
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _item(ds: Dataset | None, seq: str) -> Dataset | None:
    if ds is None:
        return None
    s = ds.get(seq)
    return s[0] if s else None


def _frame_attr(shared: Dataset | None, per_frame: Dataset | None, seq: str, attr: str):
    """An attribute from a functional group: the per-frame item wins over the shared one."""
    for holder in (per_frame, shared):
        item = _item(holder, seq)
        if item is not None and attr in item:
            return item.get(attr)
    return None


def _window(center, width) -> tuple[float, float] | None:
    c, w = _first(center), _first(width)
    return (c, w) if c is not None and w is not None and w > 0 else None


def candidates_from_file(path: str, ds: Dataset, loc: PixelLocation | None) -> list[Candidate]:
    """Every slice candidate in one file (one for a single frame, one per frame otherwise)."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError):
        raise DicomReadError(path, "missing Rows/Columns: not an image") from None
    raw = loc.offset if loc is not None and transfer_syntax(ds) in RAW_LITTLE_ENDIAN and loc.length else None
    frames = int(_first(ds.get("NumberOfFrames")) or 1)
    meta = getattr(ds, "file_meta", None)
    # some de-identified files carry an empty SOP Instance UID: fall back to the meta header, then the path
    sop = str(ds.get("SOPInstanceUID", "") or getattr(meta, "MediaStorageSOPInstanceUID", "") or path)
    series = str(ds.get("SeriesInstanceUID", ""))
    if frames > 1 or "PerFrameFunctionalGroupsSequence" in ds:
        return _multiframe(path, ds, raw, rows, cols, frames, sop)
    iop = ds.get("ImageOrientationPatient")
    ipp = ds.get("ImagePositionPatient")
    modality = str(ds.get("Modality", ""))
    spacing = _spacing(ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing"))
    source = SliceSource(path, sop, 0, _vec(ipp), raw, float(ds.get("RescaleSlope", 1) or 1),
                         float(ds.get("RescaleIntercept", 0) or 0))
    window = _window(ds.get("WindowCenter"), ds.get("WindowWidth"))
    if iop is None or len(iop) != 6 or (modality in _PROJECTION_MODALITIES and ipp is None):
        return [Candidate(SeriesKind.IMAGES, ("images", path), "", source, rows, cols, (1.0, 0.0, 0.0),
                          (0.0, 1.0, 0.0), spacing, None, None, window)]
    r, c = _cosines(iop)
    gkey = f"orientation {','.join(f'{v:.3f}' for v in (*r, *c))}; {rows}x{cols}"
    extra = {attr: ds.get(attr) for attr in ("EchoNumbers", "TemporalPositionIdentifier", "AcquisitionNumber")}
    extra = {k: (str(v) if v is not None else None) for k, v in extra.items()}
    return [Candidate(SeriesKind.VOLUME, ("series", series), gkey, source, rows, cols, r, c, spacing,
                      _first(ds.get("SliceThickness")), _first(ds.get("GantryDetectorTilt")), window,
                      extra=extra)]


def _multiframe(path: str, ds: Dataset, raw: int | None, rows: int, cols: int, frames: int,
                sop: str) -> list[Candidate]:
    """Candidates for each frame of a multi-frame file; without plane geometry it is an IMAGES file."""
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    frame_bytes = rows * cols * int(ds.get("SamplesPerPixel", 1)) * (int(ds.BitsAllocated) // 8)
    out = []
    for f in range(frames):
        pf = per[f] if f < len(per) else None
        ipp = _frame_attr(shared, pf, "PlanePositionSequence", "ImagePositionPatient")
        iop = _frame_attr(shared, pf, "PlaneOrientationSequence", "ImageOrientationPatient")
        if ipp is None:  # classic multi-frame (US/XA cine, ...): no per-frame plane, frames of one image
            iop = None
        spacing = _spacing(_frame_attr(shared, pf, "PixelMeasuresSequence", "PixelSpacing")
                           or ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing"))
        thick = _first(_frame_attr(shared, pf, "PixelMeasuresSequence", "SliceThickness"))
        slope = _frame_attr(shared, pf, "PixelValueTransformationSequence", "RescaleSlope")
        inter = _frame_attr(shared, pf, "PixelValueTransformationSequence", "RescaleIntercept")
        slope = ds.get("RescaleSlope", 1) if slope is None else slope
        inter = ds.get("RescaleIntercept", 0) if inter is None else inter
        window = _window(_frame_attr(shared, pf, "FrameVOILUTSequence", "WindowCenter"),
                         _frame_attr(shared, pf, "FrameVOILUTSequence", "WindowWidth")) or _window(
            ds.get("WindowCenter"), ds.get("WindowWidth"))
        offset = None if raw is None else raw + f * frame_bytes
        source = SliceSource(path, sop, f, _vec(ipp), offset, float(slope or 1), float(inter or 0))
        if iop is None or len(iop) != 6:
            return [Candidate(SeriesKind.IMAGES, ("images", path), "", source, rows, cols, (1.0, 0.0, 0.0),
                              (0.0, 1.0, 0.0), spacing, None, None, window, frames=frames,
                              frame_bytes=frame_bytes)]
        r, c = _cosines(iop)
        gkey = f"orientation {','.join(f'{v:.3f}' for v in (*r, *c))}; {rows}x{cols}"
        out.append(Candidate(SeriesKind.MULTIFRAME, ("file", path), gkey, source, rows, cols, r, c, spacing,
                             thick, _first(ds.get("GantryDetectorTilt")), window, extra={}))
    return out


def _vec(v) -> Vec3 | None:
    if v is None or len(v) != 3:
        return None
    return (float(v[0]), float(v[1]), float(v[2]))


def _cosines(iop) -> tuple[Vec3, Vec3]:
    r = tuple(float(x) for x in iop[:3])
    c = tuple(float(x) for x in iop[3:])
    return r, c  # type: ignore[return-value]


def _spacing(v) -> tuple[float, float] | None:
    if v is None or len(v) != 2:
        return None
    try:
        dr, dc = float(v[0]), float(v[1])
    except (TypeError, ValueError):
        return None
    return (dr, dc) if dr > 0 and dc > 0 else None
