"""Read DICOM headers and decode frames, with a specific :class:`DicomReadError` for every failure.

Uncompressed little-endian pixel data is read straight from the file into the caller's array
(``readinto`` at the offset found while reading the header): no pydicom decode, no extra copies.
Everything else (big endian, deflate, RLE, JPEG family, JPEG 2000) goes through pydicom's pixel
backends, which pick pylibjpeg or gdcm plugins when they are installed.
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

from workstation.dicom.errors import DicomReadError

#: Transfer syntaxes whose pixel bytes we read raw (native, little endian, not deflated).
RAW_LITTLE_ENDIAN = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})

#: Which installable package decodes which compressed transfer syntax (for error messages).
_CODEC_PACKAGES = {
    "1.2.840.10008.1.2.4.90": "JPEG 2000 needs pylibjpeg-openjpeg or python-gdcm",
    "1.2.840.10008.1.2.4.91": "JPEG 2000 needs pylibjpeg-openjpeg or python-gdcm",
    "1.2.840.10008.1.2.4.50": "JPEG baseline needs pylibjpeg-libjpeg, pillow or python-gdcm",
    "1.2.840.10008.1.2.4.51": "JPEG extended needs pylibjpeg-libjpeg, pillow or python-gdcm",
    "1.2.840.10008.1.2.4.57": "JPEG lossless needs pylibjpeg-libjpeg or python-gdcm",
    "1.2.840.10008.1.2.4.70": "JPEG lossless needs pylibjpeg-libjpeg or python-gdcm",
    "1.2.840.10008.1.2.4.80": "JPEG-LS needs pylibjpeg-libjpeg, pyjpegls or python-gdcm",
    "1.2.840.10008.1.2.4.81": "JPEG-LS needs pylibjpeg-libjpeg, pyjpegls or python-gdcm",
    "1.2.840.10008.1.2.5": "RLE lossless needs pylibjpeg-rle or numpy (pydicom's own decoder)",
}

_IMAGE_ATTRS = ("Rows", "Columns", "BitsAllocated")


@dataclass(frozen=True)
class PixelLocation:
    """Where the Pixel Data element's value starts in the file, and its length (None = encapsulated)."""

    offset: int
    length: int | None


def read_header(path: str | os.PathLike) -> Dataset:
    """Read a DICOM file's header (no pixel data), or raise :class:`DicomReadError` saying why not."""
    return read_header_and_pixels(path)[0]


def read_header_and_pixels(path: str | os.PathLike, tags: Sequence[str] | None = None,
                           ) -> tuple[Dataset, PixelLocation | None]:
    """Read the header and locate the pixel data; ``None`` when the file has no pixel data.

    ``tags`` (keywords) limits the parse to those top-level elements (whole sequences included):
    the others are skipped unread, which makes a header pass over many files several times faster.

    Raises
    ------
    DicomReadError
        Empty, unreadable, non-DICOM or truncated files, each with its own reason.
    """
    spath = str(path)
    try:
        size = os.path.getsize(spath)
        if size == 0:
            raise DicomReadError(spath, "empty file (0 bytes)")
        with open(spath, "rb") as fp:
            ds = _parse(fp, spath, tags)
            # stop_before_pixels rewinds to the start of the (7FE0,0010) tag when it meets it
            here = fp.tell()
            loc = _pixel_location(fp, ds, here, size)
    except DicomReadError:
        raise
    except PermissionError:
        raise DicomReadError(spath, "permission denied") from None
    except IsADirectoryError:
        raise DicomReadError(spath, "is a folder, not a file") from None
    except FileNotFoundError:
        raise DicomReadError(spath, "file not found") from None
    except OSError as exc:
        raise DicomReadError(spath, f"cannot read file: {exc.strerror or exc}") from None
    if loc is not None and loc.length is not None and loc.offset + loc.length > size:
        raise DicomReadError(
            spath,
            f"truncated file: pixel data needs {loc.length} bytes but only {size - loc.offset} remain",
        )
    if loc is None and _expects_pixels(ds):
        raise DicomReadError(spath, f"truncated file: it ends at byte {size} before the pixel data")
    return ds, loc


def _expects_pixels(ds: Dataset) -> bool:
    """Whether a header without Pixel Data must have lost it (image attributes or an image SOP class)."""
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        return False
    if any(a in ds for a in _IMAGE_ATTRS):
        return True
    sop = str(ds.get("SOPClassUID", ""))
    return bool(sop) and UID(sop).name.endswith("Image Storage")


@functools.lru_cache(maxsize=8)
def _tag_numbers(keywords: tuple[str, ...]) -> tuple[BaseTag, ...]:
    """Keywords -> tags once (pydicom would look every keyword up again for every file)."""
    return tuple(Tag(k) for k in keywords)


