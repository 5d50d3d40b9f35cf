"""A durable outbox: DICOM objects waiting to be stored to an archive, kept in SQLite (WAL) and a folder.

Every item is one DICOM file copied into the outbox folder (written to a temporary name, flushed to disk,
then renamed, so a crash never leaves a half file under an item's name) and one row keyed by
(SOP Instance UID, archive name).  Enqueueing the same instance for the same archive twice is a no-op, so
an item that was sent is never sent again.  After a crash (kill -9) :meth:`Outbox.recover` puts the items
that were being sent back in the queue; the archive deduplicates by SOP Instance UID.
"""

from __future__ import annotations

import enum
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ItemStatus", "Outbox", "OutboxError", "OutboxItem"]

DB_NAME = "outbox.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    sop_instance_uid TEXT NOT NULL,
    archive TEXT NOT NULL,
    path TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    sent_at REAL,
    PRIMARY KEY (sop_instance_uid, archive)
);
CREATE INDEX IF NOT EXISTS items_due ON items (status, archive, next_attempt_at);
"""


class OutboxError(Exception):
    """A file that cannot enter the outbox (not DICOM, no SOP Instance UID); the message is for the user."""


class ItemStatus(enum.Enum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class OutboxItem:
    sop_instance_uid: str
    archive: str
    path: Path
    status: ItemStatus
    attempts: int
    last_error: str
    created_at: float
    updated_at: float
    next_attempt_at: float
    sent_at: float | None

    def as_dict(self) -> dict:
        return {"sop_instance_uid": self.sop_instance_uid, "archive": self.archive, "path": str(self.path),
                "status": self.status.value, "attempts": self.attempts, "last_error": self.last_error,
                "created_at": self.created_at, "updated_at": self.updated_at,
                "next_attempt_at": self.next_attempt_at, "sent_at": self.sent_at}


def _item(row: sqlite3.Row) -> OutboxItem:
    return OutboxItem(row["sop_instance_uid"], row["archive"], Path(row["path"]), ItemStatus(row["status"]),
                      int(row["attempts"]), row["last_error"], row["created_at"], row["updated_at"],
                      row["next_attempt_at"], row["sent_at"])


def read_sop_instance_uid(path: Path) -> str:
    """The SOP Instance UID of a DICOM file (header only); OutboxError when there is none."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    except (InvalidDicomError, OSError, ValueError) as exc:
        raise OutboxError(f"{path}: not a readable DICOM file ({exc})") from None
    uid = str(ds.get("SOPInstanceUID", "") or "")
    if not uid:
        raise OutboxError(f"{path}: the file has no SOP Instance UID")
    return uid


