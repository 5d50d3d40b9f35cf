"""LIDC-IDRI radiologists' reads (the XML of the LIDC-IDRI collection) as one label map per reader.

Each ``readingSession`` is one reader.  Every ``unblindedReadNodule`` holds ROIs: a contour (``edgeMap``
pixel points) on the slice named by ``imageSOP_UID``, included or excluded (a hole).  The contour points
are the nodule's outer boundary pixels, so a rasterised slice is the filled polygon plus its boundary.
Nodules under 3 mm have a single point.  The characteristics (subtlety ... malignancy) are kept as data.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workstation.model.labelmap import Code, LabelMap, Segment
from workstation.model.volume import Volume

__all__ = ["CHARACTERISTIC_CODES", "LIDC_SCHEME", "LidcError", "LidcNodule", "LidcRead", "LidcRoi",
           "characteristic_code", "parse_lidc_xml", "rasterise_read"]

CHARACTERISTICS = ("subtlety", "internalStructure", "calcification", "sphericity", "margin", "lobulation",
                   "spiculation", "texture", "malignancy")
NODULE_CATEGORY = Code("49755003", "SCT", "Morphologically Altered Structure")
NODULE_TYPE = Code("27925004", "SCT", "Nodule")

# -- the characteristics as coded concepts -----------------------------------------------------------------
# No standard code set carries the LIDC rating scales, so they are local codes of one private scheme
# (declared in an SR's CodingSchemeIdentificationSequence).  Meanings are those of the LIDC-IDRI
# documentation (as in pylidc).  Code values stay within SH (16 characters).
LIDC_SCHEME = "99LIDC"
_SCALES: dict[str, tuple[str, str, tuple[str, ...]]] = {  # name -> (concept code, concept meaning, ratings 1..n)
    "subtlety": ("SUBTLETY", "LIDC subtlety", ("Extremely Subtle", "Moderately Subtle", "Fairly Subtle",
                                               "Moderately Obvious", "Obvious")),
    "internalStructure": ("INTSTRUCT", "LIDC internal structure", ("Soft Tissue", "Fluid", "Fat", "Air")),
    "calcification": ("CALCIF", "LIDC calcification", ("Popcorn", "Laminated", "Solid", "Non-central", "Central",
                                                        "Absent")),
    "sphericity": ("SPHERICITY", "LIDC sphericity", ("Linear", "Ovoid/Linear", "Ovoid", "Ovoid/Round", "Round")),
    "margin": ("MARGIN", "LIDC margin", ("Poorly Defined", "Near Poorly Defined", "Medium Margin", "Near Sharp",
                                         "Sharp")),
    "lobulation": ("LOBULATION", "LIDC lobulation", ("No Lobulation", "Nearly No Lobulation", "Medium Lobulation",
                                                     "Near Marked Lobulation", "Marked Lobulation")),
    "spiculation": ("SPICULATION", "LIDC spiculation", ("No Spiculation", "Nearly No Spiculation",
                                                        "Medium Spiculation", "Near Marked Spiculation",
                                                        "Marked Spiculation")),
    "texture": ("TEXTURE", "LIDC texture", ("Non-Solid/GGO", "Non-Solid/Mixed", "Part Solid/Mixed", "Solid/Mixed",
                                            "Solid")),
    "malignancy": ("MALIGNANCY", "LIDC malignancy", ("Highly Unlikely", "Moderately Unlikely", "Indeterminate",
                                                     "Moderately Suspicious", "Highly Suspicious")),
}
CHARACTERISTIC_CODES: dict[str, Code] = {name: Code(c, LIDC_SCHEME, m) for name, (c, m, _) in _SCALES.items()}
NODULE_ID_CODE = Code("NODULEID", LIDC_SCHEME, "LIDC nodule identifier")


def characteristic_code(name: str, rating: int) -> Code:
    """The coded value of one rating (``malignancy`` 3 -> 99LIDC MALIGNANCY-3 "3 Indeterminate")."""
    if name not in _SCALES:
        raise LidcError(f"unknown LIDC characteristic {name!r}")
    concept, _, ratings = _SCALES[name]
    if not 1 <= rating <= len(ratings):
        raise LidcError(f"LIDC {name} rating {rating} is outside 1..{len(ratings)}")
    return Code(f"{concept}-{rating}", LIDC_SCHEME, f"{rating} {ratings[rating - 1]}")


def characteristic_rating(name: str, value: str) -> int:
    """The inverse of :func:`characteristic_code`: the rating in a code value such as ``MALIGNANCY-3``."""
    concept = _SCALES[name][0]
    if not value.startswith(concept + "-"):
        raise LidcError(f"{value!r} is not a code of the LIDC {name} scale")
    return int(value[len(concept) + 1:])


_COLOURS = ((255, 140, 0), (0, 200, 255), (255, 60, 160), (120, 220, 60), (250, 230, 50), (160, 100, 255))


class LidcError(ValueError):
    """An LIDC XML file that cannot be read, or reads that do not fit the series."""


@dataclass(frozen=True)
class LidcRoi:
    sop_instance_uid: str
    z_position: float
    inclusion: bool
    points: tuple[tuple[int, int], ...]  # (x = column, y = row) pixel indices


@dataclass(frozen=True)
class LidcNodule:
    nodule_id: str
    rois: tuple[LidcRoi, ...]
    characteristics: dict[str, int] = field(default_factory=dict)  # empty for nodules under 3 mm

    @property
    def is_small(self) -> bool:
        return all(len(r.points) <= 1 for r in self.rois)


@dataclass(frozen=True)
class LidcRead:
    reader: int  # 1.. in the order of the file
    radiologist_id: str
    nodules: tuple[LidcNodule, ...]

    @property
    def annotator(self) -> str:
        return f"LIDC reader {self.reader}"


@dataclass(frozen=True)
class LidcFile:
    series_instance_uid: str
    study_instance_uid: str
    reads: tuple[LidcRead, ...]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(el: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in el if _local(c.tag) == name), None)


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _local(c.tag) == name]


def _text(el: ET.Element, name: str, default: str = "") -> str:
    c = _child(el, name)
    return (c.text or "").strip() if c is not None and c.text else default


def parse_lidc_xml(path: Path | str) -> LidcFile:
    """The reads in an LIDC-IDRI XML file (``LidcReadMessage``)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise LidcError(f"{path}: not a readable LIDC XML file ({exc})") from None
    if _local(root.tag) != "LidcReadMessage":
        raise LidcError(f"{path}: not an LIDC read message (root element {_local(root.tag)!r})")
    header = _child(root, "ResponseHeader")
    series = _text(header, "SeriesInstanceUid") if header is not None else ""
    study = _text(header, "StudyInstanceUID") if header is not None else ""
    reads = []
    for n, session in enumerate(_children(root, "readingSession"), start=1):
        try:
            nodules = tuple(_nodule(el) for el in _children(session, "unblindedReadNodule"))
        except (TypeError, ValueError) as exc:
            raise LidcError(f"{path}: reading session {n}: {exc}") from None
        reads.append(LidcRead(n, _text(session, "servicingRadiologistID"), nodules))
    if not reads:
        raise LidcError(f"{path}: no readingSession in the file")
    return LidcFile(series, study, tuple(reads))