def _parse(fp, spath: str, tags: Sequence[str] | None = None) -> Dataset:
    """pydicom parse of the header; a missing preamble is tolerated when the content is DICOM."""
    specific = list(_tag_numbers(tuple(tags))) if tags else None
    try:
        return pydicom.dcmread(fp, stop_before_pixels=True, defer_size=65536, specific_tags=specific)
    except InvalidDicomError:
        pass
    except (EOFError, struct.error, ValueError) as exc:
        raise DicomReadError(spath, f"truncated file: header cannot be parsed ({exc})") from None
    fp.seek(0)
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True, defer_size=65536, force=True, specific_tags=specific)
    except Exception:  # noqa: BLE001 - any parse failure of a forced read means "not DICOM"
        ds = None
    # a forced read of arbitrary bytes yields a few nonsense tags; real DICOM has identifying ones
    if ds is None or not ("SOPClassUID" in ds or "Rows" in ds or "SOPInstanceUID" in ds):
        raise DicomReadError(spath, "not a DICOM file (no DICM preamble and not parseable as DICOM)")
    return ds


def _pixel_location(fp, ds: Dataset, here: int, size: int) -> PixelLocation | None:
    """Parse the Pixel Data element header at ``here`` (if that is where the reader stopped)."""
    head = fp.read(12)
    if len(head) < 8:
        return None
    ts = transfer_syntax(ds)
    implicit = ts == "1.2.840.10008.1.2"
    endian = ">" if ts == "1.2.840.10008.1.2.2" else "<"
    group, elem = struct.unpack(endian + "HH", head[:4])
    if (group, elem) != (0x7FE0, 0x0010):
        return None
    if implicit:
        (length,) = struct.unpack(endian + "I", head[4:8])
        start = here + 8
    else:
        (length,) = struct.unpack(endian + "I", head[8:12])
        start = here + 12
    return PixelLocation(start, None if length == 0xFFFFFFFF else length)


def transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if ts is None:  # no meta: what the parser inferred
        implicit, little = ds.original_encoding
        return "1.2.840.10008.1.2" if implicit else ("1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2")
    return str(ts)


def stored_dtype(ds: Dataset) -> np.dtype:
    """numpy dtype of one stored sample (little endian)."""
    bits = int(ds.BitsAllocated)
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    if bits not in (8, 16, 32):
        raise DicomReadError(str(ds.filename or ""), f"unsupported BitsAllocated {bits}")
    return np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")


def read_raw_into(path: str, offset: int, out: np.ndarray, bits_stored: int) -> None:
    """Read native little-endian samples at ``offset`` straight into ``out`` (C-contiguous, stored dtype).

    The size of ``out`` decides how much is read (one frame or several).
    """
    buf = memoryview(out.reshape(-1).view(np.uint8))
    try:
        with open(path, "rb") as fp:
            fp.seek(offset)
            got = fp.readinto(buf)
    except OSError as exc:
        raise DicomReadError(path, f"cannot read pixel data: {exc.strerror or exc}") from None
    if got != len(buf):
        raise DicomReadError(path, f"truncated file: pixel data needs {len(buf)} bytes but only {got} remain")
    fix_high_bits(out, bits_stored)


def fix_high_bits(a: np.ndarray, stored: int) -> None:
    """Mask or sign-extend samples whose BitsStored is less than BitsAllocated (e.g. 12-bit in 16)."""
    alloc = a.dtype.itemsize * 8
    if stored >= alloc:
        return
    shift = alloc - stored
    if a.dtype.kind == "i":
        np.left_shift(a, shift, out=a)
        np.right_shift(a, shift, out=a)  # arithmetic shift: sign extension
    else:
        np.bitwise_and(a, (1 << stored) - 1, out=a)


def decode_all_frames(path: str) -> tuple[Dataset, np.ndarray]:
    """Full decode through pydicom (compressed or big-endian syntaxes): (dataset, frames array).

    The array has shape (frames, rows, cols) or (frames, rows, cols, samples); no rescale applied.
    """
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, struct.error) as exc:
        raise DicomReadError(path, f"truncated or damaged file: {exc}") from None
    ts = transfer_syntax(ds)
    try:
        arr = ds.pixel_array
    except (NotImplementedError, RuntimeError, ImportError) as exc:
        text = str(exc)
        if "missing" in text.lower() or "no pixel data handler" in text.lower() or "plugin" in text.lower():
            need = _CODEC_PACKAGES.get(ts, "a decoder plugin")
            raise DicomReadError(path, f"cannot decode {UID(ts).name}: {need}") from None
        raise DicomReadError(path, f"cannot decode pixel data ({UID(ts).name}): {text}") from None
    except (ValueError, EOFError, struct.error) as exc:
        raise DicomReadError(path, f"truncated or damaged pixel data ({UID(ts).name}): {exc}") from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1))
    if frames == 1:
        arr = arr[np.newaxis]
    if spp == 1 and arr.ndim != 3:
        raise DicomReadError(path, f"unexpected pixel array shape {arr.shape}")
    return ds, arr


def codec_available(ts: str) -> bool:
    """Whether pydicom has a working decoder for the transfer syntax (raw syntaxes always do)."""
    from pydicom.pixels.decoders.base import get_decoder

    if ts in RAW_LITTLE_ENDIAN or ts in ("1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"):
        return True
    try:
        return bool(get_decoder(UID(ts)).is_available)
    except NotImplementedError:
        return False
