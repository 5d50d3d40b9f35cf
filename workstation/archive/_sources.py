"""What an import is asked to read: folders, single files, zip files and DICOMDIRs, as a flat list.

Every input becomes a list of :class:`Source` items (a file on disk, or a member of a zip file) plus
:class:`~workstation.archive.client.Skipped` entries for what cannot even be listed (a missing path,
a folder we may not read, a damaged zip).  Listing first lets the import report a real total.

DICOMDIR files are indexes, not images: named explicitly, their referenced files are imported; met
while walking a folder or a zip they are passed over silently (their files are in the walk anyway).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from workstation.archive.client import Skipped

DICOMDIR_NAME = "DICOMDIR"


@dataclass(frozen=True)
class Source:
    """One candidate file: ``path`` on disk, or ``member`` of the zip file at ``path``."""

    display: str  # how reports name it ("a/b.dcm", "study.zip!CT/1.dcm")
    path: Path
    member: str | None = None


def is_dicomdir_name(name: str) -> bool:
    return Path(name).name.upper() == DICOMDIR_NAME


def collect(paths: Iterable[Path | str]) -> tuple[list[Source], list[Skipped]]:
    """Expand the user's inputs into candidate files (stable order) and what could not be listed."""
    sources: list[Source] = []
    skipped: list[Skipped] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            _walk_folder(path, sources, skipped)
        elif not path.exists():
            skipped.append(Skipped(str(path), "no such file or folder"))
        elif is_dicomdir_name(path.name):
            _follow_dicomdir(path, sources, skipped)
        elif path.suffix.lower() == ".zip":
            _list_zip(path, sources, skipped)
        else:
            sources.append(Source(str(path), path))
    return sources, skipped


def _walk_folder(root: Path, sources: list[Source], skipped: list[Skipped]) -> None:
    def unreadable(err: OSError) -> None:
        skipped.append(Skipped(str(err.filename or root), f"unreadable folder: {err.strerror or err}"))

    for folder, dirs, names in os.walk(root, onerror=unreadable):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            if is_dicomdir_name(name):
                continue
            if name.lower().endswith(".zip"):
                _list_zip(path, sources, skipped)
            else:
                sources.append(Source(str(path), path))


def _list_zip(path: Path, sources: list[Source], skipped: list[Skipped]) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile as exc:
        skipped.append(Skipped(str(path), f"damaged zip file ({exc})"))
        return
    except PermissionError:
        skipped.append(Skipped(str(path), "permission denied"))
        return
    except OSError as exc:
        skipped.append(Skipped(str(path), f"cannot read zip file: {exc.strerror or exc}"))
        return
    for info in sorted(infos, key=lambda i: i.filename):
        name = info.filename
        display = f"{path}!{name}"
        if info.is_dir() or is_dicomdir_name(name) or name.startswith("__MACOSX/"):
            continue
        if name.lower().endswith(".zip"):
            skipped.append(Skipped(display, "zip file inside a zip file: extract the outer one first"))
        elif info.flag_bits & 0x1:
            skipped.append(Skipped(display, "encrypted zip member"))
        else:
            sources.append(Source(display, path, member=name))


def _follow_dicomdir(path: Path, sources: list[Source], skipped: list[Skipped]) -> None:
    """Add the files a DICOMDIR references (IDs are relative to the DICOMDIR's folder)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
        records = list(ds.get("DirectoryRecordSequence", []))
    except PermissionError:
        skipped.append(Skipped(str(path), "permission denied"))
        return
    except (InvalidDicomError, EOFError, ValueError, OSError) as exc:
        skipped.append(Skipped(str(path), f"damaged DICOMDIR ({exc})"))
        return
    base = path.parent
    seen: set[Path] = set()
    for record in records:
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue  # patient / study / series records reference no file
        parts = [file_id] if isinstance(file_id, str) else list(file_id)
        target = _resolve_case_insensitive(base, parts)
        if target is None:
            skipped.append(Skipped(str(base.joinpath(*parts)), "referenced by the DICOMDIR but not found"))
        elif target not in seen:
            seen.add(target)
            sources.append(Source(str(target), target))


def _resolve_case_insensitive(base: Path, parts: list[str]) -> Path | None:
    """DICOMDIR file IDs are upper case; media copied to Linux often has lower-case names."""
    current = base
    for part in parts:
        exact = current / part
        if exact.exists():
            current = exact
            continue
        try:
            match = next((c for c in current.iterdir() if c.name.upper() == part.upper()), None)
        except OSError:
            return None
        if match is None:
            return None
        current = match
    return current if current.is_file() else None
