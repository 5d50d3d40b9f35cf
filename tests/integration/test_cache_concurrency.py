"""Two retrievals of one series at once into one cache (the reader's open and a prefetch; two clients on one
cache folder), from the real Orthanc: neither deletes the other's temporary files, both end with the whole
series, pixel for pixel the source's."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tests.integration.conftest import WORKSTATION_AE
from tests.integration.test_cache_offline_priors import _dicomweb
from workstation.archive.cache import PART_SUFFIX
from workstation.archive.client import StudyQuery
from workstation.archive.credentials import BasicAuth
from workstation.archive.dimse import DimseArchive
from workstation.dicom.series import load_series

LIDC_PATIENT = "LIDC-IDRI-0001"


def _together(fetches) -> list:
    """Run the fetches on threads released at the same moment; their results (or the first error)."""
    barrier = threading.Barrier(len(fetches))
    results: list = [None] * len(fetches)
    errors: list[BaseException] = []

    def run(i, fetch) -> None:
        barrier.wait()
        try:
            results[i] = fetch()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate(fetches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("round_", range(2))
def test_concurrent_fetches_of_one_series_share_the_cache(orthanc, tmp_path, lidc_reference, round_):
    auth = BasicAuth(*orthanc.server.auth)
    cache = tmp_path / "cache"
    web = _dicomweb(orthanc.dicomweb_url, cache, auth)  # one client, two threads (open + prefetch)
    other_web = _dicomweb(orthanc.dicomweb_url, cache, auth)  # a second client on the same folder
    dimse = DimseArchive("Orthanc", "127.0.0.1", orthanc.server.dicom_port, "ORTHANC", WORKSTATION_AE,
                         cache_dir=cache, timeout=30)
    (study,) = web.find_studies(StudyQuery(patient_id=LIDC_PATIENT))
    (series,) = web.find_series(study.study_instance_uid)
    uid, study_uid = series.series_instance_uid, study.study_instance_uid
    results = _together([lambda: web.fetch_series(uid, study_instance_uid=study_uid),
                         lambda: web.fetch_series(uid, study_instance_uid=study_uid),
                         lambda: other_web.fetch_series(uid, study_instance_uid=study_uid),
                         lambda: dimse.fetch_series(uid, study_instance_uid=study_uid)])
    assert all(len(paths) == 133 for paths in results)
    assert all(sorted(paths) == sorted(results[0]) for paths in results)
    assert not list(cache.rglob(f"*{PART_SUFFIX}"))  # nothing left half-written
    (volume,) = load_series(results[0])
    assert volume.shape == lidc_reference.shape
    np.testing.assert_array_equal(volume.voxels, lidc_reference.voxels)
    assert web.cache_index.complete_files(uid) is not None


def test_a_fetch_leaves_alone_what_another_retrieval_is_writing(orthanc, tmp_path, lidc_reference):
    """Deterministic version of the race: an instance of the series is half-written (by another thread of this
    process, and by another process still running) while a whole fetch of the series runs start to end."""
    import subprocess
    import sys

    from pydicom import dcmread

    auth = BasicAuth(*orthanc.server.auth)
    cache = tmp_path / "cache"
    web = _dicomweb(orthanc.dicomweb_url, cache, auth)
    (study,) = web.find_studies(StudyQuery(patient_id=LIDC_PATIENT))
    (series,) = web.find_series(study.study_instance_uid)
    uid, study_uid = series.series_instance_uid, study.study_instance_uid
    series_cache = web.cache_index.series_cache(study_uid, uid)
    half_written, go_on = threading.Event(), threading.Event()
    payload = b"\x00" * 128 + b"DICM"

    def slow_chunks():
        yield payload
        half_written.set()
        go_on.wait(120)
        yield b"rest"

    writer_result: list = []
    writer = threading.Thread(target=lambda: writer_result.append(
        series_cache.write_bytes("1.2.826.0.1.3680043.99.1", slow_chunks(), record=False)))
    writer.start()
    assert half_written.wait(60)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        foreign = series_cache.folder / f".1.2.826.0.1.3680043.99.2.{other.pid}-abcd{PART_SUFFIX}"
        foreign.write_bytes(b"another process is writing this")
        dead = series_cache.folder / f".1.2.826.0.1.3680043.99.3.{2**22 + 12345}-abcd{PART_SUFFIX}"
        dead.write_bytes(b"left by a crash")
        paths = web.fetch_series(uid, study_instance_uid=study_uid)  # removes leftovers at start and end
        assert foreign.exists() and not dead.exists()
    finally:
        other.kill()
        other.wait()
        go_on.set()
        writer.join(60)
    (final, size) = writer_result[0]
    assert final.read_bytes() == payload + b"rest" and size == len(payload) + 4
    assert len(paths) == 133 and all(dcmread(p, stop_before_pixels=True).SeriesInstanceUID == uid for p in paths)
    (volume,) = load_series(paths)
    np.testing.assert_array_equal(volume.voxels, lidc_reference.voxels)
