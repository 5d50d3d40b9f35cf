"""C-GET and C-FIND driven straight on the socket of an association pynetdicom negotiated.

pynetdicom moves every PDU through two threads that poll with 1 ms sleeps, decodes each command set and
dataset with pydicom, and answers each C-STORE through the same queues.  A C-GET is one round trip per
instance (the archive sends the next only after our C-STORE response), so those sleeps and decodes, ~5 ms
an instance, made a series arrive 4-5 times slower than with dcmtk's getscu; a C-FIND of a long series
spent as long in them.

Here pynetdicom still opens, negotiates (presentation contexts, SCP role), releases and aborts the
association; for each C-GET or C-FIND its two threads are parked (:func:`taken`) and one loop reads the
PDUs, writes each dataset fragment of a C-STORE to the cache file as it arrives (behind a file meta header
built from the command: nothing is decoded), and answers each C-STORE with a response encoded here.  The
command sets involved are a handful of fixed elements in implicit VR little endian (PS3.7 9.3, 9.1.3).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from io import BytesIO
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.dsutils import decode, encode

from workstation.archive.client import ArchiveError, ArchiveTimeout
from workstation.model.tasks import Cancelled

if TYPE_CHECKING:
    from workstation.archive._dimse_retrieve import Receiver

_P_DATA, _RELEASE_RQ, _ABORT = 0x04, 0x05, 0x07
_C_STORE_RQ, _C_STORE_RSP, _C_GET_RQ, _C_GET_RSP = 0x0001, 0x8001, 0x0010, 0x8010
_C_FIND_RQ, _C_FIND_RSP = 0x0020, 0x8020
_NO_DATASET = 0x0101
_PENDING = (0xFF00, 0xFF01)
_PDU_HEAD = struct.Struct(">BxL")
_PDV_HEAD = struct.Struct(">LBB")
_ELEMENT = struct.Struct("<HHL")
_US = struct.Struct("<H")
_UL = struct.Struct("<L")
_RSP_FIELDS = {0x0900: "Status", 0x0902: "ErrorComment", 0x1020: "NumberOfRemainingSuboperations",
               0x1021: "NumberOfCompletedSuboperations", 0x1022: "NumberOfFailedSuboperations",
               0x1023: "NumberOfWarningSuboperations"}


class _Closed(Exception):
    """The peer closed the connection or aborted the association."""


def _uid(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def encode_command(elements: list[tuple[int, bytes]]) -> bytes:
    """A command set (group 0000, implicit VR little endian) from (element, encoded value), sorted, with its
    group length."""
    body = b"".join(_ELEMENT.pack(0, el, len(v)) + v for el, v in sorted(elements))
    return _ELEMENT.pack(0, 0, 4) + _UL.pack(len(body)) + body


def parse_command(raw: bytes) -> dict[int, bytes]:
    """Element number -> raw value of a command set (implicit VR little endian, group 0000 only)."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos + 8 <= len(raw):
        group, element, length = _ELEMENT.unpack_from(raw, pos)
        if group != 0 or pos + 8 + length > len(raw):
            raise ArchiveError("the archive sent a damaged DIMSE command")
        out[element] = raw[pos + 8 : pos + 8 + length]
        pos += 8 + length
    return out


def _text(value: bytes | None) -> str:
    return value.rstrip(b"\0 ").decode("ascii", "replace") if value else ""


def _number(value: bytes | None) -> int | None:
    if value is None:
        return None
    if len(value) == 2:
        return _US.unpack(value)[0]
    return _UL.unpack(value)[0] if len(value) == 4 else None


def file_meta(sop_class: str, sop_uid: str, transfer_syntax: str) -> bytes:
    """The preamble and file meta group of a Part 10 file (explicit VR little endian), as pynetdicom writes
    for a received instance (its implementation UID and version name)."""
    elements = [(0x0001, b"OB", b"\0\x01"), (0x0002, b"UI", _uid(sop_class)), (0x0003, b"UI", _uid(sop_uid)),
                (0x0010, b"UI", _uid(transfer_syntax)), (0x0012, b"UI", _uid(PYNETDICOM_IMPLEMENTATION_UID))]
    version = PYNETDICOM_IMPLEMENTATION_VERSION.encode("ascii")
    elements.append((0x0013, b"SH", version + b" " * (len(version) % 2)))
    body = b"".join(
        struct.pack("<HH2sH", 2, el, vr, 0) + _UL.pack(len(v)) + v if vr == b"OB"
        else struct.pack("<HH2sH", 2, el, vr, len(v)) + v
        for el, vr, v in elements)
    return b"\0" * 128 + b"DICM" + struct.pack("<HH2sH", 2, 0, b"UL", 4) + _UL.pack(len(body)) + body


