"""C-GET retrieval for :class:`~workstation.archive.dimse.DimseArchive`: its associations (built once, with
the storage SCP role and an implicit VR context per storage class), the C-GET itself driven on the socket
(:mod:`~workstation.archive._dimse_raw`), and the bulk of a series shared among several associations.
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor

from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom import build_role, evt
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind as FIND_MODEL,
    StudyRootQueryRetrieveInformationModelGet as GET_MODEL,
)

from workstation.archive._dimse_raw import c_get
from workstation.archive._dimse_retrieve import MAX_LIST, Receiver, retrieve_identifier
from workstation.archive._dimse_support import RECEIVE_SYNTAXES, STORAGE_CLASSES
from workstation.archive.client import ArchiveError
from workstation.model.tasks import Cancelled

#: The fewest instances worth another association in a C-GET retrieval (setting one up takes ~20 ms).
SPREAD_MIN = 24


class CGet:
    """The C-GET half of a DimseArchive (which provides ``_ae``, ``_association``, ``_drain``, ``name``,
    ``timeout``, ``associations``, ``_get_ae`` and ``_get_lock``)."""

    @contextlib.contextmanager
    def _get_association(self, receiver: Receiver):
        """An association for C-FIND and C-GET (with the storage SCP role); (association, C-GET context id)."""
        with self._get_lock:
            if self._get_ae is None:  # built once: ~60 presentation contexts take a few ms to set up
                ae = self._ae()
                ae.add_requested_context(FIND_MODEL)
                ae.add_requested_context(GET_MODEL)
                roles = []
                for uid in STORAGE_CLASSES:
                    ae.add_requested_context(uid, RECEIVE_SYNTAXES)
                    # and implicit VR alone: an archive that holds implicit VR files sends them as they are,
                    # instead of converting each to the explicit VR the first context settles on
                    ae.add_requested_context(uid, [ImplicitVRLittleEndian])
                    roles.append(build_role(uid, scp_role=True))
                self._get_ae = (ae, roles)
            ae, roles = self._get_ae
        with self._association(ae, ext_neg=roles, handlers=[(evt.EVT_C_STORE, receiver.on_store)],
                               release_later=True) as assoc:
            cx = next((c.context_id for c in assoc.accepted_contexts if c.abstract_syntax == GET_MODEL), None)
            if cx is None:
                raise ArchiveError(f"{self.name} does not offer C-GET retrieval ({GET_MODEL.name}); "
                                   "retrieve with C-MOVE")
            yield assoc, cx

    def _raw_get(self, assoc, cx: int, series: str, receiver: Receiver, stop: threading.Event | None = None):
        """send(identifier) for :meth:`_drain`: a C-GET driven on the socket (:mod:`._dimse_raw`), its final
        status as the one response.  Stops (Cancelled, the association aborted) on the user's cancel or
        ``stop``."""
        what = f"retrieving series {series}"

        def pending() -> None:
            if receiver.cancel_requested() or (stop is not None and stop.is_set()):
                raise Cancelled()

        def send(ident: Dataset):
            yield c_get(assoc, cx, ident, receiver, what, self.name, self.timeout, pending), None

        return send

    def _spread(self, study: str, series: str, receiver: Receiver, sops: list[str], send) -> None:
        """Retrieve ``sops`` (middle-out) in interleaved shares at once: the first on this association
        (``send``), the others on associations of their own.  A C-GET waits for each C-STORE's answer before
        the next instance, so one association leaves the archive idle most of the time; a share whose
        association the archive refuses is fetched on this one afterwards."""
        shares = [sops[i :: self.associations] for i in range(self.associations)]
        shares = [share for share in shares if share]
        stop = threading.Event()
        what = f"retrieving series {series}"

        def fetch(share: list[str], on) -> None:
            for i in range(0, len(share), MAX_LIST):
                self._drain(None, on(retrieve_identifier(study, series, share[i : i + MAX_LIST])), receiver, what)

        def other(share: list[str]) -> list[str]:
            with contextlib.ExitStack() as stack:
                try:
                    assoc, cx = stack.enter_context(self._get_association(receiver))
                except ArchiveError:
                    return share  # the archive takes fewer associations at once
                fetch(share, self._raw_get(assoc, cx, series, receiver, stop))
            return []

        pool = ThreadPoolExecutor(max(1, len(shares) - 1), thread_name_prefix="c-get")
        futures = [pool.submit(other, share) for share in shares[1:]]
        try:
            fetch(shares[0], send)
            left = [sop for fut in futures for sop in fut.result()]
            fetch(left, send)
        except BaseException:
            stop.set()
            raise
        finally:
            pool.shutdown(wait=True)
