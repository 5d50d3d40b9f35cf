"""The retrieval fast paths written by hand: DIMSE command sets and file meta headers as pynetdicom and
pydicom would encode them, C-FIND answers read without pydicom, multipart parts read by their
Content-Length, and instance files written in pieces."""

from __future__ import annotations

import os
from io import BytesIO
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.dsutils import create_file_meta, encode, encode_file_meta

from tests.shared_data import shared_case
from workstation.archive import cache as cache_mod
from workstation.archive._dimse_raw import _pdata, encode_command, file_meta, parse_command
from workstation.archive._dimse_retrieve import spots_of, spots_of_raw
from workstation.archive._wado import HEAD, MultipartReader, iter_parts, read_parts, spot_of
from workstation.archive.cache import CacheIndex
from workstation.archive.client import ArchiveError


@pytest.mark.parametrize("sop", ["1.2.3.4", "1.2.826.0.1.3680043.2.1125.77"])  # odd and even lengths
@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, "1.2.840.10008.1.2.4.70"])
def test_file_meta_is_what_pynetdicom_writes(sop, syntax):
    meta = create_file_meta(sop_class_uid="1.2.840.10008.5.1.4.1.1.4", sop_instance_uid=sop,
                            transfer_syntax=syntax)
    assert file_meta("1.2.840.10008.5.1.4.1.1.4", sop, syntax) == b"\0" * 128 + b"DICM" + encode_file_meta(meta)


def test_command_sets_encode_as_pydicom_does_and_read_back():
    ds = Dataset()  # a C-STORE response, the message sent once per instance
    ds.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.CommandField = 0x8001
    ds.MessageIDBeingRespondedTo = 7
    ds.CommandDataSetType = 0x0101
    ds.Status = 0xA700
    ds.AffectedSOPInstanceUID = "1.2.3.45"
    body = encode(ds, True, True)
    ds.CommandGroupLength = len(body)
    expected = encode(ds, True, True)
    ours = encode_command([(0x0002, b"1.2.840.10008.5.1.4.1.1.2\0"), (0x0100, (0x8001).to_bytes(2, "little")),
                           (0x0120, (7).to_bytes(2, "little")), (0x0800, (0x0101).to_bytes(2, "little")),
                           (0x0900, (0xA700).to_bytes(2, "little")), (0x1000, b"1.2.3.45")])
    assert ours == expected
    parsed = parse_command(ours)
    assert parsed[0x1000] == b"1.2.3.45" and parsed[0x0900] == b"\x00\xa7" and parsed[0x0000] == (
        len(body)).to_bytes(4, "little")
    with pytest.raises(ArchiveError, match="damaged DIMSE command"):
        parse_command(ours[:-3])


@pytest.mark.parametrize("max_pdu", [0, 16382, 100])
def test_messages_are_cut_to_the_peers_maximum_pdu(max_pdu):
    command, dataset = b"c" * 150, b"d" * 1000
    raw = _pdata(3, command, dataset, max_pdu)
    pos, pieces = 0, []
    while pos < len(raw):
        assert raw[pos] == 0x04
        length = int.from_bytes(raw[pos + 2 : pos + 6], "big")
        assert not max_pdu or 6 + length <= max_pdu
        item = int.from_bytes(raw[pos + 6 : pos + 10], "big")
        assert raw[pos + 10] == 3 and item == length - 4
        pieces.append((raw[pos + 11], raw[pos + 12 : pos + 6 + length]))
        pos += 6 + length
    assert b"".join(p for h, p in pieces if h & 1) == command and b"".join(p for h, p in pieces if not h & 1) == dataset
    assert [h & 2 for h, _ in pieces if h & 1][-1] and [h & 2 for h, _ in pieces if not h & 1][-1]
    assert sum(1 for h, _ in pieces if h & 2) == 2  # one last fragment each


