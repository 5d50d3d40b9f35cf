"""DIMSE vocabulary for :mod:`workstation.archive.dimse`: presentation contexts, statuses, failures in words."""

from __future__ import annotations

import contextlib
import socket

from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import sop_class as sc
from pynetdicom.pdu import A_ASSOCIATE_RJ

from workstation.archive.client import ArchiveTimeout, ArchiveUnavailable, AssociationRejected

#: Transfer syntaxes we accept when receiving (C-GET, C-MOVE): files are kept as sent, never decoded.
RECEIVE_SYNTAXES = [
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
    JPEGLosslessSV1, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLSLossless, JPEGLSNearLossless,
    JPEG2000Lossless, JPEG2000, RLELossless,
]

#: Storage SOP classes a reading workstation receives.  Fewer than 128 contexts are allowed in all,
#: and C-GET needs one per class, so this is a chosen list rather than every storage class.
STORAGE_CLASSES = [
    sc.CTImageStorage, sc.EnhancedCTImageStorage, sc.MRImageStorage, sc.EnhancedMRImageStorage,
    sc.PositronEmissionTomographyImageStorage, sc.EnhancedPETImageStorage, sc.NuclearMedicineImageStorage,
    sc.ComputedRadiographyImageStorage, sc.DigitalXRayImageStorageForPresentation,
    sc.DigitalXRayImageStorageForProcessing, sc.DigitalMammographyXRayImageStorageForPresentation,
    sc.UltrasoundImageStorage, sc.UltrasoundMultiFrameImageStorage, sc.XRayAngiographicImageStorage,
    sc.SecondaryCaptureImageStorage, sc.MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    sc.MultiFrameGrayscaleByteSecondaryCaptureImageStorage, sc.MultiFrameTrueColorSecondaryCaptureImageStorage,
    sc.SegmentationStorage, sc.BasicTextSRStorage, sc.EnhancedSRStorage, sc.ComprehensiveSRStorage,
    sc.Comprehensive3DSRStorage, sc.KeyObjectSelectionDocumentStorage, sc.GrayscaleSoftcopyPresentationStateStorage,
    sc.RTStructureSetStorage, sc.RTDoseStorage, sc.EncapsulatedPDFStorage, sc.ParametricMapStorage,
]

#: Status codes (PS3.4 / PS3.7) named for the user.
STATUS_TEXT = {
    0xA700: "out of resources", 0xA701: "out of resources: unable to calculate the number of matches",
    0xA702: "out of resources: unable to perform sub-operations", 0xA801: "move destination unknown",
    0xA900: "identifier does not match SOP class", 0xFE00: "cancelled", 0xB000: "some sub-operations failed",
    0xC000: "unable to process", 0x0122: "SOP class not supported", 0x0124: "not authorised",
    0x0211: "unrecognised operation", 0xA7FF: "out of resources",
}

_REJECT_DIAGNOSTICS = {
    (1, 2): "application context name not supported",
    (1, 3): "unknown calling AE title '{calling}'?",
    (1, 7): "unknown called AE title '{called}'?",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}

PENDING = (0xFF00, 0xFF01)
WARNINGS = (0x0001, 0xB000, 0xB006, 0xB007)


def no_delay(event) -> None:
    """EVT_CONN_OPEN handler: send each PDU at once (TCP_NODELAY).  pynetdicom leaves Nagle's algorithm on,
    so every request written as two PDUs (command, then identifier) waited for the peer's delayed ACK,
    ~40 ms per C-FIND or C-GET on Linux."""
    sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def status_text(code: int) -> str:
    if code in STATUS_TEXT:
        return STATUS_TEXT[code]
    if 0xC000 <= code <= 0xCFFF:
        return "unable to process"
    if 0xA700 <= code <= 0xA7FF:
        return "out of resources"
    return "failure"


class RejectionSeen:
    """EVT_PDU_RECV handler that keeps the peer's A-ASSOCIATE-RJ, if one arrives.

    pynetdicom 3.0 can lose a prompt rejection: its reactor thread receives the A-ASSOCIATE-RJ and closes the
    connection before the requesting thread has checked that the connection is up, which then aborts the
    association instead of reading the rejection (about one time in three against a local Orthanc). The PDU
    kept here still tells why."""

    def __init__(self) -> None:
        self.source: int | None = None
        self.diagnostic: int | None = None

    def __call__(self, event) -> None:
        pdu = getattr(event, "pdu", None)
        if isinstance(pdu, A_ASSOCIATE_RJ):
            self.source, self.diagnostic = pdu.source, pdu.reason_diagnostic

    @property
    def rejected(self) -> bool:
        return self.source is not None


def rejection_reason(assoc, calling: str, called: str, seen: RejectionSeen | None = None) -> str:
    """Why the peer rejected an association, from its A-ASSOCIATE-RJ (source, diagnostic)."""
    prim = getattr(getattr(assoc, "acceptor", None), "primitive", None)
    source = getattr(prim, "result_source", None)
    diagnostic = getattr(prim, "diagnostic", None)
    if source is None and seen is not None and seen.rejected:
        source, diagnostic = seen.source, seen.diagnostic
    text = _REJECT_DIAGNOSTICS.get((source, diagnostic))
    if text is None:
        return f"unknown calling AE title '{calling}' or called AE title '{called}'? (reason {source}/{diagnostic})"
    return text.format(calling=calling, called=called)


def explain_failed_association(assoc, name: str, host: str, port: int, calling: str, called: str,
                               timeout: float, waited_out: bool = False,
                               seen: RejectionSeen | None = None) -> Exception:
    """The error for an association that was not established: rejected, unreachable or silent.

    ``waited_out``: the request took the whole association timeout (pynetdicom then aborts the association
    itself, so an abort alone does not tell a silent peer from one that refused). ``seen``: the rejection the
    peer sent, kept in case pynetdicom aborted before reading it."""
    if assoc.is_rejected or (seen is not None and seen.rejected):
        reason = rejection_reason(assoc, calling, called, seen)
        return AssociationRejected(f"{name} rejected the association: {reason}")
    try:  # find out whether anything listens there at all
        with socket.create_connection((host, port), timeout=min(timeout, 5.0)):
            pass
    except ConnectionRefusedError:
        return ArchiveUnavailable(f"cannot reach {host}:{port}: connection refused")
    except TimeoutError:
        return ArchiveTimeout(f"cannot reach {host}:{port}: no answer within {min(timeout, 5.0):g} s")
    except OSError as exc:
        return ArchiveUnavailable(f"cannot reach {host}:{port}: {exc.strerror or exc}")
    if assoc.is_aborted and not waited_out:
        return AssociationRejected(f"{name} aborted the association (is '{called}' its AE title, and does it "
                                   f"know '{calling}'?)")
    return ArchiveTimeout(f"{name} did not accept the association within {timeout:g} s")