class Outbox:
    """The outbox in ``folder`` (created if needed): ``outbox.sqlite`` plus ``items/<archive>/<uid>.dcm``."""

    def __init__(self, folder: Path | str, clock=time.time) -> None:
        self.folder = Path(folder)
        self.items_dir = self.folder / "items"
        self.items_dir.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._db = sqlite3.connect(self.folder / DB_NAME, timeout=30, isolation_level=None,
                                   check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- adding ----------------------------------------------------------------------------------------
    def enqueue(self, path: Path | str, archive: str) -> OutboxItem:
        """Keep a copy of the DICOM file and queue it for ``archive``; the same instance again is a no-op."""
        path = Path(path)
        uid = read_sop_instance_uid(path)
        existing = self.get(uid, archive)
        if existing is not None:
            return existing
        target = self._copy_in(path, uid, archive)
        now = self._clock()
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO items (sop_instance_uid, archive, path, status, created_at, updated_at,"
                       " next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (uid, archive, str(target), ItemStatus.QUEUED.value, now, now, now))
        item = self.get(uid, archive)
        assert item is not None
        return item

    def _copy_in(self, path: Path, uid: str, archive: str) -> Path:
        folder = self.items_dir / _safe(archive)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{uid}.dcm"
        if target.exists():
            return target
        tmp = folder / f".{uid}.{os.getpid()}.tmp"
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, target)
        _fsync_dir(folder)
        return target

    # -- reading ---------------------------------------------------------------------------------------
    def get(self, sop_instance_uid: str, archive: str) -> OutboxItem | None:
        row = self._db.execute("SELECT * FROM items WHERE sop_instance_uid = ? AND archive = ?",
                               (sop_instance_uid, archive)).fetchone()
        return None if row is None else _item(row)

    def items(self, archive: str | None = None, status: ItemStatus | None = None) -> list[OutboxItem]:
        sql, args = "SELECT * FROM items WHERE 1=1", []
        if archive is not None:
            sql, args = sql + " AND archive = ?", [*args, archive]
        if status is not None:
            sql, args = sql + " AND status = ?", [*args, status.value]
        return [_item(r) for r in self._db.execute(sql + " ORDER BY created_at, sop_instance_uid", args)]

    def counts(self) -> dict[str, int]:
        found = dict(self._db.execute("SELECT status, COUNT(*) FROM items GROUP BY status").fetchall())
        return {s.value: int(found.get(s.value, 0)) for s in ItemStatus}

    def archives(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT archive FROM items ORDER BY archive")]

    def next_due_at(self, archive: str | None = None) -> float | None:
        """When the earliest queued item (of ``archive``) may be tried; None when nothing is queued."""
        sql, args = "SELECT MIN(next_attempt_at) FROM items WHERE status = ?", [ItemStatus.QUEUED.value]
        if archive is not None:
            sql, args = sql + " AND archive = ?", [*args, archive]
        value = self._db.execute(sql, args).fetchone()[0]
        return None if value is None else float(value)

    # -- the worker's transitions ----------------------------------------------------------------------
    def recover(self) -> int:
        """Items left 'sending' by a crash go back to the queue; returns how many."""
        with self._tx() as db:
            cur = db.execute("UPDATE items SET status = ?, updated_at = ? WHERE status = ?",
                             (ItemStatus.QUEUED.value, self._clock(), ItemStatus.SENDING.value))
        return cur.rowcount

    def claim_next(self, archive: str | None = None) -> OutboxItem | None:
        """Mark the oldest due queued item 'sending' and return it (None when nothing is due)."""
        now = self._clock()
        sql = "SELECT * FROM items WHERE status = ? AND next_attempt_at <= ?"
        args: list = [ItemStatus.QUEUED.value, now]
        if archive is not None:
            sql, args = sql + " AND archive = ?", [*args, archive]
        with self._tx() as db:
            row = db.execute(sql + " ORDER BY next_attempt_at, created_at LIMIT 1", args).fetchone()
            if row is None:
                return None
            db.execute("UPDATE items SET status = ?, attempts = attempts + 1, updated_at = ? "
                       "WHERE sop_instance_uid = ? AND archive = ?",
                       (ItemStatus.SENDING.value, now, row["sop_instance_uid"], row["archive"]))
        return self.get(row["sop_instance_uid"], row["archive"])

    def mark_sent(self, item: OutboxItem) -> None:
        now = self._clock()
        self._set(item, "status = ?, last_error = '', sent_at = ?, updated_at = ?", ItemStatus.SENT.value, now, now)

    def mark_retry(self, item: OutboxItem, error: str, next_attempt_at: float) -> None:
        self._set(item, "status = ?, last_error = ?, next_attempt_at = ?, updated_at = ?",
                  ItemStatus.QUEUED.value, error, next_attempt_at, self._clock())

    def mark_failed(self, item: OutboxItem, error: str) -> None:
        self._set(item, "status = ?, last_error = ?, updated_at = ?", ItemStatus.FAILED.value, error, self._clock())

    def requeue_failed(self, archive: str | None = None) -> int:
        """Give failed items another round (attempts start again); returns how many."""
        sql, args = "UPDATE items SET status = ?, attempts = 0, next_attempt_at = ? WHERE status = ?", \
            [ItemStatus.QUEUED.value, self._clock(), ItemStatus.FAILED.value]
        if archive is not None:
            sql, args = sql + " AND archive = ?", [*args, archive]
        with self._tx() as db:
            return db.execute(sql, args).rowcount

    def retry_now(self, archive: str | None = None) -> int:
        """Make every waiting item due now and give failed ones another round; returns how many."""
        now = self._clock()
        sql = "UPDATE items SET status = ?, next_attempt_at = ?, " \
              "attempts = CASE WHEN status = ? THEN 0 ELSE attempts END WHERE status IN (?, ?)"
        args: list = [ItemStatus.QUEUED.value, now, ItemStatus.FAILED.value, ItemStatus.QUEUED.value,
                      ItemStatus.FAILED.value]
        if archive is not None:
            sql, args = sql + " AND archive = ?", [*args, archive]
        with self._tx() as db:
            return db.execute(sql, args).rowcount

    def _set(self, item: OutboxItem, assignments: str, *values) -> None:
        with self._tx() as db:
            db.execute(f"UPDATE items SET {assignments} WHERE sop_instance_uid = ? AND archive = ?",
                       (*values, item.sop_instance_uid, item.archive))


def _safe(name: str) -> str:
    """A folder name for an archive name (any character outside [A-Za-z0-9._-] becomes '_')."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "_"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not every platform opens folders
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
