"""The ``sync`` subcommands: ``sync status [--json]``, ``sync run [--archive NAME] [--wait S]``,
``sync add FILE... --archive NAME``.

:mod:`workstation.cli` passes in how to open a named archive, so this module never reads endpoints itself.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
from collections.abc import Callable
from pathlib import Path

from workstation.sync.outbox import ItemStatus, Outbox
from workstation.sync.worker import RetryPolicy, SyncWorker

OpenArchive = Callable[[object, str], object]  # (settings, archive name) -> ArchiveClient


def outbox_dir(settings) -> Path:
    """Where the outbox lives: ``<home>/outbox``."""
    return Path(settings.home) / "outbox"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sync", help="the outbox of annotations waiting to be stored to archives")
    ssub = p.add_subparsers(dest="sync_command", metavar="ACTION", required=True)
    sp = ssub.add_parser("status", help="list the outbox items and their status")
    sp.add_argument("--json", action="store_true", help="print JSON")
    rp = ssub.add_parser("run", help="store the queued items to their archives")
    rp.add_argument("--archive", metavar="NAME", help="only the items for this archive")
    rp.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                    help="keep retrying (with backoff) for up to this long while items wait (default: one pass)")
    rp.add_argument("--retry-failed", action="store_true", help="queue the failed items again first")
    ap = ssub.add_parser("add", help="put DICOM files in the outbox for an archive")
    ap.add_argument("paths", nargs="+", type=Path, metavar="FILE")
    ap.add_argument("--archive", required=True, metavar="NAME")


def cmd_sync(settings, args: argparse.Namespace, open_archive: OpenArchive) -> int:
    with Outbox(outbox_dir(settings)) as outbox:
        if args.sync_command == "status":
            return _status(outbox, args.json)
        if args.sync_command == "add":
            for path in args.paths:
                item = outbox.enqueue(path, args.archive)
                print(f"{item.status.value:8} {item.sop_instance_uid}  -> {item.archive}")
            return 0
        return _run(outbox, args, lambda name: open_archive(settings, name))


def _status(outbox: Outbox, as_json: bool) -> int:
    items = outbox.items()
    if as_json:
        print(json.dumps({"counts": outbox.counts(), "items": [i.as_dict() for i in items]}, indent=2))
        return 0
    counts = outbox.counts()
    print("  ".join(f"{k} {v}" for k, v in counts.items()))
    for i in items:
        when = _dt.datetime.fromtimestamp(i.updated_at).strftime("%Y-%m-%d %H:%M:%S")
        error = f"  ({i.last_error})" if i.last_error and i.status is not ItemStatus.SENT else ""
        retry = ""
        if i.status is ItemStatus.QUEUED and i.attempts:  # as the Sync panel shows it
            retry = "  next retry " + _dt.datetime.fromtimestamp(i.next_attempt_at).strftime("%H:%M:%S")
        print(f"{i.status.value:8} {i.archive:12} attempts {i.attempts}  {when}  {i.sop_instance_uid}{error}{retry}")
    return 0


def _run(outbox: Outbox, args: argparse.Namespace, client_for) -> int:
    if args.retry_failed:
        outbox.requeue_failed(args.archive)
    worker = SyncWorker(outbox, client_for, RetryPolicy(base_delay_s=1.0, max_delay_s=30.0))
    if args.wait > 0:
        report = worker.drain(args.archive, timeout_s=args.wait)
    else:
        report = worker.run_once(args.archive)
    waiting = outbox.items(args.archive, ItemStatus.QUEUED)
    print(f"sent {len(report.sent)}, waiting {len(waiting)}, failed {len(report.failed)}")
    for item in waiting:
        print(f"waiting  {item.sop_instance_uid} -> {item.archive}: {item.last_error or 'not yet tried'}")
    for uid in report.failed:
        failed = [i for i in outbox.items(args.archive, ItemStatus.FAILED) if i.sop_instance_uid == uid]
        for i in failed:
            print(f"failed   {uid} -> {i.archive}: {i.last_error}")
    return 1 if report.failed else 0
