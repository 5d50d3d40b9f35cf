"""The retrieval's fast path: multipart splitting, raw Part 10 header reading, batched cache indexing."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from tests.shared_data import shared_case
from workstation.archive._part10 import header_spot, meta_sop_uid
from workstation.archive._wado import Tally, iter_parts, spot_of
from workstation.archive.cache import CacheIndex
from workstation.archive.client import ArchiveError

CASES = ("ct-chest-lidc-0001", "mr-head-t1-7t", "ct-head-ge-tilt", "mr-slice-codecs", "ct-abdomen-j2k",
         "seg-ct-3slice-dcmqi")


def _expected(ds) -> tuple:
    """What pydicom says: (SOP UID with the file meta first, position, orientation, instance number)."""
    sop = str(ds.file_meta.get("MediaStorageSOPInstanceUID", "")) or str(ds.get("SOPInstanceUID", ""))
    pos, ori = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
    number = ds.get("InstanceNumber")
    return (sop, tuple(float(v) for v in pos) if pos is not None else None,
            tuple(float(v) for v in ori) if ori is not None else None,
            int(number) if number not in (None, "") else None)


def _spot_tuple(spot) -> tuple:
    return spot.sop_uid, spot.position, spot.orientation, spot.instance_number


@pytest.mark.parametrize("case", CASES)
def test_header_walk_agrees_with_pydicom_on_real_files(case):
    files = sorted(p for p in (shared_case(case) / "dicom").rglob("*") if p.is_file())
    walked = 0
    for path in files[:: max(1, len(files) // 40)]:  # about 40 files a case
        body = path.read_bytes()
        ds = dcmread(BytesIO(body), stop_before_pixels=True)
        spot = header_spot(body)
        if spot is None:  # only the syntaxes the walk leaves to pydicom
            assert ds.file_meta.TransferSyntaxUID in (ExplicitVRBigEndian, "1.2.840.10008.1.2.1.99"), path
        else:
            walked += 1
            assert _spot_tuple(spot) == _expected(ds), path
        assert _spot_tuple(spot_of(body)) == _expected(ds), path  # pydicom steps in where the walk cannot
        assert meta_sop_uid(body) == _expected(ds)[0]
    assert walked > 0


def _encoded(syntax: str) -> bytes:
    """A dataset with nested sequences of undefined length before the wanted group 0020 elements."""
    inner = Dataset()
    inner.CodeValue, inner.CodingSchemeDesignator, inner.CodeMeaning = "T-D3000", "SRT", "Chest"
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5.6"
    ref.PurposeOfReferenceCodeSequence = [inner]
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.826.0.1.3680043.2.1125.77"
    ds.ReferencedImageSequence = [ref, Dataset()]
    ds.AnatomicRegionSequence = [inner]
    for seq in (ds.ReferencedImageSequence, ref.PurposeOfReferenceCodeSequence):
        seq.is_undefined_length = True  # as many modalities write them
        for item in seq:
            item.is_undefined_length_sequence_item = True
    ds.InstanceNumber = 17
    ds.ImagePositionPatient = [-12.5, 3, 100.25]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.Rows = ds.Columns = 2
    ds.BitsAllocated = 16
    ds.PixelData = b"\0" * 8
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = syntax
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
def test_header_walk_steps_over_nested_sequences(syntax):
    body = _encoded(syntax)
    assert b"\xff\xff\xff\xff" in body  # pydicom wrote the sequences with undefined length
    assert _spot_tuple(header_spot(body)) == ("1.2.826.0.1.3680043.2.1125.77", (-12.5, 3.0, 100.25),
                                              (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), 17)


def test_damaged_or_foreign_bytes_give_no_spot():
    body = _encoded(ExplicitVRLittleEndian)
    assert header_spot(_encoded(ExplicitVRBigEndian)) is None  # left to pydicom
    assert spot_of(_encoded(ExplicitVRBigEndian)).sop_uid == "1.2.826.0.1.3680043.2.1125.77"
    cut = body.index(b"\xfe\xff\x00\xe0") + 20  # inside the first sequence item
    for bad in (b"", b"\0" * 132, b"not dicom at all" * 20, body[:140], body[:cut]):
        assert header_spot(bad) is None
    assert spot_of(b"not dicom at all" * 20).sop_uid == ""
    assert meta_sop_uid(body.replace(b"1.2.826.0.1.3680043.2.1125.77", b"1.2.826.0.1.3680043.2.1125.X7", 1)) == ""


def _multipart(bodies: list[bytes], boundary: bytes) -> bytes:
    out = b"".join(b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n" + b + b"\r\n" for b in bodies)
    return out + b"--" + boundary + b"--\r\n"


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20, 1 << 30])
def test_multipart_split_whatever_the_chunking(chunk):
    files = sorted((shared_case("mr-slice-codecs") / "dicom").iterdir())[:4]
    bodies = [f.read_bytes() for f in files] + [b"", b"--not-the-boundary\r\n"]
    message = _multipart(bodies, b"b0undary")
    chunks = (message[i : i + chunk] for i in range(0, len(message), chunk))
    assert list(iter_parts(chunks, b"b0undary")) == bodies
    with pytest.raises(ArchiveError, match="ended in the middle of an instance"):
        list(iter_parts(iter([message[: len(message) // 2]]), b"b0undary"))


def test_batched_index_is_completed_from_the_files(tmp_path):
    """Instances written but not yet indexed (the process died before a batch was recorded) are indexed
    with their real sizes when the series completes; a flush records them before that."""
    index = CacheIndex(tmp_path / "cache")
    cache = index.series_cache("1.2", "1.2.3")
    tally = Tally(cache, None, None)
    tally.index_interval = 0  # a batch as soon as it is full (else at most one a second)
    sizes = {f"1.2.3.{n}": 100 + n for n in range(70)}  # more than one batch
    for sop, size in sizes.items():
        tally.write(sop, b"x" * size)
    assert 0 < index.bytes_used() < sum(sizes.values())  # one batch recorded, the rest pending
    index.mark_complete("1.2", "1.2.3", list(sizes))  # as if the pending ones were lost with a crash
    assert index.bytes_used() == sum(sizes.values())
    assert [Path(p).name for p in index.complete_files("1.2.3")[1]] == [f"{s}.dcm" for s in sizes]
    tally.flush()  # recording again changes nothing
    assert index.bytes_used() == sum(sizes.values()) and index.status().instances == 70


class _StreamedResponse:
    """What ``requests`` gives ``stream_series``: a multipart body read in chunks (no raw socket to read)."""

    def __init__(self, message: bytes, boundary: bytes) -> None:
        self.headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary.decode()}'}
        self.raw, self._message = None, message

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def raise_for_status(self) -> None:
        pass

    def iter_content(self, size: int):
        return (self._message[i : i + 5000] for i in range(0, len(self._message), 5000))


class _Session:
    def __init__(self, response: _StreamedResponse) -> None:
        self.response = response

    def get(self, url, **kwargs) -> _StreamedResponse:
        return self.response


def test_streamed_instances_are_named_by_their_file_meta_in_the_order_they_came(tmp_path):
    """The stream names each instance from its meta group (the MR head in reverse order stays reversed:
    the loader orders slices); a part without a meta group is named by pydicom, one that is not DICOM is
    counted, not written."""
    from workstation.archive._wado import stream_series

    files = sorted((shared_case("mr-head-t1-7t") / "dicom").iterdir())[:5][::-1]
    bodies = [f.read_bytes() for f in files]
    bare = DicomBytesIO()  # the dataset alone: no preamble, no meta group
    bare.is_little_endian, bare.is_implicit_VR = True, True
    write_dataset(bare, dcmread(BytesIO(bodies[2])))
    assert meta_sop_uid(bare.getvalue()) == ""
    parts = [bodies[0], bodies[1], bare.getvalue(), bodies[3], b"not dicom at all" * 20, bodies[4]]
    index = CacheIndex(tmp_path / "cache")
    tally = Tally(index.series_cache("1.2", "1.2.3"), None, None, fresh=True)
    stream_series(_Session(_StreamedResponse(_multipart(parts, b"b0undary"), b"b0undary")), "url", "*", 5.0, tally)
    expected = [str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    assert list(tally.arrived) == expected and tally.unnamed == 1
    written = {p.stem: p.read_bytes() for p in tally.cache.files()}
    assert set(written) == set(expected)
    assert written[expected[0]] == bodies[0] and written[expected[2]] == bare.getvalue()
