"""How a DIMSE retrieval is planned: instances in spatial order from C-FIND answers, middle first, in batches."""

from __future__ import annotations

import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from workstation.archive._dimse_retrieve import MAX_LIST, batches, image_query, spots_of
from workstation.archive._order import middle_out


def _answer(sop: str, number: str | None, z: float | None) -> Dataset:
    ds = Dataset()
    ds.SOPInstanceUID = sop
    if number is not None:
        ds.InstanceNumber = number
    if z is not None:
        ds.ImagePositionPatient = [0.0, 0.0, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    return ds


def test_spots_sort_by_position_when_every_instance_has_one():
    # instance numbers run against the positions: the positions win
    answers = [_answer(f"1.{n}", str(n), -2.5 * n) for n in range(1, 6)]
    assert [s.sop_uid for s in spots_of(answers)] == ["1.5", "1.4", "1.3", "1.2", "1.1"]


@pytest.mark.filterwarnings("ignore:Invalid value for VR IS")
def test_spots_fall_back_to_instance_numbers_and_skip_answers_without_uid():
    garbled = _answer("1.9", None, None)  # as a peer might send it: not a number, decoded only when read
    garbled[0x00200013] = RawDataElement(Tag(0x00200013), "IS", 2, b"x ", 0, True, True)
    answers = [_answer("1.3", "3", None), _answer("1.1", "1", 7.0), _answer("1.2", " 2 ", None), garbled,
               _answer("", "4", None)]
    assert [s.sop_uid for s in spots_of(answers)] == ["1.1", "1.2", "1.3", "1.9"]  # no number: last


def test_image_query_asks_for_geometry_unless_told_not_to():
    full, bare = image_query("1.2", "1.2.3"), image_query("1.2", "1.2.3", geometry=False)
    assert full.QueryRetrieveLevel == "IMAGE" and full.SOPInstanceUID == "" and "ImagePositionPatient" in full
    assert "InstanceNumber" in bare and "ImagePositionPatient" not in bare


def test_batches_ask_for_the_middle_alone_then_the_rest():
    uids = [f"1.{n}" for n in range(9)]
    order = [u for u in middle_out(uids)]
    plan = batches(order, whole_series=True)
    assert plan == [["1.4"], order[1:]]
    assert batches(["1.4"], whole_series=False) == [["1.4"]]
    assert batches(order[1:], whole_series=True, first_alone=False) == [order[1:]]  # the middle is in hand
    assert batches([], whole_series=True) == []


def test_batches_of_a_long_series_from_scratch_and_resumed():
    order = [f"1.{n}" for n in range(MAX_LIST * 2 + 10)]
    assert batches(order, whole_series=True) == [order[:1], None]  # the rest: one SERIES-level request
    resumed = batches(order, whole_series=False)  # some were cached: only the missing ones, by list
    assert resumed[0] == order[:1] and all(len(b) <= MAX_LIST for b in resumed[1:])
    assert [u for b in resumed for u in b] == order
