"""The protocol every archive speaks: the embedded local archive, DICOMweb and DIMSE PACS."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from workstation.model.refs import SeriesRef, StudyRef
from workstation.model.tasks import Cancelled, CancelToken, Progress, ProgressFn, Skipped

__all__ = [
    "ArchiveClient", "ArchiveError", "ArchiveTimeout", "ArchiveUnavailable", "AssociationRejected",
    "AuthenticationFailed", "Cancelled", "TLSFailure", "CancelToken", "ImportReport", "NotFound",
    "Progress", "ProgressFn", "Skipped", "StudyQuery", "iter_files",
]


class ArchiveError(Exception):
    """Base class for archive failures; the message is meant for the user."""


class ArchiveUnavailable(ArchiveError):
    """The archive cannot be reached (down, wrong address, refused)."""


class AuthenticationFailed(ArchiveError):
    """The archive refused our credentials (HTTP 401/403, expired token)."""


class TLSFailure(ArchiveUnavailable):
    """The TLS handshake failed; the message names the certificate problem."""


class ArchiveTimeout(ArchiveError):
    """The archive stopped answering for longer than the configured timeout."""


class AssociationRejected(ArchiveError):
    """A DIMSE peer rejected or aborted the association (unknown AE title, no accepted contexts)."""


class NotFound(ArchiveError):
    """A study, series or instance the caller named is not in the archive."""


@dataclass(frozen=True)
class StudyQuery:
    """Search fields of the study browser.  Empty fields match everything; text fields allow * and ?."""

    patient_name: str = ""
    patient_id: str = ""
    accession_number: str = ""
    study_description: str = ""
    modality: str = ""
    date_from: _dt.date | None = None
    date_to: _dt.date | None = None
    limit: int = 500  # 0 = no limit
    offset: int = 0  # matches to skip (paging)


@dataclass(frozen=True)
class ImportReport:
    imported: tuple[str, ...] = ()  # SOP Instance UIDs stored
    duplicates: tuple[str, ...] = ()  # paths whose instance was already in the archive
    skipped: tuple[Skipped, ...] = ()
    studies: tuple[str, ...] = ()  # Study Instance UIDs touched
    series: tuple[str, ...] = ()  # Series Instance UIDs touched


@runtime_checkable
class ArchiveClient(Protocol):
    """Find studies and series, fetch a series' files, store files."""

    name: str

    def find_studies(self, query: StudyQuery) -> list[StudyRef]: ...

    def find_series(self, study_instance_uid: str) -> list[SeriesRef]: ...

    def fetch_series(
        self,
        series_instance_uid: str,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> list[Path]:
        """Local paths of the series' instance files (downloading into the cache when remote)."""
        ...

    def store(self, paths: Iterable[Path], progress: ProgressFn | None = None) -> ImportReport: ...


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Every regular file under the given files and folders, in a stable order."""
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for child in sorted(p.rglob("*")):
                if child.is_file():
                    yield child
        else:
            yield p
