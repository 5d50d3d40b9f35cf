"""Command line: ``workstation [--home DIR] [gui|import|studies|series|info|render|delete|archives|fetch|store]``.

Remote archives (``archives``, ``fetch``, ``store``, ``--archive NAME``) live in :mod:`workstation.cli_archives`.

With no subcommand the desktop application starts.  Exit codes: 0 success, 1 failure (the reason is one
line on stderr), 2 usage error.  A bad input never shows a traceback (set ``WORKSTATION_DEBUG=1`` to see
one for an unexpected error).

``info`` prints one JSON object when the input holds one series and a JSON list of objects, one per
series, when it holds several.  Every object carries ``skipped``: the input's files that are in no
series, with the reason (the same list in each object of a list, so any one object tells the whole story).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from workstation import ai_archive, cli_archives
from workstation.ai import cli as ai_cli
from workstation.config import ConfigError, Settings, load_settings
from workstation.labels import cli as labels_cli

VIEWS = ("axial", "coronal", "sagittal", "3d")


class CliError(Exception):
    """A failure to report on stderr as one line (exit code 1)."""


# -- argument parsing ----------------------------------------------------------------------------------
def _position(text: str) -> tuple[float, float, float]:
    try:
        x, y, z = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y,Z in millimetres (e.g. 0,-20.5,100), got {text!r}") from None
    return (x, y, z)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels (e.g. 512x512), got {text!r}") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise argparse.ArgumentTypeError(f"size must be between 16 and 8192 pixels per side, got {text!r}")
    return (w, h)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workstation", description="Radiology reading workstation.")
    parser.add_argument("--home", type=Path, help="data folder (overrides $WORKSTATION_HOME)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("gui", help="open the desktop application (the default)")
    p = sub.add_parser("import", help="import DICOM files, folders, zip files or DICOMDIRs into the local archive")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p = sub.add_parser("studies", help="list the studies in the local archive (or another with --archive)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--archive", metavar="NAME", help="a remote archive (see `workstation archives list`)")
    p.add_argument("--patient-id", default="", metavar="ID", help="only this patient (* and ? allowed)")
    p.add_argument("--patient-name", default="", metavar="NAME", help="patient name (* and ? allowed)")
    p = sub.add_parser("series", help="list the series of a study")
    p.add_argument("study_uid", metavar="STUDY_UID")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--archive", metavar="NAME", help="a remote archive (see `workstation archives list`)")
    p = sub.add_parser("info", help="describe the image series in a file, folder or archived series")
    p.add_argument("target", metavar="PATH_OR_SERIES_UID")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("render", help="render a view of a series to a PNG file")
    p.add_argument("target", metavar="PATH_OR_SERIES_UID")
    p.add_argument("--view", choices=VIEWS, default="axial")
    p.add_argument("--position-mm", type=_position, metavar="X,Y,Z", help="LPS point the slice passes through")
    p.add_argument("--preset", help="window preset (lung, bone, auto, ...) or 3D preset (ct-bone, ...)")
    p.add_argument("--size", type=_size, default=(512, 512), metavar="WxH")
    p.add_argument("--series", metavar="INDEX_OR_UID", help="which series when the input has several (default: first)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.png")
    p = sub.add_parser("delete", help="delete a study from the local archive")
    p.add_argument("study_uid", metavar="STUDY_UID")
    cli_archives.add_parsers(sub)
    ai_cli.add_parsers(sub)  # plugins list, ai run (issue 4)
    labels_cli.add_parsers(sub)  # import-lidc, sync status/run/add (issue 5)
    return parser


def _settings(home: Path | None) -> Settings:
    env = dict(os.environ)
    if home is not None:
        env["WORKSTATION_HOME"] = str(home)
    return load_settings(env)


def _archive(settings: Settings, name: str | None = None):
    """The embedded local archive, or the remote archive with that name."""
    if name and name != "Local":
        return cli_archives.open_named(settings, name)
    from workstation.archive.local import LocalArchive

    return LocalArchive(settings.archive_dir)


# -- commands ------------------------------------------------------------------------------------------
def cmd_gui(settings: Settings, args: argparse.Namespace) -> int:
    try:
        from workstation.app import run_gui
    except ImportError as exc:
        raise CliError(f"the desktop application cannot start: {exc}") from None
    return int(run_gui(settings, samples=True))


def _progress_printer():
    """A progress callback drawing one updating line on an interactive stderr (None otherwise)."""
    if not sys.stderr.isatty():
        return None

    def show(p) -> None:
        total = f"/{p.total}" if p.total else ""
        sys.stderr.write(f"\r\033[Kimporting {p.done}{total}")
        sys.stderr.flush()

    return show


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    archive = _archive(settings)
    progress = _progress_printer()
    report = archive.import_paths(args.paths, progress)
    if progress is not None:
        sys.stderr.write("\r\033[K")
    print(f"imported {len(report.imported)} files into {len(report.series)} series of {len(report.studies)} studies")
    touched = set(report.series)
    for study_uid in report.studies:
        study = archive.get_study(study_uid)
        print(f"study {study_uid}  {study.patient_name or '-'} ({study.patient_id or '-'})  "
              f"{_date(study.study_date)}  {study.study_description}")
        for s in archive.find_series(study_uid):
            if s.series_instance_uid in touched:
                number = "" if s.series_number is None else f"#{s.series_number} "
                print(f"  series {number}{s.modality} {s.series_description!r}: "
                      f"{s.number_of_instances} instances  {s.series_instance_uid}")
    for skip in report.skipped:
        print(f"skipped {skip.path}: {skip.reason}")
    if report.duplicates:
        print(f"{len(report.duplicates)} duplicates (already in the archive, not copied again)")
    return 0 if report.imported or report.duplicates else 1


def _date(d: str) -> str:
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else (d or "-")


def cmd_studies(settings: Settings, args: argparse.Namespace) -> int:
    from workstation.archive.client import StudyQuery

    query = StudyQuery(patient_id=args.patient_id, patient_name=args.patient_name, limit=0)
    studies = _archive(settings, args.archive).find_studies(query)
    rows = [
        {
            "study_instance_uid": s.study_instance_uid,
            "patient_name": s.patient_name,
            "patient_id": s.patient_id,
            "study_date": s.study_date,
            "modalities": list(s.modalities),
            "study_description": s.study_description,
            "accession_number": s.accession_number,
            "number_of_series": s.number_of_series,
            "number_of_instances": s.number_of_instances,
        }
        for s in studies
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [(_date(r["study_date"]), r["patient_name"] or "-", r["patient_id"] or "-", "/".join(r["modalities"]),
              str(r["number_of_series"]), str(r["number_of_instances"]), r["study_description"],
              r["study_instance_uid"]) for r in rows]
    _print_table(("DATE", "PATIENT", "ID", "MOD", "SERIES", "IMAGES", "DESCRIPTION", "STUDY UID"), table)
    return 0


def cmd_series(settings: Settings, args: argparse.Namespace) -> int:
    archive = _archive(settings, args.archive)
    if hasattr(archive, "get_study"):
        archive.get_study(args.study_uid)  # NotFound with a clear message
    series = archive.find_series(args.study_uid)
    rows = [
        {
            "series_instance_uid": s.series_instance_uid,
            "series_number": s.series_number,
            "modality": s.modality,
            "series_description": s.series_description,
            "body_part": s.body_part,
            "number_of_instances": s.number_of_instances,
        }
        for s in series
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [("" if r["series_number"] is None else str(r["series_number"]), r["modality"], r["series_description"],
              str(r["number_of_instances"]), r["series_instance_uid"]) for r in rows]
    _print_table(("NUMBER", "MOD", "DESCRIPTION", "IMAGES", "SERIES UID"), table)
    return 0


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


def cmd_delete(settings: Settings, args: argparse.Namespace) -> int:
    removed = _archive(settings).delete_study(args.study_uid)
    print(f"deleted study {args.study_uid} ({removed} instances)")
    return 0


# -- loading a series for info / render ------------------------------------------------------------------
def load_target(settings: Settings, target: str):
    """Load every series in a file or folder, or the archived series with that UID: (volumes, skipped)."""
    from workstation.archive.client import NotFound

    path = Path(target)
    if path.exists():
        paths = [path]
    else:
        try:
            paths = _archive(settings).fetch_series(target)
        except NotFound:
            raise CliError(f"{target}: no such file or folder, and no series with that UID in the local archive") from None
    try:
        from workstation.dicom.series import examine, load_volume
    except ImportError as exc:
        raise CliError(f"DICOM loading is not available: {exc}") from None
    plans, skipped = examine(paths)
    if not plans:
        detail = f" ({skipped[0].path}: {skipped[0].reason})" if len(skipped) == 1 else ""
        more = f"; {len(skipped)} files skipped, first: {skipped[0].path}: {skipped[0].reason}" if len(skipped) > 1 else ""
        raise CliError(f"{target}: no loadable image series{detail}{more}")
    return [load_volume(p) for p in plans], skipped


def pick_volume(volumes: list, which: str | None):
    """The series named by index or UID (default the first)."""
    if which is None:
        return volumes[0]
    for v in volumes:
        if v.info.series_instance_uid == which:
            return v
    if which.isdigit() and int(which) < len(volumes):
        return volumes[int(which)]
    raise CliError(f"--series {which}: not one of the {len(volumes)} series (give an index from 0 or a series UID)")


def volume_summary(volume, skipped) -> dict:
    """The JSON object ``info`` prints for one volume."""
    info = volume.info
    window = info.default_window
    return {
        "series_instance_uid": info.series_instance_uid,
        "study_instance_uid": info.study_instance_uid,
        "frame_of_reference_uid": info.frame_of_reference_uid,
        "series_number": info.series_number,
        "series_description": info.series_description,
        "modality": info.modality,
        "shape": list(volume.shape),
        "spacing_mm": [round(float(s), 6) for s in volume.spacing],
        "affine_lps": [[round(float(v), 6) for v in row] for row in volume.affine],
        "gantry_tilt_deg": float(info.gantry_tilt_deg),
        "dtype": str(volume.voxels.dtype),
        "units": info.units,
        "photometric": info.photometric.value,
        "default_window": None if window is None else {"center": window.center, "width": window.width},
        "padding_value": info.padding_value,
        "warnings": [str(w) for w in info.warnings],
        "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
    }


def cmd_info(settings: Settings, args: argparse.Namespace) -> int:
    volumes, skipped = load_target(settings, args.target)
    summaries = [volume_summary(v, skipped) for v in volumes]
    if args.json:
        print(json.dumps(summaries[0] if len(summaries) == 1 else summaries, indent=2))
        return 0
    for s in summaries:
        print(f"series {s['series_instance_uid'] or '-'}  {s['modality']}  {s['series_description']}")
        print(f"  shape {s['shape']} (slices, rows, columns)  spacing {s['spacing_mm']} mm (column, row, slice)")
        print(f"  dtype {s['dtype']}  units {s['units'] or '-'}  gantry tilt {s['gantry_tilt_deg']:.2f} deg")
        for w in s["warnings"]:
            print(f"  warning: {w}")
    for skip in skipped:
        print(f"skipped {skip.path}: {skip.reason}")
    return 0


def cmd_render(settings: Settings, args: argparse.Namespace) -> int:
    volumes, _ = load_target(settings, args.target)
    volume = pick_volume(volumes, args.series)
    if len(volumes) > 1 and args.series is None:
        print(f"note: the input has {len(volumes)} series; rendering the first "
              f"({volume.info.series_instance_uid}); choose with --series", file=sys.stderr)
    try:
        from workstation.render.offscreen import render_to_png
    except ImportError as exc:
        raise CliError(f"rendering is not available: {exc}") from None
    try:
        out = render_to_png(volume, args.view, args.out, position_mm=args.position_mm, preset=args.preset,
                            size=args.size)
    except (KeyError, ValueError) as exc:  # unknown preset or view: the renderer says which
        raise CliError(str(exc).strip("'\"")) from None
    print(out)
    return 0


COMMANDS = {
    "gui": cmd_gui,
    "import": cmd_import,
    "studies": cmd_studies,
    "series": cmd_series,
    "info": cmd_info,
    "render": cmd_render,
    "delete": cmd_delete,
    "archives": cli_archives.cmd_archives,
    "fetch": cli_archives.cmd_fetch,
    "store": cli_archives.cmd_store,
}
COMMANDS.update(cli_archives.commands())  # + cache, priors
COMMANDS.update(ai_cli.commands(  # ai run --archive NAME: fetch from and store to it (workstation.ai_archive)
    fetch_paths=lambda settings, uid, archive=None: _archive(settings, archive).fetch_series(uid),
    open_store=lambda settings, name: ai_archive.results_store(settings, name, _archive)))
COMMANDS.update(labels_cli.commands(_archive, lambda settings, uid: _archive(settings).fetch_series(uid)))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (never raises for a bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
        return int(exc.code or 0)
    command = args.command or "gui"
    try:
        settings = _settings(args.home)
        return COMMANDS[command](settings, args)
    except KeyboardInterrupt:
        print("workstation: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the user gets one line, not a traceback
        if os.environ.get("WORKSTATION_DEBUG") == "1":
            raise
        print(f"workstation: error: {_message(exc)}", file=sys.stderr)
        return 1


def _message(exc: Exception) -> str:
    """One line for the user: our own errors speak for themselves; others get their type named."""
    from workstation.archive.client import ArchiveError

    if isinstance(exc, (CliError, ArchiveError, ConfigError, cli_archives.ArchiveCliError)):
        return str(exc)
    reason = getattr(exc, "reason", None)  # DicomReadError and friends carry a user-facing reason
    if isinstance(reason, str):
        return f"{getattr(exc, 'path', '')}: {reason}".lstrip(": ")
    if isinstance(exc, OSError):
        return f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
    return f"{type(exc).__name__}: {exc} (set WORKSTATION_DEBUG=1 for details)"
