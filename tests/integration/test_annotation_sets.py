"""Annotation sets through a real Orthanc: LabelMap -> SEG -> outbox -> Orthanc -> LabelMap identical, SR likewise.

Uses an Orthanc of its own (the session one is shared with tests that count the series of its studies).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.integration import orthanc as orthanc_mod
from tests.shared_data import shared_case
from workstation.archive.credentials import BasicAuth
from workstation.archive.dicomweb import DicomWebArchive
from workstation.dicom.seg import read_source_headers
from workstation.labels.annotation_sets import list_sets, load_set, save_revision
from workstation.labels.schema import load_schema
from workstation.model.finding import Finding, FindingKind, Provenance
from workstation.model.labelmap import LabelMap
from workstation.model.measurement import EllipseROI, LengthMeasurement
from workstation.sync.outbox import Outbox
from workstation.sync.worker import RetryPolicy, SyncWorker


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.conftest import _unavailable

    reason = orthanc_mod.orthanc_available()
    if reason:
        _unavailable(reason)
    folder = shared_case("seg-ct-3slice-dcmqi")
    srv = orthanc_mod.OrthancServer(workdir=tmp_path_factory.mktemp("orthanc-sets"))
    srv.start()
    try:
        srv.upload(orthanc_mod.dicom_files(folder / "dicom"))
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def ct():
    from workstation.dicom.series import load_series

    files = sorted((shared_case("seg-ct-3slice-dcmqi") / "dicom").glob("*.dcm"))
    (volume,) = load_series(files)
    return volume, read_source_headers(files)


def _client(server, tmp_path):
    return DicomWebArchive("Orthanc", server.dicomweb_url, auth=BasicAuth(*server.auth), cache_dir=tmp_path / "cache")


def _send(paths, server, tmp_path) -> None:
    """Through the real outbox and worker, as the application does."""
    client = _client(server, tmp_path / "send")
    with Outbox(tmp_path / "outbox") as outbox:
        for p in paths:
            outbox.enqueue(p, "Orthanc")
        report = SyncWorker(outbox, lambda name: client, RetryPolicy(base_delay_s=0.05)).drain(timeout_s=60)
        assert len(report.sent) == len(paths) and report.failed == ()


def test_labelmap_and_findings_round_trip_through_orthanc(server, ct, tmp_path):
    volume, sources = ct
    schema = load_schema("lung-nodule")
    labels = np.zeros(volume.shape, np.uint8)
    labels[:, 180:260, 140:230] = 1
    labels[1, 300:340, 300:360] = 2
    labelmap = LabelMap.on_grid_of(volume, labels, schema.model_segments())
    centre = tuple(float(v) for v in volume.index_to_lps(np.array([[185.0, 220.0, 1.0]]))[0])
    finding = Finding(FindingKind.BOX, "Lung nodule", 1.0, centre, tuple(c - 8 for c in centre),
                      tuple(c + 8 for c in centre), Provenance("Carol^C", ""), segment_number=1,
                      series_instance_uid=volume.info.series_instance_uid).accept("Carol^C")
    attrs = {finding.uid: {"nodule_type": "solid", "malignancy": 4}}
    p0, p1 = volume.index_to_lps(np.array([[150.0, 200.0, 1.0], [240.0, 200.0, 1.0]]))
    ellipse = EllipseROI(np.array(centre), np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), 6.0, 4.0)
    seg, sr = save_revision(sources, annotator="Carol^C", set_name="Nodules", labelmap=labelmap,
                            findings=[finding], measurements=[LengthMeasurement(p0, p1), ellipse], attributes=attrs)
    paths = [tmp_path / "seg.dcm", tmp_path / "sr.dcm"]
    seg.save_as(paths[0], enforce_file_format=True)
    sr.save_as(paths[1], enforce_file_format=True)
    _send(paths, server, tmp_path)

    archive = _client(server, tmp_path / "read")
    (carol,) = [s for s in list_sets(archive, volume.info.study_instance_uid) if s.annotator == "Carol^C"]
    assert carol.revision == 1 and carol.seg[0].sop_instance_uid == seg.SOPInstanceUID
    loaded = load_set(archive, carol)
    (layer,) = loaded.layers
    assert layer.is_on_grid_of(volume) and np.array_equal(layer.labels, labelmap.labels)
    assert layer.segments == labelmap.segments
    (back,) = loaded.findings
    assert (back.uid, back.kind, back.label, back.status) == (finding.uid, finding.kind, finding.label, finding.status)
    assert back.centroid_mm == pytest.approx(finding.centroid_mm, abs=1e-3)
    assert loaded.attributes == attrs and loaded.review_state == "approved"
    length, roi = loaded.measurements
    assert length.length_mm == pytest.approx(float(np.linalg.norm(p1 - p0)), abs=1e-3)
    assert roi.area_mm2 == pytest.approx(ellipse.area_mm2, abs=1e-3)

    # a second revision joins the same series in Orthanc; the first stays
    labels2 = labels.copy()
    labels2[2] = 0
    seg2, sr2 = save_revision(sources, annotator="Carol^C", set_name="Nodules",
                              labelmap=LabelMap.on_grid_of(volume, labels2, schema.model_segments()),
                              findings=[finding], attributes=attrs, previous=carol)
    paths2 = [tmp_path / "seg2.dcm", tmp_path / "sr2.dcm"]
    seg2.save_as(paths2[0], enforce_file_format=True)
    sr2.save_as(paths2[1], enforce_file_format=True)
    _send(paths2, server, tmp_path / "second")
    (carol,) = [s for s in list_sets(archive, volume.info.study_instance_uid) if s.annotator == "Carol^C"]
    assert [r.revision for r in carol.seg] == [1, 2] and [r.revision for r in carol.sr] == [1, 2]
    assert np.array_equal(load_set(archive, carol).layers[0].labels, labels2)
    assert np.array_equal(load_set(archive, carol, revision=1).layers[0].labels, labels)


def test_third_party_seg_reads_onto_its_ct_from_orthanc(server, ct, tmp_path):
    volume, _ = ct
    folder = shared_case("seg-ct-3slice-dcmqi")
    server.upload([folder / "liver.dcm"])
    archive = _client(server, tmp_path)
    (liver,) = [s for s in list_sets(archive, volume.info.study_instance_uid) if s.name == "Liver Segmentation"]
    (layer,) = load_set(archive, liver).layers
    local = LabelMap.on_grid_of(volume, np.zeros(volume.shape, np.uint8), layer.segments)
    assert layer.is_on_grid_of(volume) and local.shape == layer.shape
    from workstation.dicom.seg import labelmap_onto_grid, read_seg

    assert np.array_equal(layer.labels, labelmap_onto_grid(read_seg(folder / "liver.dcm"), volume.shape,
                                                           volume.affine))
