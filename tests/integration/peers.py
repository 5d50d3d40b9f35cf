"""Misbehaving peers for the failure tests: a WADO-RS proxy that stalls mid-series, a DIMSE C-GET SCP that
stalls mid-series, and an HTTPS server whose certificate does not fit."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests


class StallingProxy:
    """Forwards HTTP GETs to ``target``, but stalls mid-series: a series-level retrieval hangs after
    ``series_bytes`` bytes, and instance requests after the first ``instances`` hang, until closed."""

    def __init__(self, target: str, instances: int, series_bytes: int) -> None:
        self.target = target.rstrip("/")
        self.instance_requests = 0
        self.release = threading.Event()
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                is_instance = "/instances/" in self.path
                if is_instance:
                    with lock:
                        proxy.instance_requests += 1
                        stall = proxy.instance_requests > instances
                    if stall:
                        proxy.release.wait(10)
                        return
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "authorization")}
                with requests.get(proxy.target + self.path, headers=headers, timeout=10, stream=True) as r:
                    self.send_response(r.status_code)
                    self.send_header("Content-Type", r.headers.get("Content-Type", "application/octet-stream"))
                    self.end_headers()  # no length: the body ends when the connection closes (HTTP/1.0)
                    limit = series_bytes if self.path.rstrip("/").split("/")[-2:-1] == ["series"] else None
                    self._relay(r, limit)

            def _relay(self, r, limit: int | None) -> None:
                sent = 0
                try:
                    for chunk in r.iter_content(1 << 16):
                        if limit is not None and sent + len(chunk) > limit:
                            self.wfile.write(chunk[: limit - sent])
                            self.wfile.flush()
                            proxy.release.wait(10)
                            return
                        self.wfile.write(chunk)
                        sent += len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up: that is the point

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def __enter__(self) -> StallingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def stalling_get_scp(datasets: list, answer: int, stall_s: float = 2.0):
    """A pynetdicom Q/R SCP (C-FIND at image level, C-GET) that stops after ``answer`` instances."""
    from pydicom.dataset import Dataset
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import (
        CTImageStorage,
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelGet,
    )

    def on_find(event):
        for ds in datasets:
            answer_ds = Dataset()
            answer_ds.QueryRetrieveLevel = "IMAGE"
            answer_ds.SOPInstanceUID = ds.SOPInstanceUID
            answer_ds.InstanceNumber = ds.get("InstanceNumber", "")
            yield 0xFF00, answer_ds

    def on_get(event):
        yield len(datasets)
        for n, ds in enumerate(datasets):
            if n == answer:
                threading.Event().wait(stall_s)
                return
            yield 0xFF00, ds

    ae = AE("STALLING")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_supported_context(CTImageStorage, scu_role=True, scp_role=True)
    handlers = [(evt.EVT_C_FIND, on_find), (evt.EVT_C_GET, on_get)]
    return ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)


def self_signed_cert(folder: Path, common_name: str) -> Path:
    """A PEM with a self-signed certificate for ``common_name`` and its key (openssl CLI)."""
    exe = shutil.which("openssl")
    if exe is None:
        pytest.skip("openssl is not installed")
    pem = folder / f"{common_name}.pem"
    san = f"IP:{common_name}" if common_name.replace(".", "").isdigit() else f"DNS:{common_name}"
    subprocess.run([exe, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    f"/CN={common_name}", "-addext", f"subjectAltName={san}",
                    "-keyout", str(pem), "-out", str(pem)], check=True, capture_output=True, timeout=60)
    return pem


class TlsServer:
    """An HTTPS server on 127.0.0.1 presenting ``pem``; every request gets an empty JSON list."""

    def __init__(self, pem: Path) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "application/dicom+json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"[]")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(pem))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def __enter__(self) -> TlsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
