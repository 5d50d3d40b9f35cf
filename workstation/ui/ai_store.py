"""Store AI results to the archive from the window: "Store AI results to archive" (AI menu, findings panel).

For every model with results on screen: its label map as the radiologist left it (DICOM SEG; segments a
person changed are SEMIAUTOMATIC) and its findings with their decisions, who and when (SR TID 1500, the
model as observing device).  Files are written all or nothing by :func:`workstation.ai.cli.write_results`
into ``<home>/ai-results``, then queued together in the application's outbox for the archive the series
came from; the sync worker sends them (see the Sync panel).  A second store after more decisions is the
next revision: the new SR lists the previous one in PredecessorDocumentsSequence and joins its series; the
SEG is written again only when the label map changed since.  If anything fails nothing is left behind:
files already written are removed and files already queued are marked failed, so none is sent alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workstation.archive.switch import archive_name_of
from workstation.model.finding import Finding
from workstation.model.labelmap import LabelMap


@dataclass(frozen=True)
class StoredRevision:
    """What the last store of one model's results wrote (the next store of the same run builds on it)."""

    result: object  # the AiResult stored: a new run of the model starts a new revision chain
    labelmap: LabelMap | None  # the label map as stored (the same object: no new SEG until it changes)
    seg_path: Path | None
    sr_path: Path | None
    archive: str
    revision: int


@dataclass(frozen=True)
class _Job:
    plugin_id: str
    result: object  # AiResult
    series_uid: str
    labelmap: LabelMap | None
    findings: tuple[Finding, ...]
    previous: StoredRevision | None


class StoreError(Exception):
    """One line for the user: why nothing was stored."""


class AiResultsStore:
    """Writes and queues the shown AI results; remembers each model's last stored revision."""

    def __init__(self, controller) -> None:
        self.controller = controller
        self.window = controller.window
        self.results_dir: Path | None = None  # set by AiController.configure (``<home>/ai-results``)
        self.stored: dict[str, StoredRevision] = {}  # plugin id -> last revision stored

    def jobs(self) -> list[_Job]:
        ctl = self.controller
        report = ctl.report_findings()
        jobs = []
        for pid, shown in ctl.results.items():
            series = shown.volume.info.series_instance_uid
            findings = tuple(f for f in report if f.provenance.model_id == shown.result.plugin_id)
            if not series or (shown.labelmap is None and not findings):
                continue
            previous = self.stored.get(pid)
            if previous is not None and previous.result is not shown.result:
                previous = None
            jobs.append(_Job(pid, shown.result, series, shown.labelmap, findings, previous))
        return jobs

    def store(self):
        """Write and queue every model's results in the background; returns the task handle (or None)."""
        jobs = self.jobs()
        if not jobs:
            self.window.show_status("AI: no results to store (run a model on a series first)")
            return None
        sync = getattr(self.window, "sync", None)
        if sync is None or self.results_dir is None:
            self.window._warn("AI results not stored", "No outbox is configured for this window; nothing was written.")
            return None
        archive, out_dir = self.window.archive, self.results_dir
        targets = {job.series_uid: archive_name_of(archive, job.series_uid) for job in jobs}

        def work(progress, cancel):
            return write_and_queue(jobs, targets, archive, out_dir, sync.folder)

        def done(stored: dict[str, StoredRevision]) -> None:
            self.stored.update(stored)
            sync.wake()
            where = ", ".join(sorted({s.archive for s in stored.values()}))
            n = sum((s.seg_path is not None) + (s.sr_path is not None) for s in stored.values())
            self.window.show_status(f"AI: stored {n} object(s) (SEG / SR); sending to {where} (see the Sync panel)")

        return self.window.runner.submit("store AI results", work, on_done=done,
                                         on_failed=lambda msg: self.window._warn("AI results not stored", msg))


def write_and_queue(jobs, targets: dict[str, str], archive, out_dir: Path,
                    outbox_folder: Path) -> dict[str, StoredRevision]:
    """Write every job's SEG / SR and queue them all for their archives, or leave nothing behind."""
    import pydicom

    from workstation.ai.cli import AiCommandError, write_results
    from workstation.ai_archive import enqueue_together
    from workstation.dicom.seg import read_source_headers
    from workstation.sync.outbox import Outbox

    written: list[Path] = []
    stored: dict[str, StoredRevision] = {}
    try:
        for job in jobs:
            headers = read_source_headers(archive.fetch_series(job.series_uid))
            prev = job.previous
            same_labels = prev is not None and prev.labelmap is job.labelmap and prev.seg_path is not None
            previous_seg = None if prev is None or prev.seg_path is None else pydicom.dcmread(prev.seg_path,
                                                                                            stop_before_pixels=True)
            previous_sr = None if prev is None or prev.sr_path is None else pydicom.dcmread(prev.sr_path,
                                                                                          stop_before_pixels=True)
            try:
                paths = write_results(job.result, None, out_dir, headers=headers,
                                      labelmap=None if same_labels else job.labelmap, findings=job.findings,
                                      previous_seg=previous_seg, previous_sr=previous_sr)
            except AiCommandError as exc:
                raise StoreError(f"{job.plugin_id}: {exc.reason}") from None
            written += paths
            seg = next((p for p in paths if p.name.endswith(".seg.dcm")), prev.seg_path if same_labels else None)
            sr = next((p for p in paths if p.name.endswith(".sr.dcm")), None)
            stored[job.plugin_id] = StoredRevision(job.result, job.labelmap, seg, sr, targets[job.series_uid],
                                                   (prev.revision if prev is not None else 0) + 1)
        with Outbox(outbox_folder) as outbox:
            queued: list[tuple[str, str]] = []  # (SOP instance UID, archive)
            try:
                for name in sorted(set(targets.values())):
                    mine = [p for p in written if _target_of(p, stored, name)]
                    queued += [(uid, name) for uid in enqueue_together(outbox, mine, name)]
            except BaseException as exc:  # another archive's batch failed: those queued before are not sent
                for uid, name in queued:
                    item = outbox.get(uid, name)
                    if item is not None:
                        outbox.mark_failed(item, f"not sent: another AI result of the same store failed ({exc})")
                raise
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return stored


def _target_of(path: Path, stored: dict[str, StoredRevision], archive: str) -> bool:
    return any(s.archive == archive and path in (s.seg_path, s.sr_path) for s in stored.values())
