"""Store an AI run's DICOM results (SEG, SR) to an archive: ``workstation ai run ... --archive NAME``.

This lives outside :mod:`workstation.ai` (which never imports archives); :mod:`workstation.cli` wires it
in.  Results go the way the application stores annotations: into the durable outbox first (each file
copied in whole, then renamed), then one pass of the sync worker sends them.  An archive that is down
leaves them queued for ``workstation sync run``; they are never half in the outbox: if one of a run's
files cannot be queued, the others of that run are marked failed so they are not sent alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

OpenArchive = Callable[[object, str], object]  # (settings, archive name) -> ArchiveClient


class StoreFailed(Exception):
    """The results are written to --out but not stored; ``reason`` says where they are and what to do."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def results_store(settings, name: str, open_archive: OpenArchive) -> Callable[[Sequence[Path]], str]:
    """A function storing result files to archive ``name``; opening it now makes a bad name fail at once."""
    client = open_archive(settings, name)

    def store(paths: Sequence[Path]) -> str:
        # imported here: the command line loads the outbox and the sync worker only for --archive
        from workstation.sync.cli import outbox_dir
        from workstation.sync.outbox import Outbox
        from workstation.sync.worker import SyncWorker

        with Outbox(outbox_dir(settings)) as outbox:
            uids = enqueue_together(outbox, paths, name)
            SyncWorker(outbox, lambda _name: client).run_once(name)
            items = [outbox.get(uid, name) for uid in uids]
        sent = [i for i in items if i is not None and i.status.value == "sent"]
        if len(sent) == len(uids):
            return f"stored {len(sent)} object(s) to {name}"
        errors = "; ".join(sorted({i.last_error for i in items if i is not None and i.last_error})) or "not confirmed"
        raise StoreFailed(f"{name}: {len(uids) - len(sent)} of {len(uids)} result object(s) not stored yet ({errors}); "
                          f"they are in the outbox: `workstation sync run --archive {name}` sends them")

    return store


def enqueue_together(outbox, paths: Sequence[Path], archive: str) -> list[str]:
    """Queue every file for ``archive``, or none of them: on a failure the ones queued are marked failed."""
    queued = []
    try:
        for path in paths:
            queued.append(outbox.enqueue(path, archive))
    except BaseException as exc:
        for item in queued:
            outbox.mark_failed(item, f"not sent: another result of the same run could not be queued ({exc})")
        raise
    return [item.sop_instance_uid for item in queued]