@contextlib.contextmanager
def taken(assoc, timeout: float) -> Iterator[socket.socket]:
    """The association's socket, with pynetdicom's two threads kept off it until the block ends.

    The association reactor is paused the way pynetdicom's own ``send_*`` methods pause it; the DUL thread
    keeps looping (and would still send an abort) but no longer reads or writes the socket: its two socket
    steps are shadowed on the instance until the block ends, and the block starts only once the thread has
    been seen in the shadowed step."""
    dul = assoc.dul
    assoc._reactor_checkpoint.clear()
    parked = threading.Event()

    def idle() -> bool:
        parked.set()
        return False

    try:
        while not assoc._is_paused and assoc.is_established:
            time.sleep(0.0001)
        dul._process_recv_primitive = lambda: False
        dul._is_transport_event = idle
        deadline = time.monotonic() + max(timeout, 1.0)
        while not parked.wait(0.01):
            if not dul.is_alive() or time.monotonic() > deadline:
                raise ArchiveError("the association closed before the retrieval could start")
        sock = dul.socket.socket if dul.socket is not None else None
        if sock is None:
            raise ArchiveError("the association closed before the retrieval could start")
        yield sock
    finally:
        for name in ("_process_recv_primitive", "_is_transport_event"):
            dul.__dict__.pop(name, None)
        dul._idle_timer.restart()
        assoc._reactor_checkpoint.set()


