"""The on-disk cache of instances retrieved from remote archives.

Layout: ``<root>/<study uid>/<series uid>/<sop uid>.dcm``.  A file is only ever complete: it is written
to a hidden ``.<sop uid>.<random>.part`` in the same folder and moved into place with ``os.replace``,
so an interrupted retrieval leaves whole instances (kept: the next retrieval resumes after them) and no
partial ``.dcm``.  Leftover ``.part`` files of a crash are removed when the series is fetched again.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from workstation.archive.local import safe_component

PART_SUFFIX = ".part"


class SeriesCache:
    """The cache folder of one series."""

    def __init__(self, root: Path | str, study_uid: str, series_uid: str) -> None:
        self.folder = Path(root) / safe_component(study_uid) / safe_component(series_uid)

    def path(self, sop_uid: str) -> Path:
        return self.folder / (safe_component(sop_uid) + ".dcm")

    def has(self, sop_uid: str) -> bool:
        return self.path(sop_uid).is_file()

    def files(self) -> list[Path]:
        """The complete instance files present, sorted by name."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob("*.dcm") if not p.name.startswith("."))

    def temp_path(self, sop_uid: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / f".{safe_component(sop_uid)}.{secrets.token_hex(4)}{PART_SUFFIX}"

    def write_bytes(self, sop_uid: str, chunks: Iterable[bytes]) -> tuple[Path, int]:
        """Write an instance atomically from byte chunks; returns (final path, size)."""
        tmp = self.temp_path(sop_uid)
        size = 0
        try:
            with open(tmp, "wb") as fp:
                for chunk in chunks:
                    fp.write(chunk)
                    size += len(chunk)
            final = self.path(sop_uid)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return final, size

    def write_dataset(self, sop_uid: str, dataset) -> tuple[Path, int]:
        """Write a pydicom dataset (with its file meta) atomically; returns (final path, size)."""
        tmp = self.temp_path(sop_uid)
        try:
            dataset.save_as(tmp, enforce_file_format=True)
            final = self.path(sop_uid)
            size = tmp.stat().st_size
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return final, size

    def remove_parts(self) -> None:
        """Delete temporary files left by an interrupted write."""
        if self.folder.is_dir():
            for p in self.folder.glob(f".*{PART_SUFFIX}"):
                with contextlib.suppress(OSError):
                    p.unlink()