def _answer(sop: str, number: str | None, position: list | None, syntax: str, sequence: bool = False) -> bytes:
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    if sequence:  # an undefined-length sequence before the wanted elements
        item = Dataset()
        item.CodeValue = "T-D3000"
        ds.AnatomicRegionSequence = Sequence([item])
        ds.AnatomicRegionSequence.is_undefined_length = True
        item.is_undefined_length_sequence_item = True
    ds.SOPInstanceUID = sop
    if number is not None:
        ds.InstanceNumber = number
    if position is not None:
        ds.ImagePositionPatient = position
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    implicit = syntax == ImplicitVRLittleEndian
    return encode(ds, implicit, syntax != ExplicitVRBigEndian)


@pytest.mark.filterwarnings("ignore:Invalid value for VR IS")
@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian])
def test_answers_read_without_pydicom_give_what_pydicom_gives(syntax):
    from pydicom.uid import UID
    from pynetdicom.dsutils import decode

    cases = [
        [_answer(f"1.{n}", str(n), [0, 0, -2.5 * n], syntax, sequence=n == 2) for n in range(1, 6)],
        [_answer("1.3", "3", None, syntax), _answer("1.1", "1", [0, 0, 7], syntax), _answer("1.2", " 2 ", None, syntax),
         _answer("", "4", None, syntax), _answer("1.9", "12.0", [0, 0], syntax)],
    ]
    uid = UID(syntax)
    for raws in cases:
        decoded = [decode(BytesIO(r), uid.is_implicit_VR, uid.is_little_endian) for r in raws]
        assert spots_of_raw(raws, uid) == spots_of(decoded)


def _multipart(bodies: list[bytes], boundary: bytes, lengths: list[int | None]) -> bytes:
    out = b"preamble\r\n"
    for body, length in zip(bodies, lengths):
        head = b"Content-Type: application/dicom\r\n" + (b"Content-Length: %d\r\n" % length if length is not None
                                                         else b"")
        out += b"--" + boundary + b"\r\n" + head + b"\r\n" + body + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


@pytest.mark.parametrize("chunk", [1, 5, 4096, 1 << 16, 1 << 30])
def test_parts_with_a_content_length_are_read_whole(chunk):
    files = sorted((shared_case("mr-slice-codecs") / "dicom").iterdir())[:4]
    bodies = [f.read_bytes() for f in files] + [b"", b"--b0undary\r\n inside a part, no harm"]
    lengths = [len(b) for b in bodies]
    lengths[1] = None  # a server may give some parts a length and not others
    message = _multipart(bodies, b"b0undary", lengths)
    chunks = [message[i : i + chunk] for i in range(0, len(message), chunk)]
    assert list(iter_parts(chunks, b"b0undary")) == bodies
    view = memoryview(message)
    pos = 0

    def readinto(into: memoryview) -> int:  # a socket that returns at most `chunk` bytes a call
        nonlocal pos
        n = min(len(into), chunk, len(view) - pos)
        into[:n] = view[pos : pos + n]
        pos += n
        return n

    assert list(read_parts(readinto, b"b0undary")) == bodies
    for size in (64, 1000, 1 << 20):  # read buffers smaller and larger than the parts
        pos, heads, seen = 0, [], []
        reader = MultipartReader(readinto, b"b0undary", size=size)
        while (head := reader.next_part()) is not None:
            heads.append(bytes(head))
            seen.append(b"".join(bytes(piece) for piece in reader.pieces()))  # each valid until the next
        assert seen == bodies
        assert heads == [b[:HEAD] for b in bodies]  # a part's first bytes in one piece, whatever the reads


