"""Series thumbnails rendered by the real Orthanc (WADO-RS rendered), without retrieving the series."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread

from tests.integration.orthanc import dicom_files
from tests.shared_data import shared_case
from workstation.archive.client import NotFound, StudyQuery
from workstation.archive.credentials import BasicAuth
from workstation.archive.dicomweb import DicomWebArchive


def _slice(path, shape: tuple[int, int]) -> np.ndarray:
    ds = dcmread(path)
    image = Image.fromarray(ds.pixel_array.astype(np.float32))
    return np.asarray(image.resize((shape[1], shape[0]), Image.Resampling.BOX), dtype=np.float64)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel())[0, 1])


def test_thumbnail_is_the_middle_slice_rendered_by_the_server(orthanc, tmp_path):
    server = orthanc.server
    archive = DicomWebArchive("Orthanc", server.dicomweb_url, auth=BasicAuth(*server.auth), cache_dir=tmp_path)
    (study,) = archive.find_studies(StudyQuery(patient_id="LIDC-IDRI-0001"))
    (series,) = archive.find_series(study.study_instance_uid)
    thumb = archive.thumbnail(series.series_instance_uid, 96)
    assert thumb.dtype == np.uint8 and thumb.ndim == 2 and max(thumb.shape) == 96 and thumb.std() > 10

    files = sorted(dicom_files(shared_case("ct-chest-lidc-0001") / "dicom"),
                   key=lambda p: int(dcmread(p, stop_before_pixels=True).InstanceNumber))
    middle = _correlation(thumb, _slice(files[(len(files) - 1) // 2], thumb.shape))
    first = _correlation(thumb, _slice(files[0], thumb.shape))
    assert middle > 0.9 and middle > first + 0.05
    assert list(tmp_path.rglob("*.dcm")) == []  # nothing was retrieved for it

    small = archive.thumbnail(series.series_instance_uid, 40, study_instance_uid=study.study_instance_uid)
    assert max(small.shape) == 40


def test_thumbnail_of_an_unknown_series(orthanc, tmp_path):
    server = orthanc.server
    archive = DicomWebArchive("Orthanc", server.dicomweb_url, auth=BasicAuth(*server.auth), cache_dir=tmp_path)
    with pytest.raises(NotFound, match="^series 1.2.3.4 is not in the Orthanc archive$"):
        archive.thumbnail("1.2.3.4")
