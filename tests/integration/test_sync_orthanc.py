"""The outbox against a real Orthanc: items wait while the archive is unreachable and go when it returns."""

from __future__ import annotations

import time

import requests
from pydicom import dcmread

from tests.integration.orthanc import free_port
from tests.unit.test_sync_outbox import make_dicom
from workstation.archive.credentials import BasicAuth
from workstation.archive.dicomweb import DicomWebArchive
from workstation.sync.outbox import ItemStatus, Outbox
from workstation.sync.worker import RetryPolicy, SyncWorker


class Switch:
    """An archive client whose address can be changed: first a closed port, then the real Orthanc."""

    name = "Orthanc"

    def __init__(self, client) -> None:
        self.client = client
        self.calls = 0

    def store(self, paths, progress=None):
        self.calls += 1
        return self.client.store(paths, progress)


def test_outbox_waits_for_orthanc_then_sends_each_instance_once(orthanc, tmp_path):
    server = orthanc.server
    closed = f"http://127.0.0.1:{free_port()}/dicom-web"
    down = DicomWebArchive("Orthanc", closed, cache_dir=tmp_path / "c1", retries=1, backoff=0.01)
    real = DicomWebArchive("Orthanc", server.dicomweb_url, auth=BasicAuth(*server.auth), cache_dir=tmp_path / "c2")
    switch = Switch(down)
    paths = [make_dicom(tmp_path / "src", n) for n in range(3)]
    uids = [str(dcmread(p).SOPInstanceUID) for p in paths]
    with Outbox(tmp_path / "outbox") as outbox:
        for p in paths:
            outbox.enqueue(p, "Orthanc")
        worker = SyncWorker(outbox, lambda name: switch, RetryPolicy(base_delay_s=0.05, max_delay_s=0.2))
        report = worker.drain(timeout_s=1.0)
        assert report.sent == ()
        assert all(i.status is ItemStatus.QUEUED and i.attempts >= 1 for i in outbox.items())
        assert "cannot reach" in outbox.items()[0].last_error
        switch.client = real  # the archive returns
        report = worker.drain(timeout_s=30)
        assert sorted(report.sent) == sorted(uids)
        assert outbox.counts()["sent"] == 3
        calls = switch.calls
        for p in paths:  # re-enqueue: no-op, nothing sent again
            outbox.enqueue(p, "Orthanc")
        assert worker.drain(timeout_s=1).sent == () and switch.calls == calls
    for uid in uids:  # in Orthanc exactly once
        r = requests.post(f"{server.url}/tools/lookup", data=uid, auth=server.auth, timeout=10)
        assert r.ok and len(r.json()) == 1, r.text


def test_outbox_survives_orthanc_restart(orthanc, tmp_path):
    """Orthanc stopped (the real one, on its own port), items wait; started again, they go."""
    from tests.integration.orthanc import OrthancServer

    server = OrthancServer(workdir=tmp_path / "orthanc2")
    server.start()
    try:
        client = DicomWebArchive("O2", server.dicomweb_url, auth=BasicAuth(*server.auth), cache_dir=tmp_path / "c",
                                 retries=1, backoff=0.01)
        paths = [make_dicom(tmp_path / "src", n) for n in range(2)]
        with Outbox(tmp_path / "outbox") as outbox:
            for p in paths:
                outbox.enqueue(p, "O2")
            server.stop()
            worker = SyncWorker(outbox, lambda name: client, RetryPolicy(base_delay_s=0.05, max_delay_s=0.2))
            assert worker.drain(timeout_s=1.0).sent == ()
            assert outbox.counts()["queued"] == 2
            server.start()
            time.sleep(0.2)
            assert len(worker.drain(timeout_s=30).sent) == 2
            assert outbox.counts() == {"queued": 0, "sending": 0, "sent": 2, "failed": 0}
        assert len(server.get("/instances")) == 2
    finally:
        server.stop()
