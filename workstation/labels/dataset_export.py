"""``export-dataset``: images and their annotations from an archive, de-identified, as a training dataset.

For every image series of the matching studies that an annotation set (:mod:`.annotation_sets`) labels,
the best set is taken (approved by review first, then the most recent) at its approved revision (else its
latest), its segments are mapped onto the label schema (by segmented property type code, else by name;
label values 1..N in schema order), and the case is written as NIfTI (SimpleITK):

* ``nnunetv2``: ``imagesTr/NNN_0000.nii.gz``, ``labelsTr/NNN.nii.gz`` and ``dataset.json`` (channel_names,
  labels, numTraining, file_ending);
* ``monai``: the same files plus ``datalist.json`` (``{"training": [{"image", "label"}], "labels"}``).

``headers/NNN.json`` holds the first image's header de-identified by the PS3.15 Basic Profile (DICOM JSON);
``provenance.json`` records per case the keyed hashes of the source UIDs, the annotator, revision and
review state, the patient's pseudonym and shifted study date (:mod:`workstation.dicom.deid`): nothing in
the output names the patient.  A case already written completely (both files, and its entry in
provenance.json with the same source revision) is skipped, so an interrupted export resumes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workstation.archive.client import StudyQuery
from workstation.dicom.deid import Deidentifier
from workstation.labels.annotation_sets import (
    AnnotationSet,
    AnnotationSetError,
    LoadedSet,
    list_sets,
    load_set,
    read_sr_file,
    review_state,
)
from workstation.labels.schema import LabelSchema
from workstation.model.volume import Volume

__all__ = ["ExportError", "ExportSummary", "FORMATS", "export_dataset"]

FORMATS = ("nnunetv2", "monai")
FILE_ENDING = ".nii.gz"


class ExportError(ValueError):
    """An export that cannot start (bad format, unreadable output folder); the message is for the user."""


@dataclass
class ExportSummary:
    written: list[str] = field(default_factory=list)  # case ids written in this run
    skipped: list[str] = field(default_factory=list)  # case ids already complete
    problems: list[str] = field(default_factory=list)  # one line per case that could not be exported
    out: Path = Path()


def export_dataset(archive, schema: LabelSchema, out: Path, deid: Deidentifier, *, query: StudyQuery | None = None,
                   fmt: str = "nnunetv2", progress: Callable[[str], None] = print) -> ExportSummary:
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    out = Path(out)
    for sub in ("imagesTr", "labelsTr"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    labels = {"background": 0, **{s.segment.name: n for n, s in enumerate(schema.segments, start=1)}}
    provenance = _read_json(out / "provenance.json") or {}
    cases: dict = provenance.get("cases", {})
    by_source = {c["source_series"]: cid for cid, c in cases.items()}
    summary = ExportSummary(out=out)
    studies = archive.find_studies(query or StudyQuery(limit=0))
    progress(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} to look at")
    channel = None
    for n_study, study in enumerate(studies, start=1):
        try:
            chosen = _choose_sets(archive, study.study_instance_uid)
        except (AnnotationSetError, OSError) as exc:
            summary.problems.append(f"study {n_study}: {exc}")
            progress(f"[{n_study}/{len(studies)}] skipped: {exc}")
            continue
        if not chosen:
            progress(f"[{n_study}/{len(studies)}] no annotation set with a segmentation")
        for series_uid, (aset, revision, state) in chosen.items():
            key = deid.hash(series_uid)
            case_id = by_source.get(key) or f"{len(cases) + 1:03d}"
            seg_rev = aset.seg_revision(revision)
            done = cases.get(case_id)
            if done and done.get("seg") == deid.hash(seg_rev.sop_instance_uid) and _files_exist(out, case_id):
                summary.skipped.append(case_id)
                channel = channel or done.get("modality")
                progress(f"[{n_study}/{len(studies)}] case {case_id}: already complete, skipped")
                continue
            progress(f"[{n_study}/{len(studies)}] case {case_id}: fetching {aset.annotator} revision {revision}")
            try:
                loaded = load_set(archive, aset, revision)
                label_array, mapping = _schema_labels(loaded, schema, labels)
            except (AnnotationSetError, ExportError) as exc:
                summary.problems.append(f"case {case_id}: {exc}")
                progress(f"[{n_study}/{len(studies)}] case {case_id}: skipped: {exc}")
                continue
            volume = loaded.volume
            _write_nifti(volume, volume.voxels, out / "imagesTr" / f"{case_id}_0000{FILE_ENDING}")
            _write_nifti(volume, label_array, out / "labelsTr" / f"{case_id}{FILE_ENDING}")
            channel = channel or volume.info.modality
            _write_json(out / "headers" / f"{case_id}.json", _deidentified_header(archive, series_uid, deid))
            cases[case_id] = _case_record(deid, loaded, series_uid, revision, state, mapping, volume)
            by_source[key] = case_id
            _write_json(out / "provenance.json", {"schema": schema.name, "schema_version": schema.version,
                                                  "format": fmt, "labels": labels, "cases": cases})
            summary.written.append(case_id)
            progress(f"[{n_study}/{len(studies)}] case {case_id}: written "
                     f"({', '.join(f'{k} {v}' for k, v in mapping.items()) or 'no labelled voxels'})")
    _write_json(out / "provenance.json", {"schema": schema.name, "schema_version": schema.version, "format": fmt,
                                          "labels": labels, "cases": cases})
    _write_json(out / "dataset.json", {
        "name": schema.name, "description": f"{schema.title} (schema version {schema.version}), de-identified",
        "channel_names": {"0": channel or (schema.modalities[0] if schema.modalities else "image")},
        "labels": labels, "numTraining": len(cases), "file_ending": FILE_ENDING})
    if fmt == "monai":
        _write_json(out / "datalist.json", {
            "labels": labels,
            "training": [{"image": f"imagesTr/{cid}_0000{FILE_ENDING}", "label": f"labelsTr/{cid}{FILE_ENDING}"}
                         for cid in sorted(cases)]})
    progress(f"{len(summary.written)} written, {len(summary.skipped)} already there, "
             f"{len(summary.problems)} skipped with a problem; {len(cases)} case(s) in {out}")
    return summary


# -- choosing what to export -------------------------------------------------------------------------------
def _choose_sets(archive, study_uid: str) -> dict[str, tuple[AnnotationSet, int, str]]:
    """Per image series: (set, revision, review state) of the best set: approved first, then latest."""
    import pydicom

    best: dict[str, tuple[tuple, AnnotationSet, int, str]] = {}
    for aset in list_sets(archive, study_uid):
        if not aset.seg:
            continue
        revision, state = _best_revision(aset)
        seg = aset.seg_revision(revision)
        refs = pydicom.dcmread(seg.path, stop_before_pixels=True).get("ReferencedSeriesSequence") or []
        if not refs:
            continue
        series_uid = str(refs[0].SeriesInstanceUID)
        rank = (state == "approved", seg.date, aset.annotator)
        if series_uid not in best or rank > best[series_uid][0]:
            best[series_uid] = (rank, aset, revision, state)
    return {uid: (aset, revision, state) for uid, (_, aset, revision, state) in best.items()}


def _best_revision(aset: AnnotationSet) -> tuple[int, str]:
    """The latest approved revision (its SR's findings all accepted), else the latest; with its state."""
    seg_revisions = {r.revision for r in aset.seg}
    states = {}
    for sr in reversed(aset.sr):
        if sr.revision not in seg_revisions:
            continue
        try:
            states[sr.revision] = review_state(read_sr_file(sr.path)[0])
        except AnnotationSetError:
            states[sr.revision] = "unreviewed"
        if states[sr.revision] == "approved":
            return sr.revision, "approved"
    latest = aset.seg[-1].revision
    return latest, states.get(latest, "unreviewed")


def _schema_labels(loaded: LoadedSet, schema: LabelSchema, labels: dict[str, int]) -> tuple[np.ndarray, dict]:
    """The set's layers as one array of schema label values; refuses voxels claimed by two labels."""
    by_type = {(s.segment.type.value, s.segment.type.scheme): s.segment.name for s in schema.segments}
    by_name = {s.segment.name.lower(): s.segment.name for s in schema.segments}
    out = np.zeros(loaded.volume.shape, np.uint8)
    mapping: dict[str, int] = {}
    for layer in loaded.layers:
        for segment in layer.segments:
            name = by_type.get((segment.type.value, segment.type.scheme)) or by_name.get(segment.name.lower())
            if name is None:
                continue  # not part of this schema
            mask = layer.labels == segment.number
            value = labels[name]
            clash = mask & (out != 0) & (out != value)
            if clash.any():
                raise ExportError(f"segment {segment.name!r} overlaps another schema label in "
                                  f"{int(clash.sum())} voxels; resolve the overlap before exporting")
            out[mask] = value
            mapping[name] = mapping.get(name, 0) + int(mask.sum())
    if not mapping:
        raise ExportError(f"none of the set's segments is in schema {schema.name!r}")
    return out, mapping


def _case_record(deid: Deidentifier, loaded: LoadedSet, series_uid: str, revision: int, state: str,
                 mapping: dict, volume: Volume) -> dict:
    info = volume.info
    patient = info.patient_id or info.patient_name
    aset = loaded.annotation_set
    seg, sr = loaded.seg_revision, loaded.sr_revision
    return {
        "patient": deid.pseudonym(patient), "study_date": deid.shift_date(info.study_date, patient),
        "source_study": deid.hash(info.study_instance_uid), "source_series": deid.hash(series_uid),
        "seg": deid.hash(seg.sop_instance_uid) if seg else None, "sr": deid.hash(sr.sop_instance_uid) if sr else None,
        "annotator": aset.annotator, "revision": revision, "review_state": state, "modality": info.modality,
        "voxels_per_label": mapping, "shape_kji": list(volume.shape),
    }


def _deidentified_header(archive, series_uid: str, deid: Deidentifier) -> dict:
    """The first image's header through the PS3.15 Basic Profile, as DICOM JSON (acquisition metadata for
    training: scanner, kVp, kernel, slice thickness; nothing that names the patient)."""
    import pydicom

    first = archive.fetch_series(series_uid)[0]  # cached by load_set: no second download
    header = deid.deidentify(pydicom.dcmread(first, stop_before_pixels=True))
    return header.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=lambda elem: "")


# -- files -------------------------------------------------------------------------------------------------
def _write_nifti(volume: Volume, array: np.ndarray, path: Path) -> None:
    """``array`` (``[k, j, i]`` on the volume's grid) as NIfTI with the grid's geometry; atomic rename."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    axes = volume.affine[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(v) for v in volume.affine[:3, 3]])
    image.SetDirection([float(v) for v in (axes / spacing).ravel()])
    tmp = path.with_name(f".{path.name[:-len(FILE_ENDING)]}.part{FILE_ENDING}")
    sitk.WriteImage(image, str(tmp), useCompression=True)
    os.replace(tmp, path)


def _files_exist(out: Path, case_id: str) -> bool:
    return (out / "imagesTr" / f"{case_id}_0000{FILE_ENDING}").is_file() and \
        (out / "labelsTr" / f"{case_id}{FILE_ENDING}").is_file()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: cannot read it to resume ({exc}); remove it to start over") from None


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)
