"""Annotation sets: revisions per annotator (SEG + SR), listed and loaded back from an archive.

Runs on the embedded archive with the 3-slice CT of dcmqi and its third-party SEGs (real data); the same
functions run against a real Orthanc in tests/integration/test_annotation_sets.py.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from tests.shared_data import shared_case
from workstation.archive.local import LocalArchive
from workstation.dicom.seg import SegError, read_seg, read_seg_layers, read_source_headers
from workstation.labels.annotation_sets import (
    AnnotationSetError,
    list_sets,
    load_set,
    save_revision,
)
from workstation.labels.schema import load_schema
from workstation.model.finding import Finding, FindingKind, Provenance
from workstation.model.labelmap import LabelMap
from workstation.model.measurement import LengthMeasurement

SCHEMA = load_schema("lung-nodule")


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    """The dcmqi 3-slice CT in a fresh local archive, loaded as a Volume, with its headers."""
    from workstation.dicom.series import load_series

    folder = shared_case("seg-ct-3slice-dcmqi")
    files = sorted((folder / "dicom").glob("*.dcm"))
    archive = LocalArchive(tmp_path_factory.mktemp("archive"))
    archive.store(files)
    (volume,) = load_series(files)
    return folder, archive, volume, read_source_headers(files)


def _labelmap(volume, shift: int = 0) -> LabelMap:
    labels = np.zeros(volume.shape, np.uint8)
    labels[0:2, 200 + shift:260 + shift, 150:230] = 1  # nodule
    labels[:, 300:420, 100:400] = 2  # lung
    return LabelMap.on_grid_of(volume, labels, SCHEMA.model_segments())


def _finding(volume, annotator: str, kind=FindingKind.REGION) -> Finding:
    centre = tuple(float(v) for v in volume.index_to_lps(np.array([[190.0, 230.0, 1.0]]))[0])
    lo = tuple(c - 10 for c in centre)
    hi = tuple(c + 10 for c in centre)
    return Finding(kind=kind, label="Lung nodule", score=1.0, centroid_mm=centre, bbox_min_mm=lo, bbox_max_mm=hi,
                   provenance=Provenance(annotator, ""), volume_mm3=120.0, segment_number=1,
                   series_instance_uid=volume.info.series_instance_uid)


ATTRS = {"nodule_type": "part-solid", "subtlety": 4, "malignancy": 5, "texture": 3}


@pytest.fixture(scope="module")
def saved(ct, tmp_path_factory):
    """Alice saves twice (the second with a box finding too), Bob once; every object stored in the archive."""
    _, archive, volume, sources = ct
    out = tmp_path_factory.mktemp("saved")
    written = {}

    def save(name, annotator, labelmap, findings, attrs, previous=None):
        seg, sr = save_revision(sources, annotator=annotator, set_name="Nodules", labelmap=labelmap,
                                findings=findings, measurements=[LengthMeasurement(
                                    np.array(findings[0].bbox_min_mm), np.array(findings[0].bbox_max_mm))],
                                attributes=attrs, previous=previous)
        paths = [out / f"{name}-seg.dcm", out / f"{name}-sr.dcm"]
        seg.save_as(paths[0], enforce_file_format=True)
        sr.save_as(paths[1], enforce_file_format=True)
        archive.store(paths)
        written[name] = (seg, sr, paths)

    f1 = _finding(volume, "Alice^A")
    save("alice-1", "Alice^A", _labelmap(volume), [f1], {f1.uid: ATTRS})
    (alice,) = [s for s in list_sets(archive, volume.info.study_instance_uid) if s.annotator == "Alice^A"]
    f2 = _finding(volume, "Alice^A", FindingKind.BOX).accept("Alice^A")
    save("alice-2", "Alice^A", _labelmap(volume, shift=5), [f1, f2], {f1.uid: ATTRS, f2.uid: {"nodule_type": "solid"}},
         previous=alice)
    fb = _finding(volume, "Bob^B", FindingKind.POINT)
    save("bob-1", "Bob^B", _labelmap(volume, shift=-5), [fb], {fb.uid: {"nodule_type": "ground-glass"}})
    return written


def test_each_save_is_a_new_revision_and_annotators_get_separate_sets(ct, saved):
    _, archive, volume, _ = ct
    sets = list_sets(archive, volume.info.study_instance_uid)
    assert [(s.annotator, s.name, s.revision) for s in sets] == [
        ("Alice^A", "Nodules (Alice^A)", 2), ("Bob^B", "Nodules (Bob^B)", 1)]
    alice, bob = sets
    assert [r.revision for r in alice.seg] == [1, 2] and [r.revision for r in alice.sr] == [1, 2]
    seg1, sr1, _ = saved["alice-1"]
    seg2, sr2, _ = saved["alice-2"]
    uids = {str(d.SOPInstanceUID) for name in saved for d in saved[name][:2]}
    assert len(uids) == 6  # every save a new instance
    assert seg2.SeriesInstanceUID == seg1.SeriesInstanceUID != saved["bob-1"][0].SeriesInstanceUID
    assert sr2.SeriesInstanceUID == sr1.SeriesInstanceUID != saved["bob-1"][1].SeriesInstanceUID
    assert str(seg2.ContentCreatorName) == "Alice^A" and seg2.ContentLabel == "ALICE_A"
    pred = sr2.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert pred.ReferencedSOPInstanceUID == sr1.SOPInstanceUID
    assert alice.date and bob.seg[0].annotator == "Bob^B" and bob.sr[0].annotator == "Bob^B"


def test_another_annotators_set_is_never_continued(ct, saved):
    _, archive, volume, sources = ct
    alice = list_sets(archive, volume.info.study_instance_uid)[0]
    with pytest.raises(AnnotationSetError, match="belongs to 'Alice\\^A'"):
        save_revision(sources, annotator="Bob^B", set_name="Nodules", labelmap=_labelmap(volume), previous=alice)


def test_revisions_load_back_identical_with_findings_and_attributes(ct, saved):
    _, archive, volume, _ = ct
    alice = list_sets(archive, volume.info.study_instance_uid)[0]
    first = load_set(archive, alice, revision=1)
    latest = load_set(archive, alice)
    assert first.volume.shape == volume.shape and np.allclose(first.volume.affine, volume.affine)
    assert np.array_equal(first.layers[0].labels, _labelmap(volume).labels)
    assert np.array_equal(latest.layers[0].labels, _labelmap(volume, shift=5).labels)
    assert [s.name for s in latest.layers[0].segments] == ["Lung nodule", "Lung"]
    assert [f.kind for f in latest.findings] == [FindingKind.REGION, FindingKind.BOX]
    by_uid = latest.attributes
    assert sorted(by_uid.values(), key=len) == [{"nodule_type": "solid"}, ATTRS]
    assert latest.findings[0].provenance.model_id == "Alice^A"  # the annotator as person observer
    assert len(latest.measurements) == 1 and latest.review_state == "unreviewed"
    assert first.seg_revision.revision == 1 and latest.sr_revision.revision == 2
    missing = [k for f in latest.findings for k in SCHEMA.missing_attributes("Lung nodule", by_uid[f.uid])]
    assert "malignancy" in missing  # the second finding lacks the required attributes: reported, not invented


def test_labelmap_seg_reads_back_identical_to_binary(ct, tmp_path):
    _, _, volume, sources = ct
    from workstation.dicom.seg import labelmap_onto_grid

    labelmap = _labelmap(volume)
    back = {}
    for kind in ("BINARY", "LABELMAP"):
        seg, _ = save_revision(sources, annotator="Alice^A", set_name="Nodules", labelmap=labelmap,
                               segmentation_type=kind)
        assert seg.SegmentationType == kind
        seg.save_as(tmp_path / f"{kind}.dcm", enforce_file_format=True)
        got = read_seg(tmp_path / f"{kind}.dcm")
        back[kind] = labelmap_onto_grid(got, volume.shape, volume.affine)
        assert [s.name for s in got.segments] == ["Lung nodule", "Lung"]
    assert np.array_equal(back["BINARY"], labelmap.labels) and np.array_equal(back["LABELMAP"], labelmap.labels)


def _dciodvfy_errors(path) -> list[str]:
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed")
def test_revisions_pass_dciodvfy(saved):
    for name in ("alice-1", "alice-2", "bob-1"):
        for path in saved[name][2]:
            assert _dciodvfy_errors(path) == [], path.name


# -- third-party SEGs ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dcmqi_sets(ct):
    folder, archive, volume, _ = ct
    archive.store([folder / "liver.dcm", folder / "partial_overlaps.dcm"])
    return {s.name: s for s in list_sets(archive, volume.info.study_instance_uid) if s.seg and not s.sr}


def test_dcmqi_liver_reads_voxel_exact_onto_its_ct(ct, dcmqi_sets):
    import SimpleITK as sitk

    folder, archive, volume, _ = ct
    liver = dcmqi_sets["Liver Segmentation"]
    loaded = load_set(archive, liver)
    (layer,) = loaded.layers
    assert layer.is_on_grid_of(volume) and [s.name for s in layer.segments] == ["Liver"]
    image = sitk.ReadImage(str(folder / "liver_seg.nrrd"))  # SimpleITK: LPS physical space
    mask = sitk.GetArrayFromImage(image) > 0  # [k, j, i]
    kji = np.argwhere(mask)
    lps = np.array([image.TransformContinuousIndexToPhysicalPoint([float(i), float(j), float(k)])
                    for k, j, i in kji])
    ijk = np.rint(volume.lps_to_index(lps)).astype(int)
    expected = np.zeros(volume.shape, bool)
    expected[ijk[:, 2], ijk[:, 1], ijk[:, 0]] = True
    assert np.array_equal(layer.labels == 1, expected) and expected.sum() == mask.sum() > 0


def test_overlapping_segments_are_layers_never_merged(ct, dcmqi_sets):
    folder, archive, volume, _ = ct
    with pytest.raises(SegError, match=r"segments overlap \(1 and 2"):
        read_seg(folder / "partial_overlaps.dcm")
    overlaps = dcmqi_sets["Segmentation"]  # its content creator is "Slicer"
    assert overlaps.annotator == "Slicer"
    loaded = load_set(archive, overlaps)
    assert len(loaded.layers) > 1
    numbers = [s.number for layer in loaded.layers for s in layer.segments]
    assert sorted(numbers) == [1, 2, 3, 4, 5]
    seg = pydicom.dcmread(folder / "partial_overlaps.dcm")
    frames = seg.pixel_array.astype(bool)
    per_segment = {}
    for n, fg in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(fg.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        per_segment[number] = per_segment.get(number, 0) + int(frames[n].sum())
    for layer in loaded.layers:  # every segment keeps every one of its voxels
        for s in layer.segments:
            assert int((layer.labels == s.number).sum()) == per_segment[s.number]


def test_sparse_labelmap_segs_read_alike(ct):
    folder = ct[0]
    a, b = (read_seg(folder / f"sparse-labelmap-{n}.dcm") for n in ("noppv", "ppv5"))
    assert np.array_equal(a.labels, b.labels) and np.allclose(a.affine, b.affine)
    assert [s.name for s in a.segments] == ["Liver"] and a.counts()[1] > 0
    assert len(read_seg_layers(folder / "sparse-labelmap-noppv.dcm")) == 1


def test_seg_of_images_not_in_the_study_is_refused(ct, tmp_path):
    folder, archive, volume, _ = ct
    seg = pydicom.dcmread(folder / "liver.dcm")
    seg.SOPInstanceUID = pydicom.uid.generate_uid()
    seg.SeriesInstanceUID = pydicom.uid.generate_uid()
    seg.SeriesDescription = "Foreign"
    for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence:
        item.ReferencedSOPInstanceUID = pydicom.uid.generate_uid()
    seg.save_as(tmp_path / "foreign.dcm")
    archive.store([tmp_path / "foreign.dcm"])
    foreign = next(s for s in list_sets(archive, volume.info.study_instance_uid) if s.name == "Foreign")
    with pytest.raises(AnnotationSetError, match="3 of the 3 images the SEG references are not in series"):
        load_set(archive, foreign)
    seg.ReferencedSeriesSequence[0].SeriesInstanceUID = "1.2.3.4"
    seg.SOPInstanceUID = pydicom.uid.generate_uid()
    seg.SeriesDescription = "Elsewhere"
    seg.save_as(tmp_path / "elsewhere.dcm")
    archive.store([tmp_path / "elsewhere.dcm"])
    elsewhere = next(s for s in list_sets(archive, volume.info.study_instance_uid) if s.name == "Elsewhere")
    with pytest.raises(AnnotationSetError, match="image series 1.2.3.4, which is not in study"):
        load_set(archive, elsewhere)


def test_sr_of_an_unknown_template_is_refused(ct, saved, tmp_path):
    _, archive, volume, _ = ct
    sr = pydicom.dcmread(saved["bob-1"][2][1])
    sr.ContentTemplateSequence[0].TemplateIdentifier = "2000"
    sr.SOPInstanceUID = pydicom.uid.generate_uid()
    sr.SeriesInstanceUID = pydicom.uid.generate_uid()
    sr.SeriesDescription = "Mammo report"
    sr.save_as(tmp_path / "other.dcm")
    archive.store([tmp_path / "other.dcm"])
    other = next(s for s in list_sets(archive, volume.info.study_instance_uid) if s.name == "Mammo report")
    with pytest.raises(AnnotationSetError, match="unknown template"):
        load_set(archive, other)


# -- review state, pending revisions, opening as an annotation -----------------------------------------------
def test_review_state_counts_edited_findings_as_accepted(ct):
    from workstation.labels.annotation_sets import review_state

    volume = ct[2]
    f = _finding(volume, "Alice^A")
    assert review_state([f]) == "unreviewed" and review_state([]) == "unreviewed"
    edited = f.edit("Rev^R", label="Lung nodule (edited)")
    assert review_state([edited, f.accept("Rev^R")]) == "approved"
    assert review_state([edited, f.reject("Rev^R")]) == "rejected"
    assert review_state([edited, f]) == "unreviewed"


def test_revisions_not_yet_in_the_archive_count_and_one_part_names_group(ct, saved, tmp_path):
    from workstation.labels.annotation_save import own_set

    _, archive, volume, sources = ct
    study = volume.info.study_instance_uid
    seg, sr = save_revision(sources, annotator="carol", set_name="Nodules", labelmap=_labelmap(volume),
                            findings=[_finding(volume, "carol")])
    assert str(seg.ContentCreatorName) == "carol^"  # a one-part DICOM person name
    pending = [tmp_path / "seg.dcm", tmp_path / "sr.dcm"]
    seg.save_as(pending[0], enforce_file_format=True)
    sr.save_as(pending[1], enforce_file_format=True)
    sets = list_sets(archive, study, extra_paths=pending)  # still in the outbox, not in the archive
    carol = own_set(sets, "carol", "Nodules")
    assert carol is not None and carol.annotator == "carol" and carol.name == "Nodules (carol)"
    assert len(carol.seg) == len(carol.sr) == 1  # SEG and SR in one set despite "carol^" in the files
    assert own_set(sets, "carol^", "Nodules") is carol and own_set(sets, "dave", "Nodules") is None
    seg2, sr2 = save_revision(sources, annotator="carol", set_name="Nodules", labelmap=_labelmap(volume, 3),
                              previous=carol)
    assert seg2.InstanceNumber == 2 and seg2.SeriesInstanceUID == seg.SeriesInstanceUID and sr2 is None
    archive.store([pending[0]])  # once sent, the archive's copy and the pending one are one revision
    again = own_set(list_sets(archive, study, extra_paths=pending), "carol", "Nodules")
    assert [r.revision for r in again.seg] == [1]
    other_study = list_sets(None, "1.2.3", extra_paths=pending)
    assert other_study == []


def test_a_loaded_revision_becomes_an_editable_annotation(ct, saved):
    from workstation.labels.annotation_save import annotation_findings, annotation_from_set
    from workstation.model.annotation import MarkKind

    _, archive, volume, _ = ct
    alice = next(s for s in list_sets(archive, volume.info.study_instance_uid) if s.name == "Nodules (Alice^A)")
    loaded = load_set(archive, alice)
    doc = annotation_from_set(loaded, volume, annotator="Bob^B", base_segments=SCHEMA.model_segments(),
                              schema=SCHEMA.name)
    assert doc.annotator == "Bob^B" and [s.name for s in doc.segments] == ["Lung nodule", "Lung"]
    assert np.array_equal(doc.labels, _labelmap(volume, shift=5).labels)
    assert [m.kind for m in doc.marks] == [MarkKind.BOX_3D] and doc.marks[0].segment == 1
    assert doc.attributes == {1: ATTRS}  # the region's attributes, not the box's
    box = next(f for f in annotation_findings(doc) if f.kind is FindingKind.BOX)
    original = next(f for f in loaded.findings if f.kind is FindingKind.BOX)
    assert box.uid == original.uid  # the same tracking UID in the next revision
    spacing = np.abs(np.diag(volume.affine)[:3])
    k, j, i = volume.shape  # the box reaches beyond the 3-slice grid: the mark is clipped to it
    ends = volume.index_to_lps(np.array([[0, 0, 0], [i - 1, j - 1, k - 1]], float))
    low, high = ends.min(0), ends.max(0)
    assert np.allclose(box.bbox_min_mm, np.clip(original.bbox_min_mm, low, high), atol=spacing.max())
    assert np.allclose(box.bbox_max_mm, np.clip(original.bbox_max_mm, low, high), atol=spacing.max())
    other = SCHEMA.model_segments()[:1]  # a schema without "Lung": it joins under a free number
    doc = annotation_from_set(loaded, volume, annotator="Bob^B", base_segments=other)
    lung = next(s for s in doc.segments if s.name == "Lung")
    assert lung.number == 2 and np.array_equal(doc.labels == 2, _labelmap(volume, 5).labels == 2)
    with pytest.raises(AnnotationSetError, match="no layer 3"):
        annotation_from_set(loaded, volume, annotator="Bob^B", layer=2)
    import dataclasses

    sr_only = dataclasses.replace(loaded, volume=None, layers=())  # an SR without a SEG: marks and attributes
    doc = annotation_from_set(sr_only, volume, annotator="Bob^B", base_segments=SCHEMA.model_segments())
    assert not doc.labels.any() and [m.kind for m in doc.marks] == [MarkKind.BOX_3D] and doc.attributes == {1: ATTRS}
