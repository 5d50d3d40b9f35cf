"""Helpers for C-STORE in :mod:`workstation.archive.dimse`: what to send for each file."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from workstation.archive.client import Skipped

NATIVE = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


def payload(path: Path, sop_class: str, syntax: str, accepted: set[tuple[str, str]]):
    """The file itself when the peer accepted its transfer syntax, else the dataset, decompressed if needed
    (pynetdicom re-encodes uncompressed datasets into the accepted uncompressed syntax)."""
    if (sop_class, syntax) in accepted:
        return path
    if not any(c == sop_class for c, _ in accepted):
        raise ValueError(f"the peer accepts no context for SOP class {sop_class}")
    ds = dcmread(path)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress(generate_instance_uid=False)  # the same instance, only re-encoded
    return ds


def headers(paths: Iterable[Path]) -> tuple[list[tuple], list[Skipped]]:
    """(path, SOP class, transfer syntax, SOP UID, study UID, series UID) per readable file."""
    files, skipped = [], []
    for path in paths:
        try:
            ds = dcmread(path, stop_before_pixels=True)
            files.append((Path(path), str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID),
                          str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)))
        except (InvalidDicomError, OSError, AttributeError, ValueError) as exc:
            skipped.append(Skipped(str(path), f"not a storable DICOM file ({exc})"))
    return files, skipped
