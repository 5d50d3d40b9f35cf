"""Series thumbnails from a DICOMweb server's rendered resources, without retrieving the series.

First the series' own thumbnail resource (``.../series/{uid}/thumbnail``, PS3.18 section 10.4.5); servers
that do not offer it (Orthanc 1.10: 404) get a QIDO-RS instance list and a request for the rendered middle
instance (its middle frame when the server says it has several).  Media types are asked for one at a time,
PNG before JPEG: some servers refuse an Accept header that lists several (Orthanc answers 400).  The image
is decoded with Pillow (a dependency of highdicom) into 8-bit grey levels.
"""

from __future__ import annotations

from io import BytesIO

import numpy as np
import requests

from workstation.archive._dicom_json import integer, text
from workstation.archive.client import ArchiveError

MEDIA_TYPES = ("image/png", "image/jpeg")
_NOT_OFFERED = (400, 404, 405, 406, 415, 501)  # the server has no such resource or cannot render this


def _get_image(session: requests.Session, url: str, size: int, timeout: float) -> bytes | None:
    """The rendered image at ``url`` (viewport ``size``), or None when the server does not offer it."""
    for media in MEDIA_TYPES:
        # the comma stays literal: Orthanc does not decode "96%2C96"
        response = session.get(f"{url}?viewport={size},{size}", headers={"Accept": media}, timeout=timeout)
        if response.status_code in _NOT_OFFERED:
            continue
        response.raise_for_status()
        if response.headers.get("Content-Type", "").split(";")[0].strip().lower() not in MEDIA_TYPES:
            continue  # e.g. a multipart answer: not what was asked for
        return response.content
    return None


def _middle(items: list[dict]) -> tuple[str, int]:
    """SOP Instance UID of the middle instance by Instance Number, and its middle frame (1-based)."""
    ordered = sorted((i for i in items if text(i, "SOPInstanceUID")),
                     key=lambda i: (integer(i, "InstanceNumber") is None, integer(i, "InstanceNumber") or 0,
                                    text(i, "SOPInstanceUID")))
    if not ordered:
        raise ArchiveError("the series has no instances to show")
    mid = ordered[(len(ordered) - 1) // 2]
    frames = integer(mid, "NumberOfFrames") or 1
    return text(mid, "SOPInstanceUID"), (frames + 1) // 2


def decode_gray(data: bytes, size: int) -> np.ndarray:
    """An (h, w) uint8 array from PNG or JPEG bytes, shrunk to fit ``size`` x ``size``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(BytesIO(data)) as image:
            gray = image.convert("L")
    except (UnidentifiedImageError, OSError) as exc:
        raise ArchiveError(f"the archive sent a rendered image that cannot be decoded ({exc})") from None
    gray.thumbnail((size, size))
    return np.asarray(gray, dtype=np.uint8).copy()


def series_thumbnail(archive, study: str, series: str, size: int) -> np.ndarray:
    """The thumbnail of a series of a :class:`~workstation.archive.dicomweb.DicomWebArchive`."""
    base = f"{archive.url}/studies/{study}/series/{series}"
    data = _get_image(archive.session, f"{base}/thumbnail", size, archive.timeout)
    if data is None:
        items = archive.series_instances(study, series, ("SOPInstanceUID", "InstanceNumber", "NumberOfFrames"))
        sop, frame = _middle(items)
        target = f"{base}/instances/{sop}" + (f"/frames/{frame}" if frame > 1 else "")
        data = _get_image(archive.session, f"{target}/rendered", size, archive.timeout)
    if data is None:
        raise ArchiveError(f"{archive.name} does not render images (WADO-RS rendered and thumbnail resources)")
    return decode_gray(data, size)
