"""DIMSE over TLS against real peers: dcmtk's storescp built with OpenSSL (C-ECHO, C-STORE, every certificate
problem), and Orthanc with DICOM TLS on (C-FIND, C-GET).  Certificates are made here with the openssl CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.integration import dcmtk
from tests.integration.conftest import WORKSTATION_AE
from tests.integration.orthanc import OrthancServer, dicom_files, free_port, orthanc_available
from tests.shared_data import shared_case
from workstation.archive.client import ArchiveError, TLSFailure
from workstation.archive.dimse import DimseArchive, DimseTls


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


class Pki:
    """A test CA and certificates it signs (RSA 2048, two days), in ``folder``."""

    def __init__(self, folder: Path) -> None:
        if shutil.which("openssl") is None:
            pytest.skip("openssl is not installed")
        self.folder = folder
        self.ca_key, self.ca = folder / "ca.key", folder / "ca.pem"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Workstation test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-keyout", str(self.ca_key), "-out", str(self.ca))

    def issue(self, name: str, san: str) -> tuple[Path, Path]:
        """(certificate, key) for ``san`` (e.g. ``IP:127.0.0.1``), signed by the CA."""
        key, csr, cert = (self.folder / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
        ext = self.folder / f"{name}.ext"
        ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth,clientAuth\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr))
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(self.ca_key), "-CAcreateserial",
                 "-days", "2", "-extfile", str(ext), "-out", str(cert))
        return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def _storescp_tls(folder: Path, port: int, cert: Path, key: Path, ca: Path, require_client_cert: bool = True):
    if shutil.which("storescp") is None:
        pytest.skip("storescp is not installed (Debian package dcmtk)")
    if "--enable-tls" not in subprocess.run(["storescp", "--help"], capture_output=True, text=True).stdout:
        pytest.skip("this storescp is built without OpenSSL")
    folder.mkdir(parents=True, exist_ok=True)
    args = ["storescp", "-aet", dcmtk.STORE_AE, "-od", str(folder), "+tls", str(key), str(cert), "-pw",
            "+cf", str(ca), "-rc" if require_client_cert else "-ic", str(port)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dcmtk.wait_listening(port, proc)
    return proc


def _sources() -> list[Path]:
    return dicom_files(shared_case("ct-chest-lidc-0001") / "dicom")[60:63]


def test_echo_and_store_over_tls_with_a_client_certificate(pki, tmp_path):
    server_cert, server_key = pki.issue("storescp", "IP:127.0.0.1")
    client_cert, client_key = pki.issue("workstation", "DNS:workstation.example.org")
    port = free_port()
    proc = _storescp_tls(tmp_path / "received", port, server_cert, server_key, pki.ca)
    try:
        archive = DimseArchive("Secure", "127.0.0.1", port, dcmtk.STORE_AE, timeout=10,
                               tls=DimseTls(ca_bundle=str(pki.ca), cert=str(client_cert), key=str(client_key)))
        archive.echo()
        report = archive.store(_sources())
    finally:
        dcmtk.stop(proc)
    sent = {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in _sources()}
    assert set(report.imported) == sent and not report.skipped
    received = {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in (tmp_path / "received").iterdir()}
    assert received == sent


def test_tls_certificate_problems_are_named(pki, tmp_path):
    good_cert, good_key = pki.issue("storescp-ip", "IP:127.0.0.1")
    other_cert, other_key = pki.issue("storescp-dns", "DNS:pacs.example.org")
    client_cert, client_key = pki.issue("client", "DNS:workstation.example.org")
    trusting = DimseTls(ca_bundle=str(pki.ca), cert=str(client_cert), key=str(client_key))

    port = free_port()
    proc = _storescp_tls(tmp_path / "a", port, other_cert, other_key, pki.ca)
    try:
        mismatch = DimseArchive("Secure", "127.0.0.1", port, dcmtk.STORE_AE, timeout=10, tls=trusting)
        with pytest.raises(TLSFailure, match=r"^Secure: certificate verify failed: IP address mismatch, certificate "
                                             r"is not valid for '127\.0\.0\.1'$"):
            mismatch.echo()
    finally:
        dcmtk.stop(proc)

    port = free_port()
    proc = _storescp_tls(tmp_path / "b", port, good_cert, good_key, pki.ca)
    try:
        untrusted = DimseArchive("Secure", "127.0.0.1", port, dcmtk.STORE_AE, timeout=10,
                                 tls=DimseTls(cert=str(client_cert), key=str(client_key)))  # system CAs only
        with pytest.raises(TLSFailure, match="^Secure: certificate verify failed: self.signed certificate in "
                                             "certificate chain$"):  # storescp sends its CA along
            untrusted.echo()
        anonymous = DimseArchive("Secure", "127.0.0.1", port, dcmtk.STORE_AE, timeout=10,
                                 tls=DimseTls(ca_bundle=str(pki.ca)))  # storescp -rc wants a client certificate
        with pytest.raises(TLSFailure, match="^Secure: the TLS handshake with 127.0.0.1:.* failed: .*certificate"):
            anonymous.echo()
        DimseArchive("Secure", "127.0.0.1", port, dcmtk.STORE_AE, timeout=10, tls=trusting).echo()  # and it works
    finally:
        dcmtk.stop(proc)


def test_tls_to_a_plain_port_and_bad_tls_files(pki, tmp_path):
    port = free_port()
    proc = dcmtk.start_storescp(tmp_path / "plain", port)
    try:
        archive = DimseArchive("Plain", "127.0.0.1", port, dcmtk.STORE_AE, timeout=10,
                               tls=DimseTls(ca_bundle=str(pki.ca)))
        with pytest.raises(TLSFailure, match="^Plain: 127.0.0.1:[0-9]+ closed the connection during the TLS "
                                             "handshake: does that port speak TLS"):
            archive.echo()
    finally:
        dcmtk.stop(proc)
    with pytest.raises(ArchiveError, match="^TLS CA bundle .*missing.pem: no such file$"):
        DimseArchive("X", "127.0.0.1", port, "X", tls=DimseTls(ca_bundle=str(tmp_path / "missing.pem")))
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    with pytest.raises(ArchiveError, match="^TLS CA bundle .*not.pem: not a PEM certificate file"):
        DimseArchive("X", "127.0.0.1", port, "X", tls=DimseTls(ca_bundle=str(not_pem)))
    with pytest.raises(ValueError, match="C-MOVE over TLS is not supported"):
        DimseArchive("X", "127.0.0.1", port, "X", retrieve="move", move_destination_port=port,
                     tls=DimseTls(ca_bundle=str(pki.ca)))


class _TlsOrthanc(OrthancServer):
    """Orthanc with DICOM TLS on, requiring a client certificate signed by ``ca``."""

    def __init__(self, workdir: Path, cert: Path, key: Path, ca: Path) -> None:
        super().__init__(workdir, {WORKSTATION_AE: free_port()})
        self.tls_files = (cert, key, ca)

    def config(self) -> dict:
        cert, key, ca = self.tls_files
        return {**super().config(), "DicomTlsEnabled": True, "DicomTlsCertificate": str(cert),
                "DicomTlsPrivateKey": str(key), "DicomTlsTrustedCertificates": str(ca),
                "DicomTlsRemoteCertificateRequired": True}


def test_find_and_middle_first_c_get_from_orthanc_over_tls(pki, tmp_path):
    reason = orthanc_available()
    if reason:
        pytest.skip(reason)
    cert, key = pki.issue("orthanc", "IP:127.0.0.1")
    client_cert, client_key = pki.issue("ws", "DNS:workstation.example.org")
    server = _TlsOrthanc(tmp_path / "orthanc", cert, key, pki.ca)
    server.start()
    try:
        files = dicom_files(shared_case("ct-chest-lidc-0001") / "dicom")[:9]
        server.upload(files)
        archive = DimseArchive("Orthanc TLS", "127.0.0.1", server.dicom_port, "ORTHANC", WORKSTATION_AE,
                               cache_dir=tmp_path / "cache", timeout=20,
                               tls=DimseTls(str(pki.ca), str(client_cert), str(client_key)))
        (study,) = archive.find_studies()
        (series,) = archive.find_series(study.study_instance_uid)
        paths = archive.fetch_series(series.series_instance_uid)
        plain = DimseArchive("Orthanc", "127.0.0.1", server.dicom_port, "ORTHANC", WORKSTATION_AE, timeout=5)
        with pytest.raises(ArchiveError):
            plain.echo()  # the port speaks TLS only
    finally:
        server.stop()
    assert sorted(str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths) == \
        sorted(str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files)


def test_cli_adds_and_tests_a_tls_archive(pki, tmp_path, home, capsys):
    from tests.conftest import run_cli

    cert, key = pki.issue("storescp-cli", "IP:127.0.0.1")
    client_cert, client_key = pki.issue("ws-cli", "DNS:workstation.example.org")
    port = free_port()
    proc = _storescp_tls(tmp_path / "received", port, cert, key, pki.ca)
    try:
        code, out, err = run_cli(capsys, "archives", "add", "Secure", "--dimse", f"{dcmtk.STORE_AE}@127.0.0.1:{port}",
                                 "--tls", "--ca", str(pki.ca), "--tls-cert", str(client_cert), "--tls-key",
                                 str(client_key))
        assert code == 0 and ", TLS)" in out, err
        code, out, err = run_cli(capsys, "archives", "test", "Secure")
        assert code == 0 and "Secure: OK (C-ECHO" in out, err
        code, out, err = run_cli(capsys, "archives", "add", "Anonymous", "--dimse",
                                 f"{dcmtk.STORE_AE}@127.0.0.1:{port}", "--tls", "--ca", str(pki.ca))
        assert code == 0, err
        code, out, err = run_cli(capsys, "archives", "test", "Anonymous")
        assert code == 1 and err.strip().startswith("workstation: error: Anonymous: the TLS handshake with "
                                                    f"127.0.0.1:{port} failed: "), err
    finally:
        dcmtk.stop(proc)
    code, out, err = run_cli(capsys, "archives", "add", "Bad", "--dimse", f"X@127.0.0.1:{port}", "--ca", str(pki.ca))
    assert code != 0 and "--ca, --tls-cert and --tls-key need --tls" in err


def test_tls_settings_round_trip_through_the_config_file(tmp_path):
    from workstation.archive.dimse import endpoint_tls
    from workstation.config import ArchiveEndpoint, ConfigError, load_settings, save_archives

    endpoint = ArchiveEndpoint("Secure", "dimse", host="pacs", port=2762, called_ae="PACS", tls=True,
                               ca_bundle="/etc/pki/ca.pem", tls_cert="/etc/pki/ws.pem", tls_key="/etc/pki/ws.key")
    save_archives(tmp_path, [endpoint])
    (loaded,) = load_settings({"WORKSTATION_HOME": str(tmp_path)}).archives
    assert loaded == endpoint
    assert endpoint_tls(loaded).cert == "/etc/pki/ws.pem" and endpoint_tls(ArchiveEndpoint("P", "dimse")) is None
    for line, message in (('tls = "yes"', "has tls = 'yes'; expected true or false"),
                          ('tls = true\nretrieve = "move"\nmove_port = 11113', 'TLS works with retrieve = "get" only')):
        (tmp_path / "workstation.toml").write_text(
            f'[[archives]]\nname = "P"\nkind = "dimse"\nhost = "pacs"\ncalled_ae = "PACS"\n{line}\n')
        with pytest.raises(ConfigError, match=message):
            load_settings({"WORKSTATION_HOME": str(tmp_path)})
