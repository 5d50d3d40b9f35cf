"""Findings and measurements -> SR TID 1500 (Comprehensive 3D SR) -> the same objects, on the LIDC CT.

The SR passes dciodvfy with no errors, references the source images, names the AI model as the
observing device (or a person), and chains revisions through PredecessorDocumentsSequence.
"""

import os
import shutil
import subprocess
from datetime import datetime, timezone

import numpy as np
import pydicom
import pytest

from tests.shared_data import shared_case
from workstation.dicom.seg import read_source_headers
from workstation.dicom.sr import DeviceObserver, SrError, findings_to_sr, sr_to_findings
from workstation.model.finding import Finding, FindingKind, Provenance, Status
from workstation.model.labelmap import Code
from workstation.model.measurement import EllipseROI, LengthMeasurement, RoiStats

MODEL = Provenance("lung-nodule-detector", "1.2.0", "Lung nodule detector")
NODULE = Code("27925004", "SCT", "Nodule")
WHEN = datetime(2025, 3, 4, 10, 11, 12, 345678, tzinfo=timezone.utc)
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


@pytest.fixture(scope="module")
def sources():
    files = sorted((shared_case("ct-chest-lidc-0001") / "dicom").glob("*.dcm"))
    headers = read_source_headers(files)
    return sorted(headers, key=lambda ds: float(ds.ImagePositionPatient[2]))


def _z(sources, n):
    return float(sources[n].ImagePositionPatient[2])


@pytest.fixture(scope="module")
def findings(sources):
    series = str(sources[0].SeriesInstanceUID)
    region = Finding(FindingKind.REGION, "Nodule", 0.87, (-50.5, 20.25, _z(sources, 60)),
                     (-55.0, 15.0, _z(sources, 58)), (-45.0, 25.5, _z(sources, 63)), MODEL, volume_mm3=523.6,
                     segment_number=1, series_instance_uid=series).accept("Smith^Jane", WHEN)
    at = (60.0, -10.0, _z(sources, 30))
    point = Finding(FindingKind.POINT, "Nodule", 0.31, at, at, at, MODEL, series_instance_uid=series)
    point = point.reject("jdoe", WHEN)
    box = Finding(FindingKind.BOX, "Mass", 0.5, (0.0, 1.5, _z(sources, 90)), (-5.0, -4.0, _z(sources, 89)),
                  (5.0, 6.0, _z(sources, 91)), MODEL, series_instance_uid=series)
    return [region, point, box]


@pytest.fixture(scope="module")
def measurements(sources):
    z = _z(sources, 60)
    length = LengthMeasurement(np.array([-50.0, 20.0, z]), np.array([-40.0, 25.0, z]))
    roi = EllipseROI(np.array([10.0, 20.0, z]), np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), 8.0, 5.0)
    stats = RoiStats(mean=-700.5, sd=120.25, min=-1000.0, max=40.0, count=321, area_mm2=roi.area_mm2)
    return [length, (roi, stats), EllipseROI(roi.center, roi.axis_a, roi.axis_b, 4.0, 3.0)]


@pytest.fixture(scope="module")
def written(sources, findings, measurements, tmp_path_factory):
    ds = findings_to_sr(findings, measurements, sources, observer=DeviceObserver.for_model(MODEL),
                        series_description="AI findings", label_codes={"Nodule": NODULE})
    path = tmp_path_factory.mktemp("sr") / "sr.dcm"
    ds.save_as(path)
    return ds, path


