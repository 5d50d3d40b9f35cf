"""``import-lidc``: the LIDC-IDRI reads of one series as one DICOM SEG per reader, plus their agreement."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workstation.dicom.lidc import LidcError, LidcFile, parse_lidc_xml, rasterise_read
from workstation.labels.agreement import Agreement, largest_common_structure
from workstation.model.labelmap import LabelMap


@dataclass(frozen=True)
class LidcImport:
    files: dict[str, Path]  # annotator -> SEG file
    maps: dict[str, LabelMap]
    agreement: Agreement | None
    warnings: tuple[str, ...]


def _series_paths(xml: LidcFile, series: str | None, fetch_paths: Callable[[str], list] | None) -> list[Path]:
    from workstation.archive.client import iter_files

    if series and Path(series).exists():
        return list(iter_files([Path(series)]))
    uid = series or xml.series_instance_uid
    if fetch_paths is None:
        raise LidcError(f"series {uid}: give --series as a folder")
    try:
        return [Path(p) for p in fetch_paths(uid)]
    except Exception as exc:  # noqa: BLE001 - NotFound and archive errors: one message
        raise LidcError(f"the series {uid} of the reads is not available ({exc}); give --series PATH") from None


def import_lidc(xml_path: Path, out_dir: Path, *, series: str | None = None,
                fetch_paths: Callable[[str], list] | None = None) -> LidcImport:
    """Parse the reads, rasterise each reader onto the series, write one SEG per reader into ``out_dir``."""
    from workstation.dicom.seg import labelmap_to_seg
    from workstation.dicom.series import load_series

    xml = parse_lidc_xml(xml_path)
    paths = _series_paths(xml, series, fetch_paths)
    volumes = load_series(paths)
    volume = next((v for v in volumes if v.info.series_instance_uid == xml.series_instance_uid), None)
    if volume is None:
        raise LidcError(f"{xml_path}: its series {xml.series_instance_uid} is not among the "
                        f"{len(volumes)} series given")
    sources = _source_headers(paths, volume.info.series_instance_uid)
    out_dir.mkdir(parents=True, exist_ok=True)
    files, maps, warnings = {}, {}, []
    characteristics = {}
    for read in xml.reads:
        labelmap, notes = rasterise_read(read, volume)
        warnings += notes
        characteristics[read.annotator] = {n.nodule_id: n.characteristics for n in read.nodules if n.characteristics}
        if not labelmap.segments:
            warnings.append(f"{read.annotator}: no nodule contour on this series; no SEG written")
            continue
        seg = labelmap_to_seg(labelmap, sources, series_number=900 + read.reader, description=read.annotator)
        _name_annotator(seg, read.annotator, read.reader)
        path = out_dir / f"lidc-reader-{read.reader}-seg.dcm"
        seg.save_as(path, enforce_file_format=True)
        files[read.annotator], maps[read.annotator] = path, labelmap
    # characteristics wait for the SR writer (workstation.dicom.sr); kept as JSON meanwhile
    (out_dir / "lidc-characteristics.json").write_text(json.dumps(characteristics, indent=2))
    return LidcImport(files, maps, largest_common_structure(maps), tuple(warnings))


def _source_headers(paths: list[Path], series_uid: str) -> list:
    import pydicom

    out = []
    for p in paths:
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - files that are not DICOM were skipped by the loader too
            continue
        if str(ds.get("SeriesInstanceUID", "")) == series_uid:
            out.append(ds)
    return out


def _name_annotator(seg, annotator: str, reader: int) -> None:
    """Name the reader in the SEG: content creator, label and series description."""
    seg.ContentCreatorName = f"LIDC^Reader {reader}"
    seg.ContentLabel = f"LIDC_READER_{reader}"
    seg.SeriesDescription = f"{annotator} nodules"
