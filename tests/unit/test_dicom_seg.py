"""LabelMap -> DICOM SEG -> LabelMap on the real 7T MR head; the SEG passes dciodvfy with no errors."""

import shutil
import subprocess

import numpy as np
import pytest

from tests.shared_data import shared_case
from workstation.dicom.seg import SegError, labelmap_onto_grid, labelmap_to_seg, read_seg, read_source_headers
from workstation.model.labelmap import Algorithm, AlgorithmType, Code, LabelMap, Segment

TISSUE = Code("85756007", "SCT", "Tissue")
ALG = Algorithm("brainchop-tissue", "1.0.0", AlgorithmType.AUTOMATIC)
SEGMENTS = (Segment(1, "White matter", (255, 255, 255), TISSUE, Code("68523003", "SCT", "Cerebral White Matter"), ALG),
            Segment(2, "Grey matter", (205, 62, 78), TISSUE, Code("40146001", "SCT", "Cerebral Grey Matter"), ALG))


@pytest.fixture(scope="module")
def mr_head():
    from workstation.dicom.series import examine, load_volume

    plans, _ = examine([shared_case("mr-head-t1-7t") / "dicom"])
    return plans[0], load_volume(plans[0])


@pytest.fixture(scope="module")
def written(mr_head, tmp_path_factory):
    plan, volume = mr_head
    labels = np.zeros(volume.shape, np.uint8)
    labels[150:200, 100:200, 80:180] = 1
    labels[170:190, 120:140, 100:120] = 2
    labelmap = LabelMap.on_grid_of(volume, labels, SEGMENTS)
    sources = read_source_headers(plan.files)
    ds = labelmap_to_seg(labelmap, sources)
    path = tmp_path_factory.mktemp("seg") / "seg.dcm"
    ds.save_as(path)
    return labelmap, sources, ds, path


def test_seg_references_sources_and_names_the_algorithm(written, mr_head):
    _, volume = mr_head
    labelmap, sources, ds, _ = written
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    referenced = {item.ReferencedSOPInstanceUID for s in ds.ReferencedSeriesSequence for item in s.ReferencedInstanceSequence}
    assert referenced == set(volume.info.source_sop_instance_uids) and len(referenced) == len(sources)
    for item in ds.SegmentSequence:
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        assert item.SegmentAlgorithmName == "brainchop-tissue"
        assert item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == "1.0.0"


def test_seg_reads_back_into_the_same_labelmap(written, mr_head):
    _, volume = mr_head
    labelmap, _, _, path = written
    back = read_seg(path)
    assert back.segments == labelmap.segments
    assert back.frame_of_reference_uid == volume.info.frame_of_reference_uid
    assert back.source_series_uid == volume.info.series_instance_uid
    assert np.array_equal(labelmap_onto_grid(back, volume.shape, volume.affine), labelmap.labels)


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed")
def test_seg_passes_dciodvfy(written):
    out = subprocess.run(["dciodvfy", str(written[3])], capture_output=True, text=True, timeout=120)
    errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
    assert errors == []


def test_empty_or_undescribed_labelmaps_are_refused(mr_head):
    plan, volume = mr_head
    sources = read_source_headers(plan.files[:2])
    with pytest.raises(SegError, match="empty"):
        labelmap_to_seg(LabelMap.on_grid_of(volume, np.zeros(volume.shape, np.uint8), SEGMENTS), sources)
    labels = np.zeros(volume.shape, np.uint8)
    labels[0, 0, 0] = 7
    with pytest.raises(SegError, match=r"\[7\]"):
        labelmap_to_seg(LabelMap.on_grid_of(volume, labels, SEGMENTS), sources)


def test_not_a_seg_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.dcm"
    bad.write_bytes(b"nope")
    with pytest.raises(SegError, match="not a readable DICOM SEG"):
        read_seg(bad)
