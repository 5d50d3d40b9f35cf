"""The reason an archive refused an association survives pynetdicom losing the rejection."""

from types import SimpleNamespace

from pynetdicom.pdu import A_ABORT_RQ, A_ASSOCIATE_RJ

from workstation.archive._dimse_support import RejectionSeen, explain_failed_association
from workstation.archive.client import AssociationRejected


def _rejection(source: int, diagnostic: int) -> A_ASSOCIATE_RJ:
    pdu = A_ASSOCIATE_RJ()
    pdu.result, pdu.source, pdu.reason_diagnostic = 1, source, diagnostic
    return pdu


def test_rejection_seen_keeps_only_the_rejection():
    seen = RejectionSeen()
    seen(SimpleNamespace(pdu=A_ABORT_RQ()))
    assert not seen.rejected
    seen(SimpleNamespace(pdu=_rejection(1, 3)))
    assert seen.rejected and (seen.source, seen.diagnostic) == (1, 3)


def test_an_abort_after_a_seen_rejection_is_explained_as_the_rejection():
    # what pynetdicom 3.0 leaves when its reactor closed the connection before the requester read the
    # A-ASSOCIATE-RJ: aborted, not rejected, no acceptor primitive
    assoc = SimpleNamespace(is_rejected=False, is_aborted=True, acceptor=SimpleNamespace(primitive=None))
    seen = RejectionSeen()
    seen(SimpleNamespace(pdu=_rejection(1, 3)))
    # port 9 on a reserved address: never contacted, the rejection alone decides
    error = explain_failed_association(assoc, "PACS", "192.0.2.1", 9, "STRANGER", "PACS_AE", 30.0, seen=seen)
    assert isinstance(error, AssociationRejected)
    assert str(error) == "PACS rejected the association: unknown calling AE title 'STRANGER'?"
    seen = RejectionSeen()
    seen(SimpleNamespace(pdu=_rejection(1, 7)))
    error = explain_failed_association(assoc, "PACS", "192.0.2.1", 9, "ME", "NOT_PACS", 30.0, seen=seen)
    assert str(error) == "PACS rejected the association: unknown called AE title 'NOT_PACS'?"