def _nodule(el: ET.Element) -> LidcNodule:
    chars: dict[str, int] = {}
    block = _child(el, "characteristics")
    if block is not None:
        for name in CHARACTERISTICS:
            value = _text(block, name)
            if value:
                chars[name] = int(value)
    rois = []
    for roi in _children(el, "roi"):
        points = tuple((int(_text(p, "xCoord")), int(_text(p, "yCoord"))) for p in _children(roi, "edgeMap"))
        rois.append(LidcRoi(_text(roi, "imageSOP_UID"), float(_text(roi, "imageZposition", "nan")),
                            _text(roi, "inclusion", "TRUE").upper() == "TRUE", points))
    return LidcNodule(_text(el, "noduleID"), tuple(rois), chars)


# -- rasterising ---------------------------------------------------------------------------------------
def fill_contour(points: tuple[tuple[int, int], ...], rows: int, columns: int) -> np.ndarray:
    """A boolean (rows, columns) mask: the polygon's interior (pixel centres, even-odd) plus its boundary."""
    mask = np.zeros((rows, columns), bool)
    if not points:
        return mask
    pts = np.asarray(points, float)
    if len(pts) >= 3:
        x, y = pts[:, 0], pts[:, 1]
        x2, y2 = np.roll(x, -1), np.roll(y, -1)
        y_lo, y_hi = max(0, int(np.floor(y.min()))), min(rows - 1, int(np.ceil(y.max())))
        for row in range(y_lo, y_hi + 1):
            crossing = (y <= row) != (y2 <= row)  # half-open rule: each vertex counted once
            if not crossing.any():
                continue
            xs = np.sort(x[crossing] + (row - y[crossing]) * (x2[crossing] - x[crossing]) / (y2[crossing] - y[crossing]))
            for a, b in zip(xs[0::2], xs[1::2]):
                lo, hi = max(0, int(np.ceil(a))), min(columns - 1, int(np.floor(b)))
                if hi >= lo:
                    mask[row, lo:hi + 1] = True
    _draw_boundary(mask, points)
    return mask


