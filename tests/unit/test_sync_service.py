"""The application's sync service: a worker thread drains the outbox to a real local archive; a refused
item shows its error; ``retry_now`` makes waiting and failed items due at once."""

from __future__ import annotations

import time

from tests.unit.test_sync_outbox import make_dicom
from workstation.archive.client import ArchiveError
from workstation.archive.local import LocalArchive
from workstation.sync.outbox import ItemStatus, Outbox
from workstation.sync.service import SyncService
from workstation.sync.worker import RetryPolicy


def _wait(predicate, timeout=20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_worker_thread_sends_to_the_archive_and_reports_errors(tmp_path):
    local = LocalArchive(tmp_path / "archive")

    def client_for(name):
        if name == "Local":
            return local
        raise ArchiveError(f"no archive named {name!r}")

    passes = []
    service = SyncService(tmp_path / "outbox", client_for, RetryPolicy(base_delay_s=60, max_attempts=2), idle_s=0.2)
    service.listeners.append(lambda: passes.append(1))
    service.start()
    try:
        good = service.enqueue(make_dicom(tmp_path / "src", 0), "Local")
        bad = service.enqueue(make_dicom(tmp_path / "src", 1), "Nowhere")
        assert _wait(lambda: {i.sop_instance_uid: i.status for i in service.items()}[good.sop_instance_uid]
                     is ItemStatus.SENT)
        assert local.find_studies() and passes

        def bad_item():
            return next(i for i in service.items() if i.sop_instance_uid == bad.sop_instance_uid)

        # (its attempt is counted as it is taken up, while SENDING: wait for the refusal to be recorded)
        assert _wait(lambda: bad_item().attempts == 1 and bad_item().status is not ItemStatus.SENDING)
        waiting = bad_item()
        assert waiting.status is ItemStatus.QUEUED and "no archive named 'Nowhere'" in waiting.last_error
        assert waiting.next_attempt_at > time.time() + 30  # backoff: not tried again by itself soon
        assert service.retry_now() == 1
        assert _wait(lambda: bad_item().status is ItemStatus.FAILED)  # second refusal = max_attempts
        assert service.retry_now() == 1  # failed -> queued again, attempts from zero
        assert _wait(lambda: service.counts()["failed"] == 0 and bad_item().attempts >= 1)
    finally:
        service.close()
    assert not service.running
    with Outbox(tmp_path / "outbox") as outbox:  # what `workstation sync status` reads
        assert outbox.get(good.sop_instance_uid, "Local").status is ItemStatus.SENT
