"""dcmtk processes as independent DIMSE peers: ``storescp`` (receives) and ``dcmqrscp`` (query/retrieve)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

QR_AE = "DCMQR"
STORE_AE = "STORESCP"


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:port (raises if the process dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{proc.args[0]} is not listening on port {port} after {timeout:.0f} s")


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class Dcmqrscp:
    """A dcmqrscp with one storage area ``DCMQR`` indexed by ``dcmqridx``; ``peers`` are C-MOVE destinations."""

    workdir: Path
    port: int
    peers: dict[str, int]
    process: subprocess.Popen | None = None

    @property
    def db(self) -> Path:
        return self.workdir / "db"

    def write_config(self) -> Path:
        hosts = "\n".join(f"{ae.lower()} = ({ae}, 127.0.0.1, {port})" for ae, port in self.peers.items())
        text = (
            f"NetworkTCPPort = {self.port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n\n"
            f"HostTable BEGIN\n{hosts}\nHostTable END\n\nVendorTable BEGIN\nVendorTable END\n\n"
            f"AETable BEGIN\n{QR_AE} {self.db} RW (100, 1024mb) ANY\nAETable END\n"
        )
        cfg = self.workdir / "dcmqrscp.cfg"
        cfg.write_text(text)
        return cfg

    def load(self, files: list[Path]) -> None:
        """Copy files into the storage area and index them."""
        self.db.mkdir(parents=True, exist_ok=True)
        copies = []
        for n, f in enumerate(files):
            target = self.db / f"in{n:05d}.dcm"
            shutil.copyfile(f, target)
            copies.append(str(target))
        subprocess.run(["dcmqridx", str(self.db), *copies], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        cfg = self.write_config()
        log = open(self.workdir / "dcmqrscp.log", "wb")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(["dcmqrscp", "-c", str(cfg), str(self.port)],
                                        stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        wait_listening(self.port, self.process)

    def stop(self) -> None:
        stop(self.process)
        self.process = None


def start_storescp(folder: Path, port: int) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(["storescp", "-aet", STORE_AE, "-od", str(folder), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, proc)
    return proc
