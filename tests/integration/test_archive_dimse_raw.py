"""C-GET driven on the socket (workstation.archive._dimse_raw) against a real Orthanc: the instances as the
archive holds them, in the order the series listing gives, over one association or several, and the
middle instance first."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from tests.integration.conftest import WORKSTATION_AE
from tests.integration.orthanc import dicom_files
from tests.shared_data import shared_case
from workstation.archive.client import StudyQuery
from workstation.archive.credentials import BasicAuth
from workstation.archive.dicomweb import DicomWebArchive
from workstation.archive.dimse import DimseArchive


def _series(orthanc, patient_id: str | None = None, instances: int | None = None) -> tuple[str, str]:
    server = orthanc.server
    web = DicomWebArchive("Orthanc", server.dicomweb_url, auth=BasicAuth(*server.auth))
    for study in web.find_studies(StudyQuery(patient_id=patient_id or "")):
        for series in web.find_series(study.study_instance_uid):
            if instances is None or series.number_of_instances == instances:
                return study.study_instance_uid, series.series_instance_uid
    raise AssertionError("series not in Orthanc")


def _archive(orthanc, cache: Path, **kwargs) -> DimseArchive:
    return DimseArchive("Orthanc", "127.0.0.1", orthanc.server.dicom_port, "ORTHANC", WORKSTATION_AE,
                        cache_dir=cache, timeout=20, **kwargs)


def _dataset_bytes(path: Path) -> bytes:
    """The file after its meta group (what the archive sent)."""
    ds = dcmread(path, stop_before_pixels=True)
    body = path.read_bytes()
    return body[132 + 12 + int(ds.file_meta.FileMetaInformationGroupLength):]


def test_one_association_or_two_give_the_same_files_in_the_listing_order(orthanc, tmp_path, monkeypatch):
    from workstation.archive._dimse_retrieve import Receiver

    study, series = _series(orthanc, patient_id="LIDC-IDRI-0001")
    seen, stored = [], []
    close_raw = Receiver.close_raw

    def recording(self, sop, incoming):
        stored.append(sop)
        return close_raw(self, sop, incoming)

    monkeypatch.setattr(Receiver, "close_raw", recording)
    one = _archive(orthanc, tmp_path / "one").fetch_series(series, progress=seen.append, study_instance_uid=study)
    monkeypatch.undo()
    two = _archive(orthanc, tmp_path / "two", associations=2).fetch_series(series, study_instance_uid=study)
    listed = [s.sop_uid for s in _archive(orthanc, tmp_path / "list").instance_spots(study, series)]
    assert [p.stem for p in one] == [p.stem for p in two] == listed  # order read from the headers = listing
    assert all(_dataset_bytes(a) == _dataset_bytes(b) for a, b in zip(one, two))
    done = [p.done for p in seen]
    assert done == sorted(done) and done[-1] == 133
    first = next(p for p in seen if p.done == 1)
    assert first.total == 133
    assert stored[0] == listed[(133 - 1) // 2]  # the instance numbered in the middle came first


def test_instances_arrive_as_the_archive_holds_them_where_it_can(orthanc, tmp_path):
    """An implicit VR file is no longer converted to explicit VR on the way (its own presentation context);
    compressed files Orthanc decompresses (we offer no compressed syntax per context): the pixels stay."""
    import numpy as np

    originals = {str(dcmread(f).SOPInstanceUID): dcmread(f)
                 for f in dicom_files(shared_case("mr-slice-codecs") / "dicom")}
    study, series = _series(orthanc, instances=len(originals))
    paths = _archive(orthanc, tmp_path / "c").fetch_series(series, study_instance_uid=study)
    assert len(paths) == len(originals)
    for path in paths:
        got = dcmread(path)
        want = originals[str(got.SOPInstanceUID)]
        if want.file_meta.TransferSyntaxUID in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1"):
            assert got.file_meta.TransferSyntaxUID == want.file_meta.TransferSyntaxUID
            assert _dataset_bytes(path) == _dataset_bytes(next(
                f for f in dicom_files(shared_case("mr-slice-codecs") / "dicom")
                if str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) == str(got.SOPInstanceUID)))
        np.testing.assert_array_equal(got.pixel_array, want.pixel_array)


@pytest.mark.parametrize("associations", [1, 2])
def test_a_resumed_retrieval_fetches_only_what_is_missing(orthanc, tmp_path, associations):
    study, series = _series(orthanc, patient_id="LIDC-IDRI-0001")
    archive = _archive(orthanc, tmp_path, associations=associations)
    paths = archive.fetch_series(series, study_instance_uid=study)
    kept = {p: p.stat().st_mtime_ns for p in paths[1::2]}
    for p in paths[::2]:
        p.unlink()
    again = _archive(orthanc, tmp_path, associations=associations).fetch_series(series, study_instance_uid=study)
    assert again == paths and all(p.is_file() for p in again)
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # not written again