def _dciodvfy_errors(path):
    if shutil.which("dciodvfy") is None:
        reason = "dciodvfy (dicom3tools) is not installed"
        if os.environ.get("WORKSTATION_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(reason + " (WORKSTATION_REQUIRE_SHARED_DATA=1)")
        pytest.skip(reason)
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def _content(ds):
    """Every content item of the SR tree, depth first."""
    stack = list(ds.ContentSequence)
    while stack:
        item = stack.pop()
        yield item
        stack.extend(item.get("ContentSequence") or [])


def _by_concept(ds, value):
    return [i for i in _content(ds)
            if i.get("ConceptNameCodeSequence") and i.ConceptNameCodeSequence[0].CodeValue == value]


def test_sr_is_a_tid1500_report_that_references_the_sources(written, sources):
    ds, _ = written
    assert ds.SOPClassUID == COMPREHENSIVE_3D_SR and ds.Modality == "SR"
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert ds.SeriesDescription == "AI findings"
    source_uids = {str(s.SOPInstanceUID) for s in sources}
    assert ds.SOPInstanceUID not in source_uids and ds.SeriesInstanceUID != sources[0].SeriesInstanceUID
    assert ds.StudyInstanceUID == sources[0].StudyInstanceUID
    evidence = {str(i.ReferencedSOPInstanceUID) for s in ds.CurrentRequestedProcedureEvidenceSequence
                for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
    assert evidence == source_uids
    images = {str(i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
              for i in _content(ds) if i.ValueType == "IMAGE"}
    assert images and images <= source_uids
    groups = _by_concept(ds, "125007")
    assert len(groups) == 6  # three findings, one length, two ellipses
    finding_types = {i.ConceptCodeSequence[0].CodeValue for i in _by_concept(ds, "121071")}
    assert {"27925004", "404684003"} <= finding_types  # coded label, and the fallback for "Mass"
    centroids = [i for i in _content(ds) if i.ValueType == "SCOORD3D" and i.GraphicType == "POINT"]
    assert len(centroids) == 3
    assert {i.ReferencedFrameOfReferenceUID for i in centroids} == {sources[0].FrameOfReferenceUID}


def test_ai_results_name_the_model_as_observing_device(written):
    ds, _ = written
    device = DeviceObserver.for_model(MODEL)
    assert [i.UID for i in _by_concept(ds, "121012")] == [device.uid]  # Device Observer UID
    assert [i.TextValue for i in _by_concept(ds, "121013")] == ["Lung nodule detector"]  # name
    assert [i.TextValue for i in _by_concept(ds, "121014")] == ["Workstation"]  # manufacturer
    assert [i.TextValue for i in _by_concept(ds, "121015")] == ["lung-nodule-detector 1.2.0"]  # model name
    assert {i.TextValue for i in _by_concept(ds, "111001")} == {"lung-nodule-detector"}  # algorithm name
    assert DeviceObserver.for_model(MODEL).uid == device.uid != DeviceObserver.for_model(Provenance("x", "1")).uid


def test_sr_passes_dciodvfy(written):
    assert _dciodvfy_errors(written[1]) == []


def _assert_same_finding(a: Finding, b: Finding):
    assert (b.kind, b.label, b.uid, b.provenance, b.segment_number, b.series_instance_uid) == \
           (a.kind, a.label, a.uid, a.provenance, a.segment_number, a.series_instance_uid)
    assert b.score == pytest.approx(a.score) and b.volume_mm3 == pytest.approx(a.volume_mm3)
    pairs = ((b.centroid_mm, a.centroid_mm), (b.bbox_min_mm, a.bbox_min_mm), (b.bbox_max_mm, a.bbox_max_mm))
    for got, want in pairs:
        assert got == pytest.approx(want, abs=1e-3)  # SCOORD3D coordinates are 32-bit floats
    assert b.decision == a.decision and b.status is a.status


def test_sr_reads_back_into_the_same_findings_and_measurements(written, findings, measurements):
    back_findings, back_measurements = sr_to_findings(pydicom.dcmread(written[1]))
    assert len(back_findings) == len(findings)
    for a, b in zip(findings, back_findings):
        _assert_same_finding(a, b)
    assert [f.status for f in back_findings] == [Status.ACCEPTED, Status.REJECTED, Status.PENDING]
    length, (roi, stats), bare = back_measurements
    assert isinstance(length, LengthMeasurement)
    assert length.length_mm == pytest.approx(measurements[0].length_mm, abs=1e-4)
    assert np.allclose(length.p0, measurements[0].p0, atol=1e-3)
    assert np.allclose(length.p1, measurements[0].p1, atol=1e-3)
    want_roi, want_stats = measurements[1]
    assert np.allclose(roi.center, want_roi.center, atol=1e-3) and roi.radius_a_mm == pytest.approx(8.0, abs=1e-4)
    assert abs(float(np.dot(roi.axis_a, want_roi.axis_a))) == pytest.approx(1.0)
    assert roi.radius_b_mm == pytest.approx(5.0, abs=1e-4)
    assert (stats.mean, stats.sd, stats.min, stats.max, stats.count) == (want_stats.mean, want_stats.sd, want_stats.min,
                                                                        want_stats.max, want_stats.count)
    assert stats.area_mm2 == pytest.approx(want_stats.area_mm2)
    assert isinstance(bare, EllipseROI) and bare.area_mm2 == pytest.approx(measurements[2].area_mm2, rel=1e-5)


def test_revisions_chain_through_predecessor_documents(written, sources, tmp_path):
    first = pydicom.dcmread(written[1])
    findings, measurements = sr_to_findings(first)
    findings[2] = findings[2].accept("Smith^Jane", WHEN)
    second = findings_to_sr(findings, measurements, sources, observer="Smith^Jane", predecessor=first)
    third = findings_to_sr(findings, measurements, sources, observer="Smith^Jane", predecessor=second)
    for new, old in ((second, first), (third, second)):
        ref = new.PredecessorDocumentsSequence[0]
        assert ref.StudyInstanceUID == old.StudyInstanceUID
        assert ref.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == old.SOPInstanceUID
        assert new.SOPInstanceUID != old.SOPInstanceUID and new.SeriesInstanceUID == old.SeriesInstanceUID
        assert int(new.InstanceNumber) == int(old.InstanceNumber) + 1
    path = tmp_path / "revision.dcm"
    third.save_as(path)
    assert _dciodvfy_errors(path) == []
    assert sr_to_findings(pydicom.dcmread(path))[0][2].status is Status.ACCEPTED


def test_a_person_observer_is_named_and_owns_their_findings(sources, tmp_path):
    person = Provenance("Smith^Jane", "")
    z = _z(sources, 40)
    mine = Finding(FindingKind.POINT, "Nodule", 1.0, (1.0, 2.0, z), (1.0, 2.0, z), (1.0, 2.0, z), person,
                   series_instance_uid=str(sources[0].SeriesInstanceUID))
    ds = findings_to_sr([mine], [], sources, observer="Smith^Jane", series_description="Annotations")
    assert [str(i.PersonName) for i in _by_concept(ds, "121008")] == ["Smith^Jane"]
    assert _by_concept(ds, "121012") == [] and _by_concept(ds, "111001") == []  # no device, no algorithm
    path = tmp_path / "person.dcm"
    ds.save_as(path)
    assert _dciodvfy_errors(path) == []
    (back,), measurements = sr_to_findings(pydicom.dcmread(path))
    assert measurements == []
    _assert_same_finding(mine, back)


def test_bad_input_gets_a_clear_error(sources, written):
    with pytest.raises(SrError, match="source images"):
        findings_to_sr([], [], [], observer="Smith^Jane")
    with pytest.raises(SrError, match="observer"):
        findings_to_sr([], [], sources[:2], observer="")
    with pytest.raises(SrError, match="cannot store"):
        findings_to_sr([], ["not a measurement"], sources[:2], observer="Smith^Jane")
    with pytest.raises(SrError, match="not a structured report"):
        sr_to_findings(sources[0])
    other = pydicom.dcmread(written[1])
    other.ContentTemplateSequence[0].TemplateIdentifier = "2000"
    with pytest.raises(SrError, match="unknown template"):
        sr_to_findings(other)
