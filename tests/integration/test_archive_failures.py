"""Every way an archive fails gives a specific message and leaves only complete instances in the cache."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydicom import dcmread

from tests.integration import peers
from tests.integration.conftest import WORKSTATION_AE
from tests.integration.orthanc import dicom_files, free_port
from tests.shared_data import shared_case
from workstation.archive._order import middle_out
from workstation.archive.client import (
    ArchiveTimeout,
    ArchiveUnavailable,
    AssociationRejected,
    AuthenticationFailed,
    Cancelled,
    CancelToken,
    StudyQuery,
    TLSFailure,
)
from workstation.archive.credentials import BasicAuth, BearerToken, NoAuth
from workstation.archive.dicomweb import DicomWebArchive
from workstation.archive.dimse import DimseArchive


def cache_entries(cache: Path) -> list[Path]:
    """What the cache folder holds besides its (always present) index."""
    return [p for p in cache.iterdir() if not p.name.startswith("cache-index.sqlite")]


def assert_cache_clean(cache: Path) -> list[Path]:
    """No temporary files; every .dcm is a complete, readable instance.  Returns the .dcm files."""
    leftovers = [p for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".dcm")
                 and not p.name.startswith("cache-index.sqlite")]
    assert leftovers == []
    files = sorted(cache.rglob("*.dcm"))
    for f in files:
        ds = dcmread(f)
        assert len(ds.PixelData) == ds.Rows * ds.Columns * ds.BitsAllocated // 8
    return files


def _lidc_series(orthanc) -> tuple[str, str]:
    server = orthanc.server
    archive = DicomWebArchive("Orthanc", server.dicomweb_url, auth=BasicAuth(*server.auth))
    (study,) = archive.find_studies(StudyQuery(patient_id="LIDC-IDRI-0001"))
    (series,) = archive.find_series(study.study_instance_uid)
    return study.study_instance_uid, series.series_instance_uid


# -- DICOMweb ------------------------------------------------------------------------------------------
def test_dicomweb_archive_down(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/dicom-web"
    archive = DicomWebArchive("Down", url, cache_dir=tmp_path, retries=1, backoff=0.01)
    with pytest.raises(ArchiveUnavailable, match=f"^cannot reach {url}: connection refused$"):
        archive.find_studies()
    with pytest.raises(ArchiveUnavailable, match="connection refused"):
        archive.fetch_series("1.2.3")
    assert cache_entries(tmp_path) == []


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        (BasicAuth("radiologist", "wrong"), "^wrong user name or password for Orthanc$"),
        (BearerToken("expired-token"), "^Orthanc refused the access token \\(expired or invalid\\)$"),
        (NoAuth(), "^Orthanc requires authentication"),
    ],
    ids=["wrong-password", "bad-token", "no-credentials"],
)
def test_dicomweb_authentication_failures(orthanc, tmp_path, auth, message):
    archive = DicomWebArchive("Orthanc", orthanc.dicomweb_url, auth=auth, cache_dir=tmp_path)
    with pytest.raises(AuthenticationFailed, match=message):
        archive.find_studies(StudyQuery(patient_id="LIDC-IDRI-0001"))
    with pytest.raises(AuthenticationFailed, match=message):
        archive.fetch_series("1.2.3")
    assert cache_entries(tmp_path) == []


def test_dicomweb_tls_certificate_problems(tmp_path):
    pem = peers.self_signed_cert(tmp_path, "pacs.example.org")
    with peers.TlsServer(pem) as server:
        url = f"https://127.0.0.1:{server.port}/dicom-web"
        untrusted = DicomWebArchive("TLS", url, retries=0)
        with pytest.raises(TLSFailure, match="certificate verify failed: self.signed certificate"):
            untrusted.find_studies()
        mismatch = DicomWebArchive("TLS", url, ca_bundle=pem, retries=0)
        with pytest.raises(TLSFailure, match="certificate verify failed: IP address mismatch, certificate is not "
                                             "valid for '127.0.0.1'"):
            mismatch.find_studies()
    good_pem = peers.self_signed_cert(tmp_path, "127.0.0.1")
    with peers.TlsServer(good_pem) as server:
        trusted = DicomWebArchive("TLS", f"https://127.0.0.1:{server.port}/dicom-web", ca_bundle=good_pem)
        assert trusted.find_studies() == []


def test_dicomweb_timeout_mid_series_then_resume(orthanc, tmp_path):
    server = orthanc.server
    study, series = _lidc_series(orthanc)
    cache = tmp_path / "cache"
    # the series stream stalls after ~20 of 133 instances (each ~0.53 MB); 3 single instances get through
    with peers.StallingProxy(server.url, instances=3, series_bytes=20 * 530_000) as proxy:
        slow = DicomWebArchive("Slow", f"http://127.0.0.1:{proxy.port}/dicom-web", auth=BasicAuth(*server.auth),
                               cache_dir=cache, timeout=0.5, retries=0)
        with pytest.raises(ArchiveTimeout, match=r"^Slow did not answer within 0\.5 s while retrieving series "):
            slow.fetch_series(series)
    kept = assert_cache_clean(cache)
    assert 15 <= len(kept) <= 25
    good = DicomWebArchive("Orthanc", server.dicomweb_url, auth=BasicAuth(*server.auth), cache_dir=cache,
                           concurrency=1)
    asked = []
    fetch_one = good._fetch_instance
    good._fetch_instance = lambda tally, st, se, sop: (asked.append(sop), fetch_one(tally, st, se, sop))
    seen = []
    paths = good.fetch_series(series, progress=seen.append, study_instance_uid=study)
    assert seen[0].done == len(kept) and seen[-1].done == 133  # resumed: the kept ones were not fetched again
    assert len(assert_cache_clean(cache)) == len(paths) == 133
    have = {p.stem for p in kept}
    missing = [s.sop_uid for s in middle_out(good.instance_spots(study, series)) if s.sop_uid not in have]
    assert asked == missing  # the missing ones nearest the series' middle first


def test_dicomweb_slow_stream_gets_the_middle_slices_first(orthanc, tmp_path):
    """A series stream that is slow (here: stalled after ~5 of 133 instances) does not hold back the middle
    of the series: it is listed and the instances nearest the middle come one by one meanwhile."""
    server = orthanc.server
    study, series = _lidc_series(orthanc)
    direct = DicomWebArchive("Orthanc", server.dicomweb_url, auth=BasicAuth(*server.auth))
    middle = [s.sop_uid for s in middle_out(direct.instance_spots(study, series))[:3]]
    cache = tmp_path / "cache"
    with peers.StallingProxy(server.url, instances=3, series_bytes=5 * 530_000) as proxy:
        slow = DicomWebArchive("Slow", f"http://127.0.0.1:{proxy.port}/dicom-web", auth=BasicAuth(*server.auth),
                               cache_dir=cache, timeout=2, retries=0, list_after=0)
        with pytest.raises(ArchiveTimeout, match="^Slow did not answer within 2 s while retrieving series "):
            slow.fetch_series(series, study_instance_uid=study)
    names = {p.stem for p in assert_cache_clean(cache)}
    assert set(middle) <= names and 3 < len(names) <= 3 + 6


def test_dicomweb_cancel_keeps_complete_instances(orthanc, tmp_path):
    server = orthanc.server
    _, series = _lidc_series(orthanc)
    token = CancelToken()

    def progress(p):
        if p.done >= 10:
            token.cancel()

    archive = DicomWebArchive("Orthanc", server.dicomweb_url, auth=BasicAuth(*server.auth), cache_dir=tmp_path)
    with pytest.raises(Cancelled):
        archive.fetch_series(series, progress=progress, cancel=token)
    assert 10 <= len(assert_cache_clean(tmp_path)) < 133


# -- DIMSE ------------------------------------------------------------------------------------------------
def test_dimse_archive_down(tmp_path):
    port = free_port()
    archive = DimseArchive("PACS", "127.0.0.1", port, "PACS", cache_dir=tmp_path, timeout=5)
    with pytest.raises(ArchiveUnavailable, match=f"^cannot reach 127.0.0.1:{port}: connection refused$"):
        archive.echo()
    with pytest.raises(ArchiveUnavailable, match="connection refused"):
        archive.find_studies()


@pytest.mark.parametrize(
    ("calling", "called", "message"),
    [
        ("STRANGER", "ORTHANC", "^Orthanc rejected the association: unknown calling AE title 'STRANGER'\\?$"),
        (WORKSTATION_AE, "NOT_ORTHANC", "^Orthanc rejected the association: unknown called AE title 'NOT_ORTHANC'\\?$"),
    ],
    ids=["unknown-calling-ae", "unknown-called-ae"],
)
def test_dimse_association_rejected(orthanc, tmp_path, calling, called, message):
    # a generous timeout: on a loaded machine the rejection can take seconds to arrive, and the message
    # must still be the rejection's, not a timeout's
    archive = DimseArchive("Orthanc", "127.0.0.1", orthanc.server.dicom_port, called, calling, cache_dir=tmp_path,
                           timeout=30)
    # several times: pynetdicom loses a prompt rejection about one time in three (it aborts instead), and the
    # message must still say it was rejected and why
    for _ in range(8):
        with pytest.raises(AssociationRejected, match=message):
            archive.echo()
    with pytest.raises(AssociationRejected, match=message):
        archive.fetch_series("1.2.3", study_instance_uid="1.2")
    assert cache_entries(tmp_path) == []


def test_dimse_timeout_mid_series(tmp_path):
    files = dicom_files(shared_case("ct-chest-lidc-0001") / "dicom")[:12]
    datasets = [dcmread(f) for f in files]
    server = peers.stalling_get_scp(datasets, answer=5, stall_s=2.0)
    try:
        port = server.server_address[1]
        archive = DimseArchive("Stalling", "127.0.0.1", port, "STALLING", cache_dir=tmp_path, timeout=0.5)
        study, series = str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)
        with pytest.raises(ArchiveTimeout, match=r"^Stalling did not answer within 0\.5 s while retrieving series"):
            archive.fetch_series(series, study_instance_uid=study)
    finally:
        threading.Thread(target=server.shutdown, daemon=True).start()
    assert len(assert_cache_clean(tmp_path)) == 5


@pytest.mark.parametrize("mode", ["get", "move"])
def test_dimse_cancel_keeps_complete_instances(orthanc, tmp_path, mode):
    study, series = _lidc_series(orthanc)
    token = CancelToken()

    def progress(p):
        if p.done >= 10:
            token.cancel()

    archive = DimseArchive("Orthanc", "127.0.0.1", orthanc.server.dicom_port, "ORTHANC", WORKSTATION_AE,
                           retrieve=mode, move_destination_port=orthanc.move_port, move_listen_host="127.0.0.1",
                           cache_dir=tmp_path, timeout=10)
    with pytest.raises(Cancelled):
        archive.fetch_series(series, progress=progress, cancel=token, study_instance_uid=study)
    assert 10 <= len(assert_cache_clean(tmp_path)) < 133