def test_parts_left_unread_are_skipped_and_pieces_come_from_one_buffer():
    bodies = [b"A" * 300, b"B" * 300, b"C" * 120, b"D" * 5000, b"", b"E" * 40]
    lengths: list[int | None] = [len(b) for b in bodies]
    lengths[3] = None
    message = _multipart(bodies, b"xx", lengths)
    reader = MultipartReader(_small_reads(message), b"xx", size=1024)
    assert bytes(reader.next_part()) == bodies[0]
    assert bytes(reader.next_part()) == bodies[1]  # the first one left unread: skipped
    pieces = reader.pieces()
    assert bytes(next(pieces)) == b"B" * 300
    assert bytes(reader.next_part()) == bodies[2]  # the rest of the second skipped
    assert bytes(reader.next_part()) == bodies[3]  # no length: up to the delimiter (the buffer grew for it)
    pieces = list(reader.pieces())
    assert all(piece.obj is reader._buf for piece in pieces)  # views of the read buffer: no copy per part
    assert b"".join(bytes(piece) for piece in pieces) == bodies[3]
    assert reader.read_all() == bytearray()  # (nothing left of the fourth)
    assert bytes(reader.next_part()) == b"" and reader.read_all() == b""
    assert reader.read_all() == b""
    assert bytes(reader.next_part()) == bodies[5]
    assert reader.next_part() is None and reader.next_part() is None


def _small_reads(message: bytes):
    """``readinto`` over a message, 64 bytes a call at most."""
    view, pos = memoryview(message), 0

    def readinto(into: memoryview) -> int:
        nonlocal pos
        n = min(len(into), 64, len(view) - pos)
        into[:n] = view[pos : pos + n]
        pos += n
        return n

    return readinto


@pytest.mark.parametrize("framing", ["close", "length", "chunked", "gzip"])
def test_a_streamed_body_is_read_as_it_arrives_whatever_its_framing(framing):
    """The body reader over a real HTTP connection (a local server sending the message in small writes with
    a pause): ended by the connection's close (Orthanc's), by a Content-Length, chunked, or gzip-encoded;
    every part whole, each handed over before the message ends."""
    import zlib
    import http.server
    import threading
    import time

    import requests

    from workstation.archive._wado import _body_reader

    bodies = [bytes([n]) * (3000 + 700 * n) for n in range(6)]
    message = _multipart(bodies, b"b0undary", [len(b) for b in bodies])
    if framing == "gzip":
        packer = zlib.compressobj(wbits=31)
        packed = [packer.compress(message[i : i + 1500]) + packer.flush(zlib.Z_SYNC_FLUSH)
                  for i in range(0, len(message), 1500)]
        pieces = [*packed[:-1], packed[-1] + packer.flush()]
    else:
        pieces = [message[i : i + 1500] for i in range(0, len(message), 1500)]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.send_header("Content-Type", 'multipart/related; type="application/dicom"; boundary=b0undary')
            if framing in ("close", "gzip"):
                self.send_header("Connection", "close")
            if framing == "gzip":
                self.send_header("Content-Encoding", "gzip")
            elif framing == "length":
                self.send_header("Content-Length", str(len(message)))
            elif framing == "chunked":
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for n, piece in enumerate(pieces):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if framing == "chunked" else piece)
                self.wfile.flush()
                if n == len(pieces) // 2:
                    time.sleep(0.3)  # the rest comes later
            if framing == "chunked":
                self.wfile.write(b"0\r\n\r\n")
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with requests.get(f"http://127.0.0.1:{server.server_port}/", stream=True, timeout=5) as response:
            reader = MultipartReader(_body_reader(response), b"b0undary")
            seen, times = [], []
            while reader.next_part() is not None:
                seen.append(bytes(reader.read_all()))
                times.append(time.monotonic())
    finally:
        server.shutdown()
        server.server_close()
    assert seen == bodies
    assert times[-1] - times[0] > 0.2  # the first parts were handed over before the pause ended


def test_a_wrong_content_length_or_a_cut_message_is_an_error():
    bodies = [b"A" * 100, b"B" * 50]
    too_short = _multipart(bodies, b"xx", [90, 50])
    with pytest.raises(ArchiveError, match="damaged multipart message"):
        list(iter_parts([too_short], b"xx"))
    whole = _multipart(bodies, b"xx", [100, 50])
    with pytest.raises(ArchiveError, match="ended in the middle of an instance"):
        list(iter_parts([whole[:150]], b"xx"))


