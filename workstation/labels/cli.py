"""The labelling subcommands: ``import-lidc XML [--series PATH_OR_UID] --out DIR [--enqueue ARCHIVE]``, ``sync ...``
and ``export-dataset --archive NAME --schema NAME --out DIR [--format nnunetv2|monai]``.

:mod:`workstation.cli` registers them through :func:`add_parsers` and :func:`commands`, passing in how to
open a named archive and fetch an archived series' files.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from workstation.sync import cli as sync_cli

FetchPaths = Callable[[object, str], list]  # (settings, series UID) -> files of that archived series
OpenArchive = Callable[[object, str], object]  # (settings, archive name) -> ArchiveClient


class LabelsCommandError(Exception):
    """One line for the user (``workstation.cli`` prints ``reason``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = ""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-lidc", help="turn LIDC-IDRI XML reads into one DICOM SEG and SR per reader")
    p.add_argument("xml", type=Path, metavar="XML")
    p.add_argument("--series", metavar="PATH_OR_UID",
                   help="the CT series (folder or archived series UID; default: the XML's series in the local archive)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the SEG and SR files")
    p.add_argument("--enqueue", metavar="ARCHIVE",
                   help="also put the SEG and SR files in the sync outbox for that archive (`workstation sync run`)")
    p.add_argument("--json", action="store_true", help="print the agreement as JSON")
    sync_cli.add_parsers(sub)
    e = sub.add_parser("export-dataset", help="export images and approved (else latest) annotations, de-identified, "
                                              "as an nnU-Net v2 or MONAI training dataset")
    e.add_argument("--archive", required=True, metavar="NAME", help="the archive to read studies and annotations from")
    e.add_argument("--query", action="append", default=[], metavar="FIELD=VALUE",
                   help="study filter, repeatable: patient_id, patient_name, accession_number, study_description, "
                        "modality, date_from, date_to (YYYYMMDD); * and ? match")
    e.add_argument("--schema", required=True, metavar="NAME", help="label schema name or file (e.g. lung-nodule)")
    e.add_argument("--out", type=Path, required=True, metavar="DIR", help="dataset folder (resumable)")
    e.add_argument("--format", choices=("nnunetv2", "monai"), default="nnunetv2")
    e.add_argument("--key-file", type=Path, metavar="PATH",
                   help="de-identification key (default <home>/deid.key, created on first use; keep it)")


def commands(open_archive: OpenArchive, fetch_paths: FetchPaths) -> dict[str, Callable]:
    return {"import-lidc": lambda settings, args: cmd_import_lidc(settings, args, fetch_paths),
            "sync": lambda settings, args: sync_cli.cmd_sync(settings, args, open_archive),
            "export-dataset": lambda settings, args: cmd_export_dataset(settings, args, open_archive)}


_QUERY_FIELDS = ("patient_id", "patient_name", "accession_number", "study_description", "modality",
                 "date_from", "date_to")


def study_query(items: list[str]):
    """``FIELD=VALUE`` strings as a StudyQuery (no limit); LabelsCommandError naming a bad one."""
    import datetime as _dt

    from workstation.archive.client import StudyQuery

    values: dict = {"limit": 0}
    for text in items:
        name, sep, value = text.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in _QUERY_FIELDS:
            raise LabelsCommandError(f"--query {text!r}: expected FIELD=VALUE with FIELD one of {', '.join(_QUERY_FIELDS)}")
        if name.startswith("date_"):
            try:
                value = _dt.datetime.strptime(value.strip(), "%Y%m%d").date()
            except ValueError:
                raise LabelsCommandError(f"--query {text!r}: dates are YYYYMMDD") from None
        values[name] = value
    return StudyQuery(**values)


def cmd_export_dataset(settings, args: argparse.Namespace, open_archive: OpenArchive) -> int:
    from workstation.dicom.deid import DeidError, Deidentifier, load_or_create_key
    from workstation.labels.dataset_export import ExportError, export_dataset
    from workstation.labels.schema import SchemaError, load_schema

    query = study_query(args.query)
    try:
        schema = load_schema(args.schema)
        key = load_or_create_key(args.key_file or Path(settings.home) / "deid.key")
        archive = open_archive(settings, args.archive)
        summary = export_dataset(archive, schema, args.out, Deidentifier(key), query=query, fmt=args.format,
                                 progress=lambda line: print(line, flush=True))
    except (SchemaError, DeidError, ExportError, OSError) as exc:
        raise LabelsCommandError(str(exc)) from None
    for line in summary.problems:
        print(f"warning: {line}")
    return 0 if summary.written or summary.skipped else 1


def cmd_import_lidc(settings, args: argparse.Namespace, fetch_paths: FetchPaths) -> int:
    from workstation.labels.lidc_import import import_lidc

    try:
        result = import_lidc(args.xml, args.out, series=args.series,
                             fetch_paths=lambda uid: fetch_paths(settings, uid))
    except ValueError as exc:  # LidcError, SegError: a bad input, one line
        raise LabelsCommandError(str(exc)) from None
    for w in result.warnings:
        print(f"warning: {w}")
    for annotator, path in result.files.items():
        sr = result.sr_files.get(annotator)
        print(f"{annotator}: {path}" + (f"  {sr}" if sr else ""))
    if args.enqueue:
        from workstation.labels.lidc_import import enqueue_import
        from workstation.sync.outbox import Outbox, OutboxError

        try:
            with Outbox(sync_cli.outbox_dir(settings)) as outbox:
                items = enqueue_import(result, outbox, args.enqueue)
        except (OSError, OutboxError) as exc:
            raise LabelsCommandError(f"--enqueue {args.enqueue}: {exc}") from None
        print(f"{len(items)} file(s) in the outbox for {args.enqueue} (send with `workstation sync run`)")
    a = result.agreement
    if a is None:
        print("no nodule was contoured by every reader: no agreement table")
        return 0
    if args.json:
        print(json.dumps({"annotators": a.annotators, "segments": a.segments, "volumes_mm3": a.volumes_mm3,
                          "dice": a.dice}, indent=2))
        return 0
    print(f"\nagreement on the largest nodule contoured by all {len(a.annotators)} readers:")
    width = max(len(n) for n in a.annotators)
    print(" " * width + "  " + "  ".join(f"{'R' + str(i + 1):>6}" for i in range(len(a.annotators))) + "  volume mm^3")
    for i, name in enumerate(a.annotators):
        cells = "  ".join(f"{v:6.3f}" for v in a.dice[i])
        print(f"{name:<{width}}  {cells}  {a.volumes_mm3[i]:11.1f}")
    return 0
