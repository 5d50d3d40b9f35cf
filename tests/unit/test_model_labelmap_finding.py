"""LabelMap and Finding: the model objects AI results become (numpy only)."""

import numpy as np
import pytest

from workstation.model.finding import Finding, FindingKind, Provenance, Status
from workstation.model.labelmap import Algorithm, AlgorithmType, Code, LabelMap, Segment
from workstation.model.volume import Volume, VolumeInfo

TISSUE = Code("85756007", "SCT", "Tissue")
WM = Code("68523003", "SCT", "Cerebral White Matter")


def _volume():
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    return Volume(np.zeros((4, 5, 6), np.int16), affine, VolumeInfo(frame_of_reference_uid="1.2.3", series_instance_uid="1.2.4"))


def test_labelmap_on_grid_counts_and_volume():
    vol = _volume()
    labels = np.zeros(vol.shape, np.uint8)
    labels[1:3, 1:3, 1:3] = 1
    seg = Segment(1, "White matter", (255, 255, 255), TISSUE, WM, Algorithm("brainchop-tissue", "1.0"))
    lm = LabelMap.on_grid_of(vol, labels, (seg,))
    assert lm.is_on_grid_of(vol)
    assert lm.frame_of_reference_uid == "1.2.3" and lm.source_series_uid == "1.2.4"
    assert lm.counts() == {1: 8}
    assert lm.volume_mm3(1) == pytest.approx(8 * 0.5)
    assert lm.segment(1).algorithm.type is AlgorithmType.AUTOMATIC
    with pytest.raises(KeyError):
        lm.segment(2)


def test_labelmap_rejects_bad_input():
    vol = _volume()
    seg = Segment(1, "a", (1, 2, 3), TISSUE, WM)
    with pytest.raises(ValueError, match="grid"):
        LabelMap.on_grid_of(vol, np.zeros((1, 2, 3), np.uint8), (seg,))
    with pytest.raises(ValueError, match="unsigned"):
        LabelMap(np.zeros(vol.shape, np.float32), vol.affine, (seg,))
    with pytest.raises(ValueError, match="unique"):
        LabelMap(np.zeros(vol.shape, np.uint8), vol.affine, (seg, seg))
    with pytest.raises(ValueError, match="colour"):
        Segment(1, "a", (1, 2, 300), TISSUE, WM)


def test_finding_decisions_record_who_and_when():
    f = Finding(FindingKind.REGION, "White matter", 0.9, (0, 0, 0), (-1, -1, -1), (1, 2, 3),
                Provenance("brainchop-tissue", "1.0"), volume_mm3=5.0)
    assert f.status is Status.PENDING and f.size_mm == (2, 3, 4)
    a = f.accept("alice")
    assert a.status is Status.ACCEPTED and a.decision.by == "alice" and a.decision.at is not None
    assert f.status is Status.PENDING  # immutable: the old finding is unchanged
    assert a.reject("bob").status is Status.REJECTED
    assert a.reopen().status is Status.PENDING
    with pytest.raises(ValueError):
        f.accept("")
    with pytest.raises(ValueError, match="score"):
        Finding(FindingKind.POINT, "x", 1.5, (0, 0, 0), (0, 0, 0), (0, 0, 0), Provenance("m", "1"))
