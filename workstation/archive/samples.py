"""First-run sample studies: two Debian example volumes converted to DICOM, and the shared test cases.

A marker file (``<archive root>/samples.json``) records each sample once it is in the archive, so the
second run does no work at all.  A sample whose source is missing (package not installed, no shared
data folder) is reported and tried again next time, so installing the package later still works.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workstation.archive.client import ImportReport, Progress, ProgressFn, Skipped
from workstation.archive.local import LocalArchive

MARKER_NAME = "samples.json"


@dataclass(frozen=True)
class VolumeSample:
    """A volume file shipped by a Debian package, imported as a new DICOM study."""

    key: str
    path: Path
    package: str
    patient_name: str
    patient_id: str
    study_description: str


DEBIAN_SAMPLES = (
    VolumeSample(
        key="invesalius-cranium",
        path=Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3"),
        package="invesalius-examples",
        patient_name="SAMPLE^CRANIUM",
        patient_id="SAMPLE-CT-CRANIUM",
        study_description="Sample head CT (InVesalius Cranium)",
    ),
    VolumeSample(
        key="mricron-ch2",
        path=Path("/usr/share/mricron/templates/ch2.nii.gz"),
        package="mricron-data",
        patient_name="SAMPLE^CH2 BRAIN",
        patient_id="SAMPLE-MR-CH2",
        study_description="Sample brain MRI T1 (MRIcron ch2 template)",
    ),
)


def _read_marker(path: Path) -> dict[str, bool]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {str(k): bool(v) for k, v in data.get("done", {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}  # missing or damaged marker: redo (imports are idempotent through duplicates)


def _write_marker(path: Path, done: dict[str, bool]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": 1, "done": done}, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _merge(reports: list[ImportReport]) -> ImportReport:
    return ImportReport(
        imported=tuple(u for r in reports for u in r.imported),
        duplicates=tuple(u for r in reports for u in r.duplicates),
        skipped=tuple(s for r in reports for s in r.skipped),
        studies=tuple(sorted({u for r in reports for u in r.studies})),
        series=tuple(sorted({u for r in reports for u in r.series})),
    )


def _prefixed(progress: ProgressFn | None, prefix: str) -> ProgressFn | None:
    if progress is None:
        return None
    return lambda p: progress(Progress(p.done, p.total, f"{prefix}: {p.text}" if p.text else prefix))


def _import_volume_sample(archive: LocalArchive, sample: VolumeSample, progress: ProgressFn | None) -> ImportReport:
    """Convert the sample volume to DICOM in a scratch folder and import that."""
    from workstation.dicom.errors import DicomReadError
    from workstation.dicom.volume_import import volume_file_to_dicom

    if progress is not None:
        progress(Progress(0, 0, f"converting {sample.path.name} to DICOM"))
    with tempfile.TemporaryDirectory(dir=archive.tmp_dir, prefix="sample-") as scratch:
        try:
            files = volume_file_to_dicom(
                sample.path,
                Path(scratch),
                patient_name=sample.patient_name,
                patient_id=sample.patient_id,
                study_description=sample.study_description,
            )
        except DicomReadError as exc:
            return ImportReport(skipped=(Skipped(str(sample.path), exc.reason),))
        except Exception as exc:  # noqa: BLE001 - a broken sample must never stop the application starting
            return ImportReport(skipped=(Skipped(str(sample.path), f"cannot convert to DICOM: {exc}"),))
        return archive.import_paths(files, _prefixed(progress, sample.key))


def _shared_case_inputs(case: Path) -> list[Path]:
    """A case's DICOM: its ``dicom/`` folder plus DICOM files lying next to it (SEG objects)."""
    inputs = [case / "dicom"] if (case / "dicom").is_dir() else []
    inputs += sorted(p for p in case.iterdir() if p.is_file() and p.suffix.lower() == ".dcm")
    return inputs


def install_samples(
    archive: LocalArchive,
    shared_data: Path | None,
    progress: ProgressFn | None = None,
) -> ImportReport:
    """Import the sample studies not imported yet; quick and idempotent after the first run.

    Missing sources are reported in ``skipped`` (e.g. "package invesalius-examples is not installed").
    """
    marker = archive.root / MARKER_NAME
    done = _read_marker(marker)
    reports: list[ImportReport] = []
    jobs: list[tuple[str, Callable[[], ImportReport]]] = []
    for sample in DEBIAN_SAMPLES:
        if done.get(sample.key):
            continue
        if not sample.path.is_file():
            reason = f"package {sample.package} is not installed (apt install {sample.package})"
            reports.append(ImportReport(skipped=(Skipped(str(sample.path), reason),)))
            continue
        jobs.append((sample.key, lambda s=sample: _import_volume_sample(archive, s, progress)))
    if shared_data is not None and Path(shared_data).is_dir():
        for case in sorted(p for p in Path(shared_data).iterdir() if p.is_dir()):
            key = f"shared:{case.name}"
            inputs = _shared_case_inputs(case)
            if done.get(key) or not inputs:
                continue
            jobs.append((key, lambda i=inputs, k=key: archive.import_paths(i, _prefixed(progress, k))))
    for key, job in jobs:
        report = job()
        reports.append(report)
        # a sample counts as done when something of it is in the archive now (imported or already there)
        if report.imported or report.duplicates:
            done[key] = True
            _write_marker(marker, done)
    return _merge(reports)
