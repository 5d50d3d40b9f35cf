"""Parallel background retrieval from the real Orthanc: bounded concurrency, progress, cancel, priority."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.integration.conftest import WORKSTATION_AE
from workstation.archive.client import Cancelled, StudyQuery
from workstation.archive.credentials import BasicAuth
from workstation.archive.dicomweb import DicomWebArchive
from workstation.archive.dimse import DimseArchive
from workstation.archive.prefetch import CANCELLED, DONE, RUNNING, Prefetcher


def _web(orthanc, cache) -> DicomWebArchive:
    return DicomWebArchive("Orthanc", orthanc.dicomweb_url, auth=BasicAuth(*orthanc.server.auth), cache_dir=cache,
                           timeout=20)


def _all_series(client):
    return [s for st in client.find_studies(StudyQuery(limit=0)) for s in client.find_series(st.study_instance_uid)
]


@pytest.mark.parametrize("kind", ["dicomweb", "dimse-get"])
def test_several_series_download_in_parallel_with_progress(orthanc, tmp_path, kind):
    client = _web(orthanc, tmp_path) if kind == "dicomweb" else DimseArchive(
        "Orthanc", "127.0.0.1", orthanc.server.dicom_port, "ORTHANC", WORKSTATION_AE, cache_dir=tmp_path, timeout=20)
    series = _all_series(client)
    assert len(series) >= 3
    running_at_once, lock, seen = set(), threading.Lock(), []
    peak = [0]

    def on_progress(p):
        with lock:
            seen.append(p)
            running_at_once.add(p.series_uid) if p.state == RUNNING else running_at_once.discard(p.series_uid)
            peak[0] = max(peak[0], len(running_at_once))

    pre = Prefetcher(client, concurrency=3, on_progress=on_progress)
    futures = pre.request_all(series)
    results = [f.result(timeout=120) for f in futures]
    assert pre.wait(10)
    pre.close()
    assert all(Path(p).is_file() for paths in results for p in paths)
    assert 2 <= peak[0] <= 3
    final = pre.progress()
    assert {p.state for p in final.values()} == {DONE}
    lidc = max(final.values(), key=lambda p: p.total)
    assert lidc.total == lidc.done == 133 and lidc.megabytes > 10 and lidc.mb_per_s > 0


def test_cancel_and_priority(orthanc, tmp_path):
    client = _web(orthanc, tmp_path)
    series = sorted(_all_series(client), key=lambda s: s.number_of_instances)
    pre = Prefetcher(client, concurrency=1)
    started: list[str] = []
    first_running = threading.Event()

    def on_progress(p):
        if p.state == RUNNING and p.series_uid not in started:
            started.append(p.series_uid)
            first_running.set()

    pre.on_progress = on_progress
    gate = threading.Event()
    real_fetch = client.fetch_series

    def slow_first(uid, progress=None, cancel=None, **kw):
        gate.wait(10)
        return real_fetch(uid, progress, cancel, **kw)

    client.fetch_series = slow_first
    blocker = pre.request(series[0])
    assert first_running.wait(10)
    queued = [pre.request(s) for s in series[1:-1]]
    urgent = pre.request(series[-1], first=True)  # opened by the reader: jumps the queue
    pre.cancel(series[1].series_instance_uid)
    gate.set()
    blocker.result(60)
    urgent.result(60)
    assert started[:2] == [series[0].series_instance_uid, series[-1].series_instance_uid]
    with pytest.raises(Cancelled):
        queued[0].result(60)
    assert pre.progress()[series[1].series_instance_uid].state == CANCELLED
    again = pre.request(series[1])  # a cancelled series can be asked for again
    assert again.result(60)
    pre.close()