def _draw_boundary(mask: np.ndarray, points: tuple[tuple[int, int], ...]) -> None:
    closed = list(points) + [points[0]]
    rows, columns = mask.shape
    for (x0, y0), (x1, y1) in zip(closed[:-1], closed[1:]):
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        t = np.linspace(0.0, 1.0, steps + 1)
        xs = np.rint(x0 + t * (x1 - x0)).astype(int)
        ys = np.rint(y0 + t * (y1 - y0)).astype(int)
        ok = (xs >= 0) & (xs < columns) & (ys >= 0) & (ys < rows)
        mask[ys[ok], xs[ok]] = True


def rasterise_read(read: LidcRead, volume: Volume, *, include_small: bool = True) -> tuple[LabelMap, list[str]]:
    """One label map for the reader on ``volume``'s grid, one segment per nodule; plus warnings."""
    slice_of = {uid: k for k, uid in enumerate(volume.info.source_sop_instance_uids)}
    if not slice_of:
        raise LidcError("the volume does not list its source images' SOP Instance UIDs")
    _, rows, columns = volume.shape
    labels = np.zeros(volume.shape, np.uint8 if len(read.nodules) < 255 else np.uint16)
    segments, warnings = [], []
    for nodule in read.nodules:
        if nodule.is_small and not include_small:
            continue
        number = len(segments) + 1
        missing = sorted({r.sop_instance_uid for r in nodule.rois if r.sop_instance_uid not in slice_of})
        if missing:
            warnings.append(f"{read.annotator} {nodule.nodule_id}: {len(missing)} ROI(s) on images not in the series")
        mask = _nodule_mask(nodule, slice_of, rows, columns, volume.shape)
        if not mask.any():
            continue
        labels[mask & (labels == 0)] = number
        segments.append(Segment(number, nodule.nodule_id or f"Nodule {number}", _COLOURS[(number - 1) % len(_COLOURS)],
                                NODULE_CATEGORY, NODULE_TYPE))
    return LabelMap.on_grid_of(volume, labels, tuple(segments)), warnings


def _nodule_mask(nodule: LidcNodule, slice_of: dict[str, int], rows: int, columns: int,
                 shape: tuple[int, int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for roi in sorted(nodule.rois, key=lambda r: not r.inclusion):  # inclusions first, then holes
        k = slice_of.get(roi.sop_instance_uid)
        if k is None:
            continue
        area = fill_contour(roi.points, rows, columns)
        if roi.inclusion:
            mask[k] |= area
        else:  # an exclusion's boundary belongs to the nodule: cut only the interior
            boundary = np.zeros_like(area)
            _draw_boundary(boundary, roi.points)
            mask[k] &= ~(area & ~boundary)
    return mask