class _Reader:
    """PDUs off a blocking socket into one reused buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray(1 << 17)
        self.head = bytearray(6)

    def _fill(self, view: memoryview) -> None:
        got = 0
        while got < len(view):
            n = self.sock.recv_into(view[got:])
            if not n:
                raise _Closed("the archive closed the connection")
            got += n

    def pdu(self) -> tuple[int, memoryview]:
        self._fill(memoryview(self.head))
        kind, length = _PDU_HEAD.unpack(self.head)
        if length > len(self.buf):
            self.buf = bytearray(length)
        view = memoryview(self.buf)[:length]
        self._fill(view)
        return kind, view


def _pdata(context_id: int, command: bytes, dataset: bytes | None, max_pdu: int) -> bytes:
    """P-DATA-TF PDUs carrying one message (command, then dataset), each fragment within the peer's maximum
    PDU length (0: no limit)."""
    room = (max_pdu - 12) if max_pdu and max_pdu > 12 else 1 << 30
    out = bytearray()
    for data, kind in ((command, 0x01), (dataset, 0x00)):
        if data is None:
            continue
        for start in range(0, max(len(data), 1), room):
            piece = data[start : start + room]
            last = 0x02 if start + room >= len(data) else 0
            out += _PDU_HEAD.pack(_P_DATA, 6 + len(piece)) + _PDV_HEAD.pack(2 + len(piece), context_id, kind | last)
            out += piece
    return bytes(out)


def c_get(assoc, context_id: int, identifier: Dataset, receiver: Receiver, what: str, name: str, timeout: float,
          on_pending: Callable[[], None]) -> Dataset:
    """One C-GET on ``assoc`` under the query/retrieve presentation context ``context_id``; the instances
    go to ``receiver``.  Returns the final C-GET response's status (Status, ErrorComment, the sub-operation
    counts) as a dataset.  ``on_pending`` runs for every pending response and C-STORE (it raises Cancelled
    to stop: the association is aborted then).  Raises ArchiveTimeout when the peer is silent for
    ``timeout`` seconds or drops the association."""
    return _request(assoc, context_id, _C_GET_RQ, identifier, receiver, what, name, timeout, on_pending, None)


def c_find(assoc, context_id: int, identifier: Dataset, what: str, name: str, timeout: float,
           decoded: bool = True) -> tuple[Dataset, list]:
    """One C-FIND on ``assoc``: (final status, the matches), without pynetdicom's two threads in between (a
    long IMAGE-level list arrives ~3 times faster).  The matches are pydicom datasets, or with ``decoded``
    False their encoded bytes (in the context's transfer syntax, see :func:`context_syntax`)."""
    matches: list = []
    syntax = context_syntax(assoc, context_id)

    def answer(raw: bytes) -> None:
        matches.append(decode(BytesIO(raw), syntax.is_implicit_VR, syntax.is_little_endian) if decoded else raw)

    status = _request(assoc, context_id, _C_FIND_RQ, identifier, None, what, name, timeout, lambda: None, answer)
    return status, matches


def context_syntax(assoc, context_id: int):
    """The transfer syntax (a pydicom UID) accepted for a presentation context."""
    return {cx.context_id: cx for cx in assoc.accepted_contexts}[context_id].transfer_syntax[0]


def _request(assoc, context_id: int, field: int, identifier: Dataset, receiver: Receiver | None, what: str,
             name: str, timeout: float, on_pending: Callable[[], None],
             on_answer: Callable[[bytes], None] | None) -> Dataset:
    contexts = {cx.context_id: cx for cx in assoc.accepted_contexts}
    cx = contexts[context_id]
    syntax = cx.transfer_syntax[0]
    ident = encode(identifier, syntax.is_implicit_VR, syntax.is_little_endian)
    if ident is None:
        raise ArchiveError(f"cannot encode the request for {what}")
    command = encode_command([(0x0002, _uid(cx.abstract_syntax)), (0x0100, _US.pack(field)),
                              (0x0110, _US.pack(1)), (0x0700, _US.pack(0)), (0x0800, _US.pack(0))])
    max_pdu = int(getattr(assoc.acceptor, "maximum_length", 0) or 0)
    aborted = False
    try:
        with taken(assoc, timeout) as sock:
            old_timeout = sock.gettimeout()
            sock.settimeout(timeout)
            try:
                sock.sendall(_pdata(context_id, command, ident, max_pdu))
                return _exchange(_Reader(sock), sock, contexts, receiver, max_pdu, on_pending, on_answer)
            except (Cancelled, _Closed, OSError, ArchiveError):
                aborted = True
                raise
            finally:
                with contextlib.suppress(OSError):
                    sock.settimeout(old_timeout)
    except _Closed as exc:
        raise ArchiveTimeout(f"{name} did not answer within {timeout:g} s while {what} ({exc})") from None
    except (TimeoutError, socket.timeout):
        raise ArchiveTimeout(f"{name} did not answer within {timeout:g} s while {what} "
                             "(or it aborted the association)") from None
    except OSError as exc:
        raise ArchiveTimeout(f"{name} dropped the association while {what} ({exc.strerror or exc})") from None
    finally:
        if aborted and assoc.is_established:
            with contextlib.suppress(Exception):  # the peer may have closed the connection already
                assoc.abort()


def _exchange(reader: _Reader, sock: socket.socket, contexts: dict, receiver: Receiver | None, max_pdu: int,
              on_pending: Callable[[], None], on_answer: Callable[[bytes], None] | None) -> Dataset:
    """Read messages until the final C-GET or C-FIND response; store what arrives by C-STORE and answer it;
    hand C-FIND answers to ``on_answer``."""
    command = bytearray()
    cmd: dict[int, bytes] | None = None  # the command whose dataset is arriving
    sink = None
    dataset = bytearray()  # a C-GET response's identifier (failed instances), not kept
    try:
        while True:
            kind, pdu = reader.pdu()
            if kind == _ABORT:
                raise _Closed("it aborted the association")
            if kind != _P_DATA:
                raise ArchiveError(f"the archive sent an unexpected PDU (type {kind}) during a retrieval")
            pos = 0
            while pos + 6 <= len(pdu):
                length, cx_id, control = _PDV_HEAD.unpack_from(pdu, pos)
                data = pdu[pos + 6 : pos + 4 + length]
                pos += 4 + length
                last = control & 0x02
                if control & 0x01:  # a command fragment
                    command += data
                    if not last:
                        continue
                    cmd = parse_command(bytes(command))
                    command.clear()
                    field = _number(cmd.get(0x0100))
                    has_data = _number(cmd.get(0x0800)) != _NO_DATASET
                    if field == _C_STORE_RQ and receiver is not None:
                        on_pending()
                        cx = contexts.get(cx_id)
                        if cx is None:
                            raise ArchiveError("the archive sent an instance on an unknown presentation context")
                        sink = receiver.open_raw(_text(cmd.get(0x1000)), _text(cmd.get(0x0002)),
                                                 str(cx.transfer_syntax[0]))
                    elif field in (_C_GET_RSP, _C_FIND_RSP):
                        status = _number(cmd.get(0x0900))
                        if status in _PENDING:
                            on_pending()
                        elif not has_data:
                            return _final(cmd)
                    else:
                        raise ArchiveError(f"the archive sent an unexpected DIMSE message (0x{field or 0:04X}) "
                                           "during a retrieval")
                    if not has_data:
                        cmd = None
                    continue
                if cmd is None:
                    raise ArchiveError("the archive sent a dataset without a command")
                field = _number(cmd.get(0x0100))
                if field == _C_STORE_RQ:
                    if sink is not None:
                        sink.write(data)
                    if last:
                        status = receiver.close_raw(_text(cmd.get(0x1000)), sink)
                        sink = None
                        rsp = encode_command([
                            (0x0002, cmd.get(0x0002, b"")), (0x0100, _US.pack(_C_STORE_RSP)),
                            (0x0120, cmd.get(0x0110, _US.pack(0))), (0x0800, _US.pack(_NO_DATASET)),
                            (0x0900, _US.pack(status)), (0x1000, cmd.get(0x1000, b""))])
                        sock.sendall(_pdata(cx_id, rsp, None, max_pdu))
                        cmd = None
                else:  # the identifier of a C-GET response (failed instances) or a C-FIND answer
                    dataset += data
                    if last:
                        status = _number(cmd.get(0x0900))
                        if status not in _PENDING:
                            return _final(cmd)
                        if field == _C_FIND_RSP and on_answer is not None:
                            on_answer(bytes(dataset))
                        cmd, dataset = None, bytearray()
    finally:
        if sink is not None:
            sink.discard()


def _final(cmd: dict[int, bytes]) -> Dataset:
    """The final C-GET response's status as a dataset (what pynetdicom's send_c_get yields)."""
    status = Dataset()
    for element, keyword in _RSP_FIELDS.items():
        if element in cmd:
            value = _text(cmd[element]) if element == 0x0902 else _number(cmd[element])
            if value is not None:
                setattr(status, keyword, value)
    return status