def test_spot_of_reads_buffers_as_well_as_bytes():
    body = sorted((shared_case("ct-chest-lidc-0001") / "dicom").iterdir())[3].read_bytes()
    assert spot_of(bytearray(body)) == spot_of(memoryview(body)) == spot_of(body)
    assert spot_of(body).position is not None


def test_instance_files_are_moved_into_place_whole_and_never_cleaned_up_while_written(tmp_path):
    index = CacheIndex(tmp_path)
    cache = index.series_cache("1.2", "1.2.3")
    out = cache.open_instance("1.2.3.4")
    out.write(b"DICM")
    out.write(memoryview(b"x" * 10))
    assert cache.files() == [] and len(list(cache.folder.glob(".*.part"))) == 1
    cache.remove_parts()  # another retrieval cleaning up: the file being written stays
    assert len(list(cache.folder.glob(".*.part"))) == 1
    path, size = out.commit()
    assert path == cache.path_str("1.2.3.4") and size == 14 and Path(path).read_bytes() == b"DICM" + b"x" * 10
    assert not list(cache.folder.glob(".*.part")) and not cache_mod._live_parts
    gone = cache.open_instance("1.2.3.5")
    gone.write(b"partial")
    gone.discard()
    assert cache.files() == [Path(path)] and not list(cache.folder.glob(".*.part")) and not cache_mod._live_parts
    assert os.path.isfile(cache.path_str("1.2.3.4")) and cache.has("1.2.3.4") and not cache.has("1.2.3.5")


def test_temporary_names_are_unique_and_name_their_process(tmp_path):
    cache = CacheIndex(tmp_path).series_cache("1.2", "1.2.3")
    files = [cache.open_instance("1.2.3.4") for _ in range(3)]  # the same instance thrice at once
    names = {Path(f.tmp).name for f in files}
    assert len(names) == 3 and all(cache_mod._part_owner(n) == os.getpid() for n in names)
    for f in files:
        f.write(b"DICM")
        assert f.commit() == (cache.path_str("1.2.3.4"), 4)
    assert cache.files() == [cache.path("1.2.3.4")] and not list(cache.folder.glob(".*.part"))


def test_a_fast_retrieval_is_indexed_once_as_it_completes(tmp_path):
    """Instances written within a second are not indexed one batch at a time: the transaction that marks
    the series complete records them, with their sizes; recording them again afterwards changes nothing."""
    from workstation.archive._wado import Tally

    index = CacheIndex(tmp_path / "cache")
    cache = index.series_cache("1.2", "1.2.3")
    tally = Tally(cache, None, None, fresh=True)
    sizes = {f"1.2.3.{n}": 100 + n for n in range(150)}  # more than two batches
    for sop, size in sizes.items():
        tally.write(sop, b"x" * size)
    assert index.bytes_used() == 0  # nothing recorded yet: one transaction at the end
    order = list(reversed(sizes))
    index.finish("1.2", "1.2.3", order, tally.sizes())
    assert index.bytes_used() == sum(sizes.values()) and index.status().instances == 150
    assert index.complete_files("1.2.3")[1] == cache.paths(order)
    tally.flush()  # nothing is pending any more: the series stays complete
    assert index.complete_files("1.2.3") is not None and index.bytes_used() == sum(sizes.values())


def test_the_pynetdicom_internals_the_socket_takeover_relies_on_are_there():
    """_dimse_raw.taken() pauses pynetdicom's reactor and shadows two DUL steps: an upgrade that renames
    them must fail here, not in a radiologist's retrieval (pyproject pins pynetdicom to 3.0.x for this)."""
    from pynetdicom import AE
    from pynetdicom.association import Association
    from pynetdicom.dul import DULServiceProvider

    assoc = Association(AE(), "requestor")
    for name in ("_reactor_checkpoint", "_is_paused", "dul"):
        assert hasattr(assoc, name), name
    for name in ("_idle_timer", "socket"):
        assert hasattr(assoc.dul, name), name
    for name in ("_process_recv_primitive", "_is_transport_event"):
        assert callable(getattr(DULServiceProvider, name, None)), name
