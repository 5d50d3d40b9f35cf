"""Opening a cached series asks the archive whether it changed; an archive host that does not answer holds
that question for a short wait only, and is not asked again for a while (reading from the cache stays
immediate).  A silent server here: it accepts connections and never says a word."""

from __future__ import annotations

import socket
import threading

import pytest

from workstation.archive import _freshness
from workstation.archive.dicomweb import DicomWebArchive
from workstation.archive.dimse import DimseArchive


class _SilentServer:
    """Accepts TCP connections, counts them, reads nothing, answers nothing."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent(monkeypatch):
    monkeypatch.setattr(_freshness, "CHECK_TIMEOUT_S", 0.3)
    import workstation.archive.dicomweb as dicomweb

    monkeypatch.setattr(dicomweb, "CHECK_TIMEOUT_S", 0.3)
    server = _SilentServer()
    yield server
    server.close()


def _checked_twice(check, server) -> list[int]:
    """Connections the server saw after a first and a second check (both None: it cannot tell)."""
    seen = []
    for _ in range(2):
        assert check() is None
        seen.append(len(server.accepted))
    return seen


def test_a_silent_dicomweb_archive_is_asked_once_then_left_alone_for_a_while(silent, tmp_path):
    archive = DicomWebArchive("Silent", f"http://127.0.0.1:{silent.port}/dicom-web", cache_dir=tmp_path, timeout=30)
    assert _checked_twice(lambda: archive.instance_count("1.2", "1.2.3"), silent) == [1, 1]
    archive._freshness.answered()  # (a minute later, or after an answer) it is asked again
    assert archive.instance_count("1.2", "1.2.3") is None and len(silent.accepted) == 2


def test_a_silent_dimse_archive_is_asked_once_then_left_alone_for_a_while(silent, tmp_path):
    from workstation.archive._dimse_retrieve import instance_count

    archive = DimseArchive("Silent", "127.0.0.1", silent.port, "SILENT", "WORKSTATION", cache_dir=tmp_path,
                           timeout=30)
    seen = _checked_twice(lambda: instance_count(archive, "1.2", "1.2.3"), silent)
    assert seen[0] >= 1 and seen[1] == seen[0]  # (the failed association is probed with one more connect)


def test_an_archive_that_answers_is_asked_every_time(tmp_path):
    """An error status is an answer: the next open asks again (a refused connection is not: left alone)."""
    import http.server

    class Busy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_error(503)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        archive = DicomWebArchive("Busy", f"http://127.0.0.1:{server.server_port}/dicom-web", cache_dir=tmp_path)
        assert archive.instance_count("1.2", "1.2.3") is None and not archive._freshness.skip()
    finally:
        server.shutdown()
        server.server_close()
    refused = DicomWebArchive("Down", f"http://127.0.0.1:{server.server_port}/dicom-web", cache_dir=tmp_path)
    assert refused.instance_count("1.2", "1.2.3") is None and refused._freshness.skip()
