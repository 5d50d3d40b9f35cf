"""A real Orthanc server for the integration tests: free loopback ports, a temporary storage folder,
HTTP basic authentication, the DICOMweb and GDCM plugins, and the workstation plus dcmtk peers as known
DICOM modalities.

Orthanc (Debian 1.10) facts this harness relies on:

* every plugin ``.so`` is listed explicitly in ``"Plugins"`` (a folder entry loads nothing useful here);
* after SIGTERM it needs ~2.3 s to exit: :meth:`OrthancServer.stop` waits for the process so its ports
  can be reused;
* with ``DicomAlwaysAllowEcho``/``DicomAlwaysAllowStore`` off, an association from an AE title missing in
  ``DicomModalities`` is rejected outright, and ``DicomCheckCalledAet`` rejects a wrong called AE title.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

ORTHANC_BINARY = Path("/usr/sbin/Orthanc")
PLUGIN_DIR = Path("/usr/share/orthanc/plugins")
PLUGINS = ("libOrthancDicomWeb.so", "libOrthancGdcm.so")

USER = "radiologist"
PASSWORD = "s3cret-for-tests"
AE_TITLE = "ORTHANC"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class OrthancServer:
    """One Orthanc process; ``modalities`` maps AE title -> port on 127.0.0.1 (C-MOVE destinations)."""

    workdir: Path
    modalities: dict[str, int] = field(default_factory=dict)
    http_port: int = 0
    dicom_port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def auth(self) -> tuple[str, str]:
        return (USER, PASSWORD)

    def config(self) -> dict:
        """The JSON configuration Orthanc is started with."""
        return {
            "Name": "workstation-tests",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "storage"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": AE_TITLE,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowStore": False,
            "DicomModalities": {ae: [ae, "127.0.0.1", port] for ae, port in self.modalities.items()},
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "Plugins": [str(PLUGIN_DIR / p) for p in PLUGINS if (PLUGIN_DIR / p).exists()],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "StudiesMetadata": "Full",
                         "SeriesMetadata": "Full"},
            "Gdcm": {"Enable": True},
            "HttpCompressionEnabled": False,
            "StorageCompression": False,
            "ConcurrentJobs": 2,
        }

    def start(self, timeout: float = 30.0) -> None:
        """Start Orthanc and wait until its REST API answers (raises RuntimeError with the log tail)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.http_port = self.http_port or free_port()
        self.dicom_port = self.dicom_port or free_port()
        cfg = self.workdir / "orthanc.json"
        cfg.write_text(json.dumps(self.config(), indent=2))
        log = open(self.workdir / "orthanc.log", "wb")  # noqa: SIM115 - closed with the process
        # DCMTK (Orthanc's DIMSE layer) reads TCP_NODELAY from the environment: without it Nagle's algorithm
        # holds back the small last PDU of each answer until the peer's delayed ACK (~40 ms per request)
        env = {**os.environ, "TCP_NODELAY": "1"}
        self.process = subprocess.Popen([str(ORTHANC_BINARY), str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                                        cwd=self.workdir, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with code {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/system", auth=self.auth, timeout=1).ok:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then wait for the exit (Orthanc takes ~2.3 s), SIGKILL as a last resort."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def log_tail(self, n: int = 40) -> str:
        path = self.workdir / "orthanc.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])

    def upload(self, files: Iterable[Path], workers: int = 4) -> list[dict]:
        """POST each file to /instances; returns Orthanc's answers (raises on any rejection)."""
        session = requests.Session()
        session.auth = self.auth

        def post(path: Path) -> dict:
            r = session.post(f"{self.url}/instances", data=path.read_bytes(),
                             headers={"Content-Type": "application/dicom"}, timeout=30)
            r.raise_for_status()
            return r.json()

        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(post, sorted(files)))

    def get(self, path: str) -> object:
        r = requests.get(f"{self.url}{path}", auth=self.auth, timeout=10)
        r.raise_for_status()
        return r.json()


def orthanc_available() -> str | None:
    """None when Orthanc and its DICOMweb plugin are installed, else the reason it is not usable."""
    if not ORTHANC_BINARY.exists():
        return f"{ORTHANC_BINARY} is missing (Debian packages orthanc, orthanc-dicomweb, orthanc-gdcm)"
    if not (PLUGIN_DIR / "libOrthancDicomWeb.so").exists():
        return f"{PLUGIN_DIR / 'libOrthancDicomWeb.so'} is missing (Debian package orthanc-dicomweb)"
    return None


def dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def env_requires_shared_data() -> bool:
    return os.environ.get("WORKSTATION_REQUIRE_SHARED_DATA") == "1"
