"""export-dataset on the LIDC case through a real Orthanc: import-lidc --enqueue, sync run, export-dataset.

The layout is valid nnU-Net v2 (and MONAI), image and label geometry equal the CT's, label values match
dataset.json, the labels are the chosen reader's nodules voxel for voxel, no patient name, ID or date is
left in any output file (compressed ones decompressed), and a second run resumes without rewriting.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pydicom
import pytest

from tests.conftest import run_cli as run
from tests.integration import orthanc as orthanc_mod
from tests.shared_data import shared_case


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.conftest import _unavailable

    reason = orthanc_mod.orthanc_available()
    if reason:
        _unavailable(reason)
    srv = orthanc_mod.OrthancServer(workdir=tmp_path_factory.mktemp("orthanc-export"))
    srv.start()
    try:
        srv.upload(orthanc_mod.dicom_files(shared_case("ct-chest-lidc-0001") / "dicom"))
        yield srv
    finally:
        srv.stop()


def _identifying_strings(case) -> set[bytes]:
    first = pydicom.dcmread(sorted((case / "dicom").iterdir())[0], stop_before_pixels=True)
    values = {str(first.get(k, "") or "") for k in ("PatientName", "PatientID", "PatientBirthDate", "StudyDate",
                                                    "SeriesDate", "AcquisitionDate", "ContentDate",
                                                    "AccessionNumber", "StudyInstanceUID", "SeriesInstanceUID")}
    return {v.encode() for v in values if len(v) >= 6}


def test_export_lidc_from_orthanc(server, home, capsys, monkeypatch, tmp_path, lidc_reference):
    import SimpleITK as sitk

    from workstation.dicom.seg import labelmap_onto_grid, read_seg

    case = shared_case("ct-chest-lidc-0001")
    monkeypatch.setenv("ORTHANC_PW", server.auth[1])
    assert run(capsys, "archives", "add", "Web", "--dicomweb", server.dicomweb_url, "--user", server.auth[0],
               "--password-env", "ORTHANC_PW")[0] == 0
    code, out, err = run(capsys, "import-lidc", str(case / "069.xml"), "--series", str(case / "dicom"),
                         "--out", str(tmp_path / "lidc"), "--enqueue", "Web")
    assert code == 0, err
    code, out, err = run(capsys, "sync", "run", "--archive", "Web", "--wait", "120")
    assert code == 0 and "sent 8, waiting 0, failed 0" in out, out + err

    dataset = tmp_path / "dataset"
    code, out, err = run(capsys, "export-dataset", "--archive", "Web", "--schema", "lung-nodule",
                         "--out", str(dataset))
    assert code == 0, err
    assert "case 001: written" in out and "[1/1]" in out  # progress lines

    meta = json.loads((dataset / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"} and meta["file_ending"] == ".nii.gz"
    assert meta["labels"] == {"background": 0, "Lung nodule": 1, "Lung": 2} and meta["numTraining"] == 1
    image = sitk.ReadImage(str(dataset / "imagesTr" / "001_0000.nii.gz"))
    label = sitk.ReadImage(str(dataset / "labelsTr" / "001.nii.gz"))
    for a, b in ((image, label),):
        assert a.GetSize() == b.GetSize() and np.allclose(a.GetSpacing(), b.GetSpacing())
        assert np.allclose(a.GetOrigin(), b.GetOrigin()) and np.allclose(a.GetDirection(), b.GetDirection())
    volume = lidc_reference
    assert image.GetSize() == tuple(reversed(volume.shape))
    assert np.allclose(image.GetSpacing(), volume.spacing, atol=1e-4)
    assert np.allclose(image.GetOrigin(), volume.affine[:3, 3], atol=1e-3)
    assert np.array_equal(sitk.GetArrayFromImage(image), volume.voxels)
    labels = sitk.GetArrayFromImage(label)
    assert set(np.unique(labels).tolist()) <= set(meta["labels"].values()) and (labels == 1).any()

    provenance = json.loads((dataset / "provenance.json").read_text())
    record = provenance["cases"]["001"]
    assert record["annotator"].startswith("LIDC^Reader ") and record["revision"] == 1
    assert record["review_state"] == "unreviewed" and record["patient"].startswith("ANON-")
    reader = record["annotator"].split()[-1]
    seg = read_seg(tmp_path / "lidc" / f"lidc-reader-{reader}-seg.dcm")
    expected = labelmap_onto_grid(seg, volume.shape, volume.affine) > 0
    assert np.array_equal(labels == 1, expected)

    forbidden = _identifying_strings(case)
    for path in dataset.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix == ".gz":
                data = gzip.decompress(data)
            leaks = [s for s in forbidden if s in data]
            assert leaks == [], f"{path.name} contains {leaks}"

    mtimes = {p: p.stat().st_mtime_ns for p in (dataset / "imagesTr").iterdir()}
    code, out, err = run(capsys, "export-dataset", "--archive", "Web", "--schema", "lung-nodule",
                         "--out", str(dataset), "--format", "monai")
    assert code == 0, err
    assert "case 001: already complete, skipped" in out
    assert {p: p.stat().st_mtime_ns for p in (dataset / "imagesTr").iterdir()} == mtimes
    datalist = json.loads((dataset / "datalist.json").read_text())
    assert datalist["training"] == [{"image": "imagesTr/001_0000.nii.gz", "label": "labelsTr/001.nii.gz"}]
