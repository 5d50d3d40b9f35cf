"""Errors raised at the DICOM boundary, with a reason meant for the user."""

from __future__ import annotations


class DicomReadError(Exception):
    """A file could not be read as a usable DICOM image.

    Parameters
    ----------
    path
        The file that failed.
    reason
        What went wrong, in plain words ("empty file (0 bytes)", "missing ImagePositionPatient", ...).
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep the two-argument constructor picklable (worker processes)
        return (type(self), (self.path, self.reason))
