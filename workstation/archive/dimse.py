"""A DIMSE archive (a classic PACS): C-ECHO, C-FIND, C-GET or C-MOVE, C-STORE (on pynetdicom), optionally
over TLS.

Retrieval is middle slices first on one association (see :mod:`workstation.archive._dimse_retrieve`) and
lands in the cache atomically, instance by instance, keyed by the SOP Instance UID the peer announces in each
C-STORE request (nothing is decoded on the way in).  When part of a series is already cached, only the
missing instances are asked for, so an interrupted retrieval resumes.  C-GET and C-FIND messages are
exchanged on the association's socket directly (:mod:`workstation.archive._dimse_raw`): pynetdicom
negotiates, releases and aborts, but its per-message threads cost ~5 ms an instance.

C-MOVE needs the workstation's own storage SCP: it is started on ``move_destination_port`` for the
duration of the retrieval, under ``calling_ae`` (the archive must know that AE title and its address).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE, _config as pynetdicom_config, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind as PATIENT_FIND_MODEL,
    StudyRootQueryRetrieveInformationModelFind as FIND_MODEL,
    StudyRootQueryRetrieveInformationModelMove as MOVE_MODEL,
    Verification,
)

from workstation.archive._dimse_patients import PatientMatch, patient_match, patient_query
from workstation.archive._dimse_get import SPREAD_MIN, CGet
from workstation.archive._dimse_raw import c_find, context_syntax
from workstation.archive._dimse_retrieve import (
    Receiver, batches, count_query, image_query, instance_count, middle_out_missing, numbered_query,
    retrieve_identifier, spots_of, spots_of_raw,
)
from workstation.archive._dimse_store import NATIVE, headers, payload
from workstation.archive._dimse_support import (
    PENDING, RECEIVE_SYNTAXES, STORAGE_CLASSES, WARNINGS, RejectionSeen, explain_failed_association, no_delay,
    status_text,
)
from workstation.archive._dimse_tls import DimseTls, endpoint_tls, handshake_failure
from workstation.archive._freshness import FreshnessChecks
from workstation.archive._order import InstanceSpot, middle_out
from workstation.archive.cache import DEFAULT_MAX_MB, CacheIndex
from workstation.archive.client import (
    ArchiveError, ArchiveTimeout, CancelToken, ImportReport, NotFound, Progress, ProgressFn, Skipped,
    StudyQuery, iter_files,
)
from workstation.archive.dicomweb import STUDY_FIELDS, SERIES_FIELDS
from workstation.model.refs import SeriesRef, StudyRef
from workstation.model.tasks import Cancelled

__all__ = ["DimseArchive", "DimseTls", "PatientMatch", "endpoint_tls"]


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        return int(_text(ds, keyword))
    except ValueError:
        return None


class DimseArchive(CGet):
    """An :class:`~workstation.archive.client.ArchiveClient` over DIMSE (Study Root query/retrieve; Patient
    Root for :meth:`find_patients`), in the clear or over TLS (``tls``)."""

    def __init__(self, name: str, host: str, port: int, called_ae: str, calling_ae: str = "WORKSTATION", *,
                 retrieve: str = "get", move_destination_port: int | None = None, move_listen_host: str = "",
                 cache_dir: Path | str | None = None, timeout: float = 30.0,
                 cache_max_bytes: int | None = None, tls: DimseTls | None = None, associations: int = 1) -> None:
        if retrieve not in ("get", "move"):
            raise ValueError(f"retrieve must be 'get' or 'move', not {retrieve!r}")
        if retrieve == "move" and not move_destination_port:
            raise ValueError("C-MOVE needs move_destination_port (where the workstation's storage SCP listens)")
        if retrieve == "move" and tls is not None:
            raise ValueError("C-MOVE over TLS is not supported (the archive would have to reach the workstation's "
                             "storage SCP over TLS too); retrieve with C-GET")
        self.name, self.host, self.port = name, host, int(port)
        self.called_ae, self.calling_ae = called_ae, calling_ae
        self.retrieve, self.move_port, self.move_host = retrieve, move_destination_port, move_listen_host
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.cache_index = (CacheIndex(self.cache_dir, cache_max_bytes or DEFAULT_MAX_MB * 1_000_000)
                            if self.cache_dir is not None else None)
        #: C-MOVE results arrive at one listening port: one retrieval at a time; C-GET runs several.
        self.parallel_retrievals = 1 if retrieve == "move" else 3
        #: Associations sharing the bulk of one C-GET retrieval.  Each instance of a C-GET costs a round trip,
        #: so an archive far away delivers faster over several; on a fast link one is faster (it needs no
        #: listing of the series first, and setting an association up costs ~20 ms).
        self.associations = max(1, int(associations))
        self.timeout = float(timeout)
        self.freshness = FreshnessChecks()  # see _dimse_retrieve.instance_count
        self.tls = tls
        self._tls_context = tls.context() if tls is not None else None
        self._study_of: dict[str, str] = {}  # series UID -> study UID, learned from queries
        self._get_ae: tuple[AE, list] | None = None  # the AE (and roles) of C-GET associations, built once
        self._get_lock = threading.Lock()

    # -- associations --------------------------------------------------------------------------------
    def _ae(self, timeout: float | None = None) -> AE:
        if not logging.getLogger("pynetdicom").isEnabledFor(logging.INFO):
            # pynetdicom pretty-prints every C-FIND answer for its INFO log even when nobody listens:
            # ~40 % of the time an IMAGE-level query of a long series takes
            pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False
        ae = AE(ae_title=self.calling_ae)
        for attr in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
            setattr(ae, attr, self.timeout if timeout is None else timeout)
        return ae

    @contextlib.contextmanager
    def _association(self, ae: AE, ext_neg=None, handlers=None, release_later: bool = False,
                     timeout: float | None = None) -> Iterator:
        tls_args = (self._tls_context, self.host) if self._tls_context is not None else None
        # max_pdu 0: no limit on the PDUs the peer sends us (fewer, larger P-DATA for retrieved instances)
        started = time.monotonic()
        seen = RejectionSeen()
        assoc = ae.associate(self.host, self.port, ae_title=self.called_ae, ext_neg=ext_neg, max_pdu=0,
                             tls_args=tls_args, evt_handlers=[(evt.EVT_CONN_OPEN, no_delay), (evt.EVT_PDU_RECV, seen),
                                                              *(handlers or [])])
        if not assoc.is_established:
            waited_out = ae.acse_timeout is not None and time.monotonic() - started >= 0.95 * ae.acse_timeout
            wait = self.timeout if timeout is None else timeout
            if self._tls_context is not None and not assoc.is_rejected and not seen.rejected:
                failure = handshake_failure(self.name, self.host, self.port, self._tls_context, wait)
                if failure is not None:
                    raise failure
            raise explain_failed_association(assoc, self.name, self.host, self.port, self.calling_ae,
                                             self.called_ae, wait, waited_out, seen)
        assoc.unbind(evt.EVT_PDU_RECV, seen)  # only the answer to the request matters, not every P-DATA after it
        try:
            yield assoc
        except BaseException:
            if assoc.is_established:
                assoc.release()
            raise
        if assoc.is_established:
            if release_later:  # the work is done; only the archive's acknowledgement is awaited (~15 ms)
                threading.Thread(target=assoc.release, name="dimse-release", daemon=True).start()
            else:
                assoc.release()

    def echo(self) -> None:
        """C-ECHO; raises the ArchiveError that explains a failure."""
        ae = self._ae()
        ae.add_requested_context(Verification)
        with self._association(ae) as assoc:
            status = assoc.send_c_echo()
        self._check_final(status, "answering C-ECHO")

    ping = echo

    def _no_answer(self, what: str) -> ArchiveError:
        return ArchiveTimeout(f"{self.name} did not answer within {self.timeout:g} s while {what} "
                              "(or it aborted the association)")

    def _check_final(self, status: Dataset | None, what: str) -> int:
        """Raise for a missing or failed final status; returns the status code (success or warning)."""
        if status is None or "Status" not in status:
            raise self._no_answer(what)
        code = int(status.Status)
        if code == 0 or code in WARNINGS:
            return code
        if code == 0xFE00:
            raise Cancelled()
        comment = _text(status, "ErrorComment")
        raise ArchiveError(f"{self.name} failed while {what}: status 0x{code:04X} ({status_text(code)})"
                           + (f": {comment}" if comment else ""))

    # -- C-FIND ----------------------------------------------------------------------------------------
    def _find(self, identifier: Dataset, what: str, model=FIND_MODEL) -> list[Dataset]:
        ae = self._ae()
        ae.add_requested_context(model)
        with self._association(ae) as assoc:
            return self._find_on(assoc, identifier, what, model)

    def _find_on(self, assoc, identifier: Dataset, what: str, model=FIND_MODEL, decoded: bool = True) -> list:
        """C-FIND on an open association; the matches (pydicom datasets, or their bytes: see c_find)."""
        if not any(cx.abstract_syntax == model for cx in assoc.accepted_contexts):
            raise ArchiveError(f"{self.name} does not offer the query model needed for {what} ({model.name})")
        cx = next(cx.context_id for cx in assoc.accepted_contexts if cx.abstract_syntax == model)
        status, matches = c_find(assoc, cx, identifier, what, self.name, self.timeout, decoded)
        self._check_final(status, what)
        return matches

    def find_patients(self, patient_name: str = "", patient_id: str = "", limit: int = 500) -> list[PatientMatch]:
        """Patients matching the name and ID (``*`` and ``?`` allowed; empty matches all), by Patient Root
        C-FIND at PATIENT level, sorted by name; at most ``limit`` (0: all)."""
        found = self._find(patient_query(patient_name, patient_id), "searching for patients", PATIENT_FIND_MODEL)
        patients = sorted((patient_match(m, self.name) for m in found), key=lambda p: (p.patient_name, p.patient_id))
        return patients[:limit] if limit > 0 else patients

    def find_studies(self, query: StudyQuery | None = None) -> list[StudyRef]:
        query = query or StudyQuery()
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.StudyInstanceUID = ""
        for kw in STUDY_FIELDS:
            setattr(ds, kw, "")
        ds.PatientName = query.patient_name.strip()
        ds.PatientID = query.patient_id.strip()
        ds.AccessionNumber = query.accession_number.strip()
        ds.StudyDescription = query.study_description.strip()
        ds.ModalitiesInStudy = query.modality.strip().upper()
        if query.date_from or query.date_to:
            lo = query.date_from.strftime("%Y%m%d") if query.date_from else ""
            hi = query.date_to.strftime("%Y%m%d") if query.date_to else ""
            ds.StudyDate = f"{lo}-{hi}"
        refs = [self._study_ref(m) for m in self._find(ds, "searching for studies")]
        refs = sorted(refs, key=lambda s: (s.study_date != "", s.study_date, s.study_time), reverse=True)
        start = max(query.offset, 0)
        return refs[start : start + query.limit] if query.limit > 0 else refs[start:]

    def find_study(self, study_instance_uid: str) -> StudyRef:
        """One study by UID.  Raises NotFound."""
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.StudyInstanceUID = study_instance_uid
        for kw in STUDY_FIELDS:
            setattr(ds, kw, "")
        found = self._find(ds, f"looking up study {study_instance_uid}")
        if not found:
            raise NotFound(f"study {study_instance_uid} is not in the {self.name} archive")
        return self._study_ref(found[0])

    def patient_issuers(self, patient_id: str) -> dict[str, str]:
        """Study UID -> Issuer of Patient ID for the studies with this Patient ID."""
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.StudyInstanceUID = ""
        ds.PatientID = patient_id
        ds.IssuerOfPatientID = ""
        found = self._find(ds, f"listing the studies of patient {patient_id}")
        return {_text(m, "StudyInstanceUID"): _text(m, "IssuerOfPatientID") for m in found}

    def _study_ref(self, m: Dataset) -> StudyRef:
        return StudyRef(
            study_instance_uid=_text(m, "StudyInstanceUID"), patient_name=_text(m, "PatientName"),
            patient_id=_text(m, "PatientID"), patient_birth_date=_text(m, "PatientBirthDate"),
            patient_sex=_text(m, "PatientSex"), study_date=_text(m, "StudyDate"), study_time=_text(m, "StudyTime"),
            accession_number=_text(m, "AccessionNumber"), study_description=_text(m, "StudyDescription"),
            modalities=tuple(v for v in _text(m, "ModalitiesInStudy").split("\\") if v),
            number_of_series=_int(m, "NumberOfStudyRelatedSeries") or 0,
            number_of_instances=_int(m, "NumberOfStudyRelatedInstances") or 0, source=self.name,
        )

    def find_series(self, study_instance_uid: str) -> list[SeriesRef]:
        ds = Dataset()
        ds.QueryRetrieveLevel = "SERIES"
        ds.StudyInstanceUID = study_instance_uid
        ds.SeriesInstanceUID = ""
        for kw in SERIES_FIELDS:
            setattr(ds, kw, "")
        refs = []
        for m in self._find(ds, f"listing the series of study {study_instance_uid}"):
            uid = _text(m, "SeriesInstanceUID")
            self._study_of[uid] = study_instance_uid
            refs.append(SeriesRef(
                series_instance_uid=uid, study_instance_uid=study_instance_uid, modality=_text(m, "Modality"),
                series_number=_int(m, "SeriesNumber"), series_description=_text(m, "SeriesDescription"),
                number_of_instances=_int(m, "NumberOfSeriesRelatedInstances") or 0,
                body_part=_text(m, "BodyPartExamined"), source=self.name,
            ))
        return sorted(refs, key=lambda s: (s.series_number is None, s.series_number or 0, s.series_instance_uid))

    def study_of_series(self, series_instance_uid: str) -> str:
        """The series' study: known from an earlier query, a relational series query, or a scan of studies."""
        if series_instance_uid in self._study_of:
            return self._study_of[series_instance_uid]
        ds = Dataset()
        ds.QueryRetrieveLevel = "SERIES"
        ds.StudyInstanceUID = ""
        ds.SeriesInstanceUID = series_instance_uid
        with contextlib.suppress(ArchiveError):  # strictly hierarchical peers refuse this query
            for m in self._find(ds, f"looking up series {series_instance_uid}"):
                if _text(m, "StudyInstanceUID"):
                    return _text(m, "StudyInstanceUID")
        for study in self.find_studies(StudyQuery(limit=0)):
            self.find_series(study.study_instance_uid)
            if series_instance_uid in self._study_of:
                return self._study_of[series_instance_uid]
        raise NotFound(f"series {series_instance_uid} is not in the {self.name} archive")

    def instance_spots(self, study_uid: str, series_uid: str) -> list[InstanceSpot]:
        """The series' instances in spatial order (by instance number where the archive gives no positions)."""
        ae = self._ae()
        ae.add_requested_context(FIND_MODEL)
        with self._association(ae) as assoc:
            return self._spots_on(assoc, study_uid, series_uid)

    def _spots_on(self, assoc, study: str, series: str) -> list[InstanceSpot]:
        what = f"listing the instances of series {series}"
        try:
            cx = next(cx.context_id for cx in assoc.accepted_contexts if cx.abstract_syntax == FIND_MODEL)
            return spots_of_raw(self._find_on(assoc, image_query(study, series), what, decoded=False),
                                context_syntax(assoc, cx))
        except ArchiveError as exc:
            if not assoc.is_established or isinstance(exc, ArchiveTimeout):
                raise
            # a peer that refuses the geometry keys still lists the instances by number
            return spots_of(self._find_on(assoc, image_query(study, series, geometry=False), what))

    # -- retrieval -------------------------------------------------------------------------------------
    def fetch_series(self, series_instance_uid: str, progress: ProgressFn | None = None,
                     cancel: CancelToken | None = None, study_instance_uid: str | None = None) -> list[Path]:
        """Retrieve the series into the cache by C-GET or C-MOVE, the middle slice first, resuming; returns its
        files in spatial order."""
        if self.cache_index is None:
            raise ArchiveError(f"{self.name}: no cache folder configured to retrieve into")
        cached = self.cache_index.open_current(
            series_instance_uid, lambda st: instance_count(self, study_instance_uid or st, series_instance_uid),
            progress)
        if cached is not None:
            return cached  # complete, and the archive has nothing new (or cannot be asked)
        with self.cache_index.retrieving(series_instance_uid):
            study = study_instance_uid or self.study_of_series(series_instance_uid)
            cache = self.cache_index.series_cache(study, series_instance_uid)
            cache.remove_parts()
            receiver = Receiver(cache, progress, cancel)
            try:
                run = self._get_series if self.retrieve == "get" else self._move_series
                spots = run(study, series_instance_uid, receiver)
            finally:
                cache.remove_parts()
            uids = [s.sop_uid for s in spots]
            absent = [u for u in uids if not cache.has(u)]
            if absent:
                raise ArchiveError(f"{self.name} sent {len(uids) - len(absent)} of {len(uids)} instances of series "
                                   f"{series_instance_uid}; {len(absent)} are missing (try again to resume)")
            self.cache_index.finish(study, series_instance_uid, uids)
        return [cache.path(u) for u in uids]

    def _get_series(self, study: str, series: str, receiver: Receiver) -> list[InstanceSpot]:
        """C-FIND then C-GET, middle first, on one association (and the bulk shared with others)."""
        with self._get_association(receiver) as (assoc, cx):
            return self._retrieve_on(assoc, study, series, receiver, self._raw_get(assoc, cx, series, receiver),
                                     spread=self._spread)

    def _move_series(self, study: str, series: str, receiver: Receiver) -> list[InstanceSpot]:
        """Our storage SCP listens; C-FIND then C-MOVE to it, middle first, on one association."""
        scp = AE(ae_title=self.calling_ae)
        scp.network_timeout = scp.dimse_timeout = scp.acse_timeout = self.timeout
        scp.maximum_pdu_size = 0  # no limit on the PDUs the archive sends us
        for uid in STORAGE_CLASSES:
            scp.add_supported_context(uid, RECEIVE_SYNTAXES)
        handlers = [(evt.EVT_C_STORE, receiver.on_store), (evt.EVT_CONN_OPEN, no_delay)]
        try:
            server = scp.start_server((self.move_host, int(self.move_port)), block=False, evt_handlers=handlers)
        except OSError as exc:
            raise ArchiveError(f"cannot listen for C-MOVE on port {self.move_port}: {exc.strerror or exc}") from None
        try:
            ae = self._ae()
            ae.add_requested_context(FIND_MODEL)
            ae.add_requested_context(MOVE_MODEL)
            with self._association(ae) as assoc:
                return self._retrieve_on(assoc, study, series, receiver,
                                         lambda ident: assoc.send_c_move(ident, self.calling_ae, MOVE_MODEL))
        finally:
            server.shutdown()

    def _retrieve_on(self, assoc, study: str, series: str, receiver: Receiver, send,
                     spread=None) -> list[InstanceSpot]:
        """On one association: the middle slice first, then the list of instances, then what is missing
        (see :mod:`~workstation.archive._dimse_retrieve`); returns the instances in spatial order."""
        what = f"retrieving series {series}"
        guess = None
        try:
            if not receiver.cache_had_files:  # from scratch: the middle first (a resumption lists first)
                guess = self._numbered_middle(assoc, study, series)
                if guess is not None:
                    receiver.start(guess[1], 0)
                    self._drain(assoc, send(retrieve_identifier(study, series, [guess[0]])), receiver, what)
                if guess is not None and (spread is None or self.associations == 1):
                    # then the rest in one request, ordered by the instances' own headers: listing a long
                    # series first costs as much as retrieving it (the middle comes twice, kept once)
                    self._drain(assoc, send(retrieve_identifier(study, series, None)), receiver, what)
                    receiver.flush_index()
                    spots = receiver.spots_in_order(guess[1])
                    if spots is not None:
                        return spots
            spots = self._spots_on(assoc, study, series)
            if not spots:
                raise NotFound(f"series {series} has no instances in the {self.name} archive")
            missing = middle_out_missing(spots, receiver.cache)
            receiver.start(len(spots), len(spots) - len(missing) - len(receiver.written))
            middle_done = guess is not None and middle_out(spots)[0].sop_uid == guess[0]
            if spread is not None and len(missing) >= self.associations * SPREAD_MIN:
                first = [] if middle_done else missing[:1]
                if first:
                    self._drain(assoc, send(retrieve_identifier(study, series, first)), receiver, what)
                spread(study, series, receiver, missing[len(first):], send)
                return spots
            for batch in batches(missing, whole_series=not receiver.cache_had_files, first_alone=not middle_done):
                self._drain(assoc, send(retrieve_identifier(study, series, batch)), receiver, what)
                receiver.flush_index()
        finally:
            receiver.flush_index()
        return spots

    def _numbered_middle(self, assoc, study: str, series: str) -> tuple[str, int] | None:
        """(SOP Instance UID, number of instances) of the instance numbered in the middle of the series, by
        two one-answer queries, or None when the archive does not count or the numbers do not run 1..n.
        The full list of a long series takes far longer to arrive (pynetdicom decodes ~2000 answers/s)."""
        with contextlib.suppress(ArchiveError):
            counted = self._find_on(assoc, count_query(study, series), f"counting the instances of series {series}")
            count = _int(counted[0], "NumberOfSeriesRelatedInstances") if len(counted) == 1 else None
            if count:
                numbered = self._find_on(assoc, numbered_query(study, series, (count - 1) // 2 + 1),
                                         f"looking up the middle instance of series {series}")
                if len(numbered) == 1 and _text(numbered[0], "SOPInstanceUID"):
                    return _text(numbered[0], "SOPInstanceUID"), count
        if not assoc.is_established:
            raise self._no_answer(f"looking up the middle instance of series {series}")
        return None

    def _drain(self, assoc, responses, receiver: Receiver, what: str) -> None:
        """Follow C-GET/C-MOVE responses to the final one; cancel on request; raise for failures."""
        for status, _ in responses:
            code = int(status.get("Status", -1)) if status is not None else -1
            if code in PENDING:
                if receiver.cancel_requested():
                    assoc.abort()
                    raise Cancelled()
                continue
            if receiver.cancel_requested():
                raise Cancelled()
            final = self._check_final(status, what)
            failed = _int(status, "NumberOfFailedSuboperations") or 0
            if final in WARNINGS and failed:
                raise ArchiveError(f"{self.name} could not send {failed} instances while {what} "
                                   f"(status 0x{final:04X}); try again to resume")

    # -- C-STORE -----------------------------------------------------------------------------------------
    def store(self, paths: Iterable[Path], progress: ProgressFn | None = None) -> ImportReport:
        """Send files with C-STORE, each in the transfer syntax it is stored in."""
        files, skipped = headers(iter_files(paths))
        if not files:
            return ImportReport(skipped=tuple(skipped))
        ae = self._ae()
        contexts: dict[str, set[str]] = {}
        for _, sop_class, syntax, *_ in files:
            contexts.setdefault(sop_class, set()).add(syntax)
        requested = [(c, [ts]) for c, tss in contexts.items() for ts in sorted(tss) if ts not in NATIVE]
        requested += [(c, list(NATIVE)) for c in contexts]  # the fallback: sent decompressed
        if len(requested) > 128:
            raise ArchiveError(f"cannot store {len(contexts)} SOP classes in these transfer syntaxes in one "
                               "association (more than 128 presentation contexts); store fewer files at once")
        for sop_class, syntaxes in requested:
            ae.add_requested_context(sop_class, syntaxes)
        imported, studies, series = [], set(), set()
        with self._association(ae) as assoc:
            accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
            for n, (path, sop_class, syntax, sop, study, ser) in enumerate(files, 1):
                try:
                    status = assoc.send_c_store(payload(path, sop_class, syntax, accepted))
                except (ValueError, RuntimeError, NotImplementedError) as exc:
                    skipped.append(Skipped(str(path), f"{self.name} cannot take it: {exc}"))
                    continue
                code = int(status.get("Status", -1)) if status is not None and "Status" in status else None
                if code is None:
                    raise self._no_answer(f"storing {path}")
                if code == 0 or code in WARNINGS:
                    imported.append(sop)
                    studies.add(study)
                    series.add(ser)
                else:
                    skipped.append(Skipped(str(path), f"{self.name} refused it: status 0x{code:04X} "
                                                      f"({status_text(code)})"))
                if progress is not None:
                    progress(Progress(n, len(files), str(path)))
        return ImportReport(imported=tuple(imported), skipped=tuple(skipped), studies=tuple(sorted(studies)),
                            series=tuple(sorted(series)))
