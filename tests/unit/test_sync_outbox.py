"""The outbox and the sync worker: idempotent by SOP Instance UID, retry with backoff, survives kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from workstation.archive.client import ArchiveError, ArchiveUnavailable, ImportReport
from workstation.archive.local import LocalArchive
from workstation.sync.outbox import ItemStatus, Outbox, OutboxError
from workstation.sync.worker import RetryPolicy, SyncWorker

ROOT = Path(__file__).resolve().parents[2]


def make_dicom(folder: Path, n: int = 0) -> Path:
    """A tiny, valid CT instance (8x8) with fresh UIDs."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "SYNC", "Sync^Test", "CT"
    ds.InstanceNumber = n + 1
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 15, 0, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(128)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = folder / f"{n:04d}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeArchive:
    """Records what it stored; ``down`` makes it unreachable, ``refuse`` makes it refuse."""

    name = "Fake"

    def __init__(self) -> None:
        self.stored: list[str] = []
        self.down = False
        self.refuse = False

    def store(self, paths, progress=None) -> ImportReport:
        if self.down:
            raise ArchiveUnavailable("cannot reach fake: connection refused")
        if self.refuse:
            raise ArchiveError("fake refused it")
        from pydicom import dcmread

        uids = tuple(str(dcmread(p).SOPInstanceUID) for p in paths)
        self.stored += uids
        return ImportReport(imported=uids)


def test_enqueue_is_idempotent_by_uid(tmp_path):
    src = make_dicom(tmp_path / "src")
    with Outbox(tmp_path / "outbox") as outbox:
        a = outbox.enqueue(src, "PACS")
        b = outbox.enqueue(src, "PACS")
        other = outbox.enqueue(src, "Other")
        assert a == b and a.status is ItemStatus.QUEUED and a.path.is_file() and a.path != src
        assert other.archive == "Other"
        assert outbox.counts() == {"queued": 2, "sending": 0, "sent": 0, "failed": 0}


def test_not_dicom_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.dcm"
    bad.write_text("hello")
    with Outbox(tmp_path / "outbox") as outbox, pytest.raises(OutboxError, match="not a readable DICOM"):
        outbox.enqueue(bad, "PACS")
    assert Outbox(tmp_path / "outbox").items() == []


def test_sent_item_is_never_sent_again(tmp_path):
    src = make_dicom(tmp_path / "src")
    archive = FakeArchive()
    with Outbox(tmp_path / "outbox") as outbox:
        outbox.enqueue(src, "PACS")
        worker = SyncWorker(outbox, lambda name: archive)
        assert len(worker.run_once().sent) == 1
        outbox.enqueue(src, "PACS")  # re-enqueue after it was sent: no-op
        assert worker.run_once().sent == ()
        (item,) = outbox.items()
        assert item.status is ItemStatus.SENT and item.sent_at is not None
    assert len(archive.stored) == 1


def test_items_wait_while_archive_is_down_with_bounded_backoff(tmp_path):
    clock, archive = Clock(), FakeArchive()
    paths = [make_dicom(tmp_path / "src", n) for n in range(3)]
    policy = RetryPolicy(base_delay_s=2, factor=2, max_delay_s=10, max_attempts=2)
    with Outbox(tmp_path / "outbox", clock=clock) as outbox:
        for p in paths:
            outbox.enqueue(p, "PACS")
        worker = SyncWorker(outbox, lambda name: archive, policy, clock=clock)
        archive.down = True
        delays = []
        for _ in range(6):  # far more tries than max_attempts: unreachable never fails an item
            report = worker.run_once()
            assert report.sent == () and report.failed == ()
            due = outbox.next_due_at()
            delays.append(due - clock.now)
            clock.now = due
        assert delays == [2, 4, 8, 10, 10, 10]
        assert all(i.status is ItemStatus.QUEUED and "connection refused" in i.last_error for i in outbox.items())
        archive.down = False
        clock.now += 100
        assert len(worker.run_once().sent) == 3
    assert sorted(archive.stored) == sorted(set(archive.stored)) and len(archive.stored) == 3


def test_refusals_fail_after_max_attempts_and_can_be_retried(tmp_path):
    clock, archive = Clock(), FakeArchive()
    archive.refuse = True
    with Outbox(tmp_path / "outbox", clock=clock) as outbox:
        outbox.enqueue(make_dicom(tmp_path / "src"), "PACS")
        worker = SyncWorker(outbox, lambda name: archive, RetryPolicy(base_delay_s=1, max_attempts=3), clock=clock)
        for _ in range(3):
            worker.run_once()
            clock.now += 10
        (item,) = outbox.items()
        assert item.status is ItemStatus.FAILED and item.attempts == 3 and "refused" in item.last_error
        archive.refuse = False
        assert outbox.requeue_failed() == 1
        assert len(worker.run_once().sent) == 1


def test_backoff_is_bounded():
    policy = RetryPolicy(base_delay_s=1, factor=2, max_delay_s=60)
    assert [policy.delay(n) for n in (1, 2, 3, 7, 8, 1000)] == [1, 2, 4, 60, 60, 60]


def test_drain_with_local_archive(tmp_path):
    paths = [make_dicom(tmp_path / "src", n) for n in range(4)]
    archive = LocalArchive(tmp_path / "archive")
    with Outbox(tmp_path / "outbox") as outbox:
        for p in paths:
            outbox.enqueue(p, "Local")
        report = SyncWorker(outbox, lambda name: archive).drain(timeout_s=10)
        assert len(report.sent) == 4 and outbox.counts()["sent"] == 4
        # a second outbox item for an instance the archive already has is a duplicate there: still 'sent'
        outbox.enqueue(paths[0], "Local-again")
        assert len(SyncWorker(outbox, lambda name: archive).run_once().sent) == 1


_CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from tests.unit.test_sync_outbox import make_dicom
    from workstation.sync.outbox import Outbox
    from workstation.sync.worker import SyncWorker
    from workstation.archive.local import LocalArchive

    tmp = Path({tmp!r})
    outbox = Outbox(tmp / "outbox")
    archive = LocalArchive(tmp / "archive")
    class Slow:
        name = "Local"
        def store(self, paths, progress=None):
            time.sleep(0.05)
            return archive.store(paths, progress)
    worker = SyncWorker(outbox, lambda name: Slow())
    for n in range(1000):
        outbox.enqueue(make_dicom(tmp / "src", n), "Local")
        if n >= 5:
            worker.run_once()
        print(n, flush=True)
""")


def test_outbox_survives_kill_9_mid_way(tmp_path):
    code = _CHILD.format(root=str(ROOT), tmp=str(tmp_path))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        for _ in range(15):  # let it enqueue and send a few
            assert child.stdout.readline(), "the child died early"
        time.sleep(0.03)  # likely inside a store
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        child.stdout.close()
    made = sorted((tmp_path / "src").glob("*.dcm"))
    with Outbox(tmp_path / "outbox") as outbox:
        assert outbox._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        items = outbox.items()
        assert len(items) >= 15 and all(i.path.is_file() for i in items)
        for i in items:  # each outbox copy is complete
            assert i.path.stat().st_size > 200
        archive = LocalArchive(tmp_path / "archive")
        report = SyncWorker(outbox, lambda name: archive).drain(timeout_s=30)
        assert outbox.counts()["queued"] == 0 and outbox.counts()["sending"] == 0
        assert outbox.counts()["sent"] == len(items)
        assert report.failed == ()
    # every enqueued instance is in the archive exactly once
    stored = sorted(p for p in (tmp_path / "archive" / "files").rglob("*") if p.is_file())
    assert len(stored) == len(items) <= len(made)
