"""DICOM files -> series plans (headers only) -> :class:`~workstation.model.volume.Volume` objects.

``examine`` reads headers only: it splits series into stacks, sorts slices along the slice normal
(never by InstanceNumber or file name), and notes every oddity as a warning.  ``load_volume`` (in
:mod:`workstation.dicom.loading`) decodes a plan into voxels, progressively and cancellably.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import UID

from workstation.dicom._tasks import CancelToken, Progress, ProgressFn, Skipped
from workstation.dicom.errors import DicomReadError
from workstation.dicom.frames import Candidate, candidates_from_file
from workstation.dicom.loading import load_volume
from workstation.dicom.plan import SeriesKind, SeriesPlan, SliceSource
from workstation.dicom.reading import read_header_and_pixels
from workstation.dicom.stack import analyse_stack
from workstation.model.volume import Volume

__all__ = ["SeriesKind", "SeriesPlan", "SliceSource", "examine", "load_volume", "load_series"]

_SEG_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7"}
#: Attributes that separate stacks sharing positions inside one series, in the order tried.
_STACK_SPLITTERS = (("EchoNumbers", "echo"), ("TemporalPositionIdentifier", "temporal position"),
                    ("AcquisitionNumber", "acquisition"))

#: Every top-level attribute examine looks at (frames.py, _common, _check_is_image, reading's checks):
#: the header pass parses only these.  Add here whatever a plan starts to need.
HEADER_TAGS = (
    "SOPClassUID", "SOPInstanceUID", "StudyDate", "Modality", "SeriesDescription", "PatientName",
    "PatientID", "SliceThickness", "GantryDetectorTilt", "StudyInstanceUID", "SeriesInstanceUID",
    "SeriesNumber", "AcquisitionNumber", "EchoNumbers", "TemporalPositionIdentifier",
    "ImagePositionPatient", "ImageOrientationPatient", "FrameOfReferenceUID", "SamplesPerPixel",
    "NumberOfFrames", "Rows", "Columns", "PixelSpacing", "ImagerPixelSpacing", "BitsAllocated",
    "WindowCenter", "WindowWidth", "RescaleIntercept", "RescaleSlope",
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
    "FloatPixelData", "DoubleFloatPixelData",
)


def _walk(paths: Iterable[Path | str], skipped: list[Skipped]) -> Iterator[Path]:
    """Files under the given files and folders; unreadable folders are reported in ``skipped``."""

    def folder_error(exc: OSError) -> None:
        why = "permission denied" if isinstance(exc, PermissionError) else f"cannot read folder: {exc.strerror}"
        skipped.append(Skipped(str(exc.filename), why))

    for p in paths:
        p = Path(p)
        if p.is_dir():
            if not os.access(p, os.R_OK | os.X_OK):
                skipped.append(Skipped(str(p), "permission denied"))
                continue
            for root, dirs, names in os.walk(p, onerror=folder_error):
                dirs.sort()
                for n in sorted(names):
                    yield Path(root) / n
        else:
            yield p


def examine(
    paths: Iterable[Path | str],
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> tuple[list[SeriesPlan], list[Skipped]]:
    """Read the headers of files (and folders, recursively) and plan how to load each stack.

    Returns the plans (ordered by series number, then stack) and the files left out, with reasons.
    """
    skipped: list[Skipped] = []
    files = list(_walk(paths, skipped))
    groups: dict[tuple, list[Candidate]] = defaultdict(list)
    headers: dict[tuple, Dataset] = {}
    for n, path in enumerate(files):
        if cancel is not None:
            cancel.check()
        if progress is not None:
            progress(Progress(n, len(files), f"reading headers {n}/{len(files)}"))
        try:
            ds, loc = read_header_and_pixels(path, HEADER_TAGS)
            _check_is_image(str(path), ds, loc is not None)
            cands = candidates_from_file(str(path), ds, loc)
        except DicomReadError as exc:
            skipped.append(Skipped(exc.path, exc.reason))
            continue
        for cand in cands:
            groups[cand.group_key].append(cand)
            headers.setdefault(cand.group_key, ds)
    if progress is not None:
        progress(Progress(len(files), len(files), "headers read"))
    plans: list[SeriesPlan] = []
    for key, cands in groups.items():
        new_plans, new_skips = _plan_group(cands, headers[key])
        plans.extend(new_plans)
        skipped.extend(new_skips)
    plans.sort(key=lambda p: (p.study_instance_uid, p.series_number if p.series_number is not None else 1 << 30,
                              p.series_instance_uid, p.stack_key, p.files[:1]))
    return plans, skipped


def _check_is_image(path: str, ds: Dataset, has_pixels: bool) -> None:
    sop = str(ds.get("SOPClassUID", ""))
    if sop in _SEG_SOP_CLASSES:
        raise DicomReadError(path, "segmentation object, not an image series")
    if not has_pixels:
        name = UID(sop).name if sop else "unknown"
        raise DicomReadError(path, f"no pixel data (SOP class {name}, e.g. a structured report)")


def _plan_group(cands: list[Candidate], ds: Dataset) -> tuple[list[SeriesPlan], list[Skipped]]:
    """Turn the candidates of one series (or one multi-frame file) into plans."""
    kind = cands[0].kind
    if kind is SeriesKind.IMAGES:
        return [_images_plan(c, ds, ()) for c in _dedupe(cands)[0]], []
    cands, warnings = _dedupe(cands)
    skipped: list[Skipped] = []
    with_pos = [c for c in cands if c.source.position is not None]
    if not with_pos:
        why = "no ImagePositionPatient in this series: each image is shown on its own"
        return [_images_plan(c, ds, (why,)) for c in cands], []
    for c in cands:
        if c.source.position is None:
            skipped.append(Skipped(c.source.path, "missing ImagePositionPatient"))
    stacks = _split(with_pos)
    plans = []
    for n, (stack_key, members) in enumerate(stacks):
        extra = list(warnings)
        if len(stacks) > 1:
            extra.append(f"series was split into {len(stacks)} stacks by {_split_reason(stacks)}; "
                         f"this is stack {n + 1} ({stack_key})")
        plans.append(_stack_plan(members, ds, kind, stack_key if len(stacks) > 1 else "", extra))
    return plans, skipped


def _dedupe(cands: list[Candidate]) -> tuple[list[Candidate], list[str]]:
    """Keep one candidate per (SOP Instance UID, frame); say how many duplicates were dropped."""
    seen: dict[tuple[str, int], Candidate] = {}
    dropped = []
    for c in cands:
        key = (c.source.sop_instance_uid, c.source.frame)
        if key in seen:
            dropped.append(c.source.path)
        else:
            seen[key] = c
    warnings = []
    if dropped:
        warnings.append(f"{len(dropped)} duplicate SOP Instance UID(s) ignored (kept one copy each): "
                        + ", ".join(os.path.basename(p) for p in dropped[:5]))
    return list(seen.values()), warnings


def _split(cands: list[Candidate]) -> list[tuple[str, list[Candidate]]]:
    """Split a series into stacks: always by orientation and size; by echo, temporal position or
    acquisition number only where they separate slices that would otherwise share positions."""
    base: dict[str, list[Candidate]] = defaultdict(list)
    for c in cands:
        base[c.geometry_key].append(c)
    out: list[tuple[str, list[Candidate]]] = []
    for gkey, members in base.items():
        parts = [(gkey, members)]
        for attr, label in _STACK_SPLITTERS:
            parts = [sub for key, mem in parts for sub in _split_by(key, mem, attr, label)]
        out.extend(parts)
    return out


def _split_by(key: str, members: list[Candidate], attr: str, label: str) -> list[tuple[str, list[Candidate]]]:
    values = {c.extra.get(attr) for c in members}
    if len(values) < 2:
        return [(key, members)]
    positions = [tuple(round(x, 2) for x in c.source.position) for c in members]
    if len(set(positions)) == len(positions):
        return [(key, members)]  # e.g. one acquisition number per axial rotation: one stack
    by: dict[object, list[Candidate]] = defaultdict(list)
    for c in members:
        by[c.extra.get(attr)].append(c)
    return [(f"{key}; {label} {v}", by[v]) for v in sorted(by, key=lambda v: (v is None, str(v)))]


def _split_reason(stacks: list[tuple[str, list[Candidate]]]) -> str:
    keys = [k for k, _ in stacks]
    reasons = []
    if len({k.split(";")[0] for k in keys}) > 1:
        reasons.append("orientation/size")
    for _, label in _STACK_SPLITTERS:
        if any(f"; {label} " in k for k in keys):
            reasons.append(label)
    return " and ".join(reasons) or "geometry"


def _common(ds: Dataset, kind: SeriesKind, stack_key: str, warnings: list[str]) -> dict:
    number = ds.get("SeriesNumber")
    return dict(
        series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
        modality=str(ds.get("Modality", "OT")),
        series_description=str(ds.get("SeriesDescription", "")),
        series_number=int(number) if number not in (None, "") else None,
        kind=kind,
        stack_key=stack_key,
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")),
        patient_name=str(ds.get("PatientName", "")),
        patient_id=str(ds.get("PatientID", "")),
        study_date=str(ds.get("StudyDate", "")),
        warnings=tuple(warnings),
    )


def _images_plan(c: Candidate, ds: Dataset, warnings: tuple[str, ...]) -> SeriesPlan:
    """A projection image (or cine) shown as its own volume: one plan per file, all its frames."""
    w = list(warnings)
    spacing = c.pixel_spacing
    if spacing is None:
        spacing = (1.0, 1.0)
        w.append("no PixelSpacing or ImagerPixelSpacing: assuming 1 mm pixels (distances are not real)")
    raw = c.source.raw_offset
    sources = tuple(replace(c.source, frame=f, raw_offset=None if raw is None else raw + f * c.frame_bytes)
                    for f in range(c.frames))
    common = _common(ds, SeriesKind.IMAGES, os.path.basename(c.source.path), w)
    return SeriesPlan(
        **common, files=(c.source.path,), file_sizes=_sizes((c.source.path,)), positions_mm=tuple(float(f) for f in range(c.frames)),
        slices=sources, rows=c.rows, columns=c.columns, pixel_spacing=spacing, window=c.window,
    )


def _stack_plan(members: list[Candidate], ds: Dataset, kind: SeriesKind, stack_key: str,
                warnings: list[str]) -> SeriesPlan:
    first = members[0]
    geo = analyse_stack([c.source for c in members], first.row_cosine, first.column_cosine,
                        first.pixel_spacing or (1.0, 1.0), first.slice_thickness, first.header_tilt)
    files = tuple(dict.fromkeys(s.path for s in geo.slices))
    common = _common(ds, kind, stack_key, warnings + list(geo.warnings))
    return SeriesPlan(
        **common, files=files, file_sizes=_sizes(files), positions_mm=geo.positions_mm, slices=geo.slices,
        rows=first.rows, columns=first.columns, row_cosine=first.row_cosine,
        column_cosine=first.column_cosine, pixel_spacing=first.pixel_spacing or (1.0, 1.0),
        slice_thickness=first.slice_thickness, gantry_tilt_deg=geo.tilt_deg,
        needs_resampling=geo.needs_resampling, window=first.window,
    )


def _sizes(files: tuple[str, ...]) -> tuple[int, ...]:
    """Sizes of the files as examined, for :func:`load_volume` to notice files changed since."""
    out = []
    for f in files:
        try:
            out.append(os.stat(f).st_size)
        except OSError:
            out.append(-1)
    return tuple(out)


def load_series(paths: Iterable[Path | str]) -> list[Volume]:
    """Examine the files and load every plan found (skipped files are left out silently)."""
    plans, _ = examine(paths)
    return [load_volume(p) for p in plans]
