"""A DICOMweb archive: QIDO-RS to find, WADO-RS to retrieve, STOW-RS to store (on dicomweb-client).

A fresh retrieval streams the whole series in one multipart response; when that stream is slow (a remote
archive) the series is listed meanwhile and the slices near its middle are fetched one by one first (the
viewer can show an image long before the series is complete).  A retrieval that finds part of the series
cached fetches only the missing instances, middle first, a few requests in flight at once.  Each instance
goes to the cache atomically (see :mod:`workstation.archive.cache`), so a retrieval that was cancelled,
timed out or lost the network resumes where it stopped: instances already cached are not asked for.
Authentication: none, HTTP basic, a fixed bearer token, or OAuth2 client credentials
(:mod:`workstation.archive.oauth`).  Thumbnails come from the server's rendered resources
(:mod:`workstation.archive._rendered`)."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from workstation.archive._dicom_json import instance_spot as _spot
from workstation.archive._dicom_json import series_ref, study_filters, study_ref
from workstation.archive._dicom_json import text as _text
from workstation.archive._http_errors import http_errors
from workstation.archive._freshness import CHECK_TIMEOUT_S, FreshnessChecks
from workstation.archive._order import InstanceSpot, middle_out, spatial_order
from workstation.archive._wado import Tally, stream_series
from workstation.archive.cache import DEFAULT_MAX_MB, CacheIndex
from workstation.archive.client import (
    ArchiveError,
    CancelToken,
    ImportReport,
    NotFound,
    Progress,
    ProgressFn,
    Skipped,
    StudyQuery,
    iter_files,
)
from workstation.archive.credentials import Auth, BasicAuth, BearerToken, NoAuth, OAuth2ClientCredentials
from workstation.model.refs import SeriesRef, StudyRef
from workstation.model.tasks import Cancelled

#: What the study browser shows, asked for explicitly (servers return few attributes by default).
STUDY_FIELDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                "AccessionNumber", "StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                "NumberOfStudyRelatedInstances")
SERIES_FIELDS = ("Modality", "SeriesNumber", "SeriesDescription", "NumberOfSeriesRelatedInstances",
                 "BodyPartExamined")
#: Any transfer syntax: the file as the archive holds it (no transcoding on the server).
INSTANCE_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
_STOW_BATCH = 16
_QIDO_PAGE = 500
_PREFETCH = 3  # instances nearest the middle fetched singly while a slow series stream runs
_LIST_AFTER = 1.0  # seconds of streaming after which the series is listed and its middle fetched first
_LITERAL = "*?^-._~"  # left as they are in QIDO-RS query values

def single_part(response: requests.Response) -> bytes:
    """The body of the one part of a multipart/related response (or the body itself if not multipart)."""
    content = response.content
    ctype = response.headers.get("Content-Type", "")
    boundary = next((p.split("=", 1)[1].strip().strip('"') for p in ctype.split(";")
                     if p.strip().lower().startswith("boundary=")), None)
    if not ctype.lower().startswith("multipart/") or not boundary:
        return content
    marker = b"--" + boundary.encode()
    first = content.find(marker)
    head_end = content.find(b"\r\n\r\n", first)
    end = content.find(b"\r\n" + marker, head_end)
    if first < 0 or head_end < 0 or end < 0:
        raise ArchiveError("the archive sent a damaged multipart message (no complete part)")
    return content[head_end + 4 : end]


def _can_fill_in(exc: BaseException) -> bool:
    """True when a failed series stream can be made up for instance by instance (the server refused the
    series-level request or broke its multipart message), False for timeouts, refusals, authentication."""
    from workstation.archive.client import ArchiveTimeout, ArchiveUnavailable, AuthenticationFailed

    if isinstance(exc, (ArchiveTimeout, ArchiveUnavailable, AuthenticationFailed, Cancelled)):
        return False
    return isinstance(exc, ArchiveError)


class _Adapter(HTTPAdapter):
    """Retries as configured, and verifies TLS against the configured CA bundle even when the environment
    names another one (requests lets ``REQUESTS_CA_BUNDLE`` override ``Session.verify``)."""

    def __init__(self, ca_bundle: str | None, **kwargs) -> None:
        self.ca_bundle = ca_bundle
        super().__init__(**kwargs)

    def send(self, request, **kwargs):
        if self.ca_bundle is not None and kwargs.get("verify") is not False:
            kwargs["verify"] = self.ca_bundle
        return super().send(request, **kwargs)


class DicomWebArchive:
    """An :class:`~workstation.archive.client.ArchiveClient` over QIDO-RS / WADO-RS / STOW-RS."""

    def __init__(self, name: str, url: str, *, auth: Auth | None = None, cache_dir: Path | str | None = None,
                 ca_bundle: Path | str | None = None, timeout: float = 30.0, retries: int = 2,
                 backoff: float = 0.25, concurrency: int = 4, cache_max_bytes: int | None = None,
                 list_after: float = _LIST_AFTER) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self.auth = auth or NoAuth()
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.cache_index = (CacheIndex(self.cache_dir, cache_max_bytes or DEFAULT_MAX_MB * 1_000_000)
                            if self.cache_dir is not None else None)
        self.timeout = float(timeout)
        self.concurrency = max(1, int(concurrency))
        self.list_after = max(0.0, float(list_after))  # see _stream_with_prefetch
        self.tokens = None  # the OAuth2 TokenSource, for an archive behind a token server
        self.session = self._session(ca_bundle, retries, backoff)
        self._local = threading.local()
        self._check_session: requests.Session | None = None  # see instance_count
        self._freshness = FreshnessChecks()

    def _session(self, ca_bundle, retries: int, backoff: float) -> requests.Session:
        session = requests.Session()
        if isinstance(self.auth, BasicAuth):
            session.auth = (self.auth.user, self.auth.password)
        elif isinstance(self.auth, BearerToken):
            session.headers["Authorization"] = f"Bearer {self.auth.token}"
        elif isinstance(self.auth, OAuth2ClientCredentials):
            from workstation.archive.oauth import OAuth2Bearer, TokenSource

            self.tokens = TokenSource(self.auth, self.name, verify=str(ca_bundle) if ca_bundle else True,
                                      timeout=self.timeout)
            session.auth = OAuth2Bearer(self.tokens)
        session.verify = str(ca_bundle) if ca_bundle else True
        retry = Retry(total=retries, connect=retries, read=0, status=retries, backoff_factor=backoff,
                      status_forcelist=(502, 503, 504), allowed_methods=None, raise_on_status=False)
        adapter = _Adapter(str(ca_bundle) if ca_bundle else None, max_retries=retry,
                           pool_maxsize=max(4, self.concurrency * 2))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    @property
    def client(self):
        """A dicomweb-client on the shared session (one per thread: it keeps per-call state)."""
        client = getattr(self._local, "client", None)
        if client is None:
            from dicomweb_client.api import DICOMwebClient

            client = DICOMwebClient(self.url, session=self.session, timeout=self.timeout)
            client.set_http_retry_params(retry=False)  # the session's adapter retries, with backoff
            self._local.client = client
        return client

    def _errors(self, what: str):
        return http_errors(self.name, self.url, self.auth.kind, self.timeout, what)

    # -- QIDO-RS -------------------------------------------------------------------------------------
    def ping(self) -> None:
        """One cheap QIDO-RS request; raises the ArchiveError that explains why it failed."""
        with self._errors("answering a test query"):
            self._qido("studies", {}, ("StudyInstanceUID",), 1)

    def _qido(self, path: str, filters: dict[str, str], fields: tuple[str, ...], limit: int = 0,
              offset: int = 0) -> list[dict]:
        """A QIDO-RS search, following pages when ``limit`` is 0 (all matches).

        The query string is built here rather than by dicomweb-client so that the wildcards ``*`` and ``?``
        travel literally: some servers (Orthanc 1.10) do not match percent-encoded wildcards.
        """
        results: list[dict] = []
        page = limit if limit > 0 else _QIDO_PAGE
        while True:
            params = [*filters.items(), *(("includefield", f) for f in fields), ("limit", str(page)),
                      ("offset", str(offset))]
            query = "&".join(f"{quote(k)}={quote(str(v), safe=_LITERAL)}" for k, v in params)
            response = self.session.get(f"{self.url}/{path}?{query}", timeout=self.timeout,
                                        headers={"Accept": "application/dicom+json"})
            response.raise_for_status()
            items = response.json() if response.content.strip() else []
            results.extend(items)
            if limit > 0 or len(items) < page:
                return results
            offset += len(items)

    def find_studies(self, query: StudyQuery | None = None) -> list[StudyRef]:
        query = query or StudyQuery()
        with self._errors("searching for studies"):
            items = self._qido("studies", study_filters(query), STUDY_FIELDS, max(query.limit, 0),
                               max(query.offset, 0))
        return [study_ref(i, self.name) for i in items]

    def find_series(self, study_instance_uid: str) -> list[SeriesRef]:
        with self._errors(f"listing the series of study {study_instance_uid}"):
            items = self._qido(f"studies/{study_instance_uid}/series", {}, SERIES_FIELDS)
        refs = [series_ref(i, study_instance_uid, self.name) for i in items]
        return sorted(refs, key=lambda s: (s.series_number is None, s.series_number or 0, s.series_instance_uid))

    def find_study(self, study_instance_uid: str) -> StudyRef:
        """One study by UID.  Raises NotFound."""
        with self._errors(f"looking up study {study_instance_uid}"):
            items = self._qido("studies", {"StudyInstanceUID": study_instance_uid}, STUDY_FIELDS, 1)
        if not items:
            raise NotFound(f"study {study_instance_uid} is not in the {self.name} archive")
        return study_ref(items[0], self.name)

    def patient_issuers(self, patient_id: str) -> dict[str, str]:
        """Study UID -> Issuer of Patient ID for the studies with this exact Patient ID."""
        with self._errors(f"listing the studies of patient {patient_id}"):
            items = self._qido("studies", {"PatientID": patient_id}, ("IssuerOfPatientID",))
        return {_text(i, "StudyInstanceUID"): _text(i, "IssuerOfPatientID") for i in items}

    def study_of_series(self, series_instance_uid: str) -> str:
        """The Study Instance UID of a series (QIDO-RS over all studies).  Raises NotFound."""
        with self._errors(f"looking up series {series_instance_uid}"):
            items = self._qido("series", {"SeriesInstanceUID": series_instance_uid}, ("StudyInstanceUID",), 1)
        study = _text(items[0], "StudyInstanceUID") if items else ""
        if not study:
            raise NotFound(f"series {series_instance_uid} is not in the {self.name} archive")
        return study

    def instance_count(self, study_uid: str, series_uid: str) -> int | None:
        """How many instances the archive holds in the series (QIDO-RS NumberOfSeriesRelatedInstances); None
        when it cannot tell: unreachable or silent (asked once, without retries, waiting at most
        :data:`~workstation.archive._freshness.CHECK_TIMEOUT_S`; then not asked again for a minute: see
        :mod:`~workstation.archive._freshness`), refusing, or not saying."""
        if self._freshness.skip():
            return None
        if self._check_session is None:
            quick = requests.Session()
            quick.auth, quick.verify = self.session.auth, self.session.verify
            quick.headers.update(self.session.headers)
            adapter = _Adapter(self.session.get_adapter(self.url + "/").ca_bundle, max_retries=0)
            quick.mount("http://", adapter)
            quick.mount("https://", adapter)
            self._check_session = quick
        query = f"SeriesInstanceUID={quote(series_uid)}&includefield=NumberOfSeriesRelatedInstances"
        wait = min(CHECK_TIMEOUT_S, self.timeout)
        try:
            response = self._check_session.get(f"{self.url}/studies/{study_uid}/series?{query}",
                                               timeout=(wait, wait), headers={"Accept": "application/dicom+json"})
        except (requests.ConnectionError, requests.Timeout):
            self._freshness.unanswered()
            return None
        except (requests.RequestException, ArchiveError):
            return None
        self._freshness.answered()
        try:
            response.raise_for_status()
            items = response.json() if response.content.strip() else []
        except (requests.RequestException, ValueError, ArchiveError):
            return None
        counts = [series_ref(i, study_uid, self.name).number_of_instances for i in items]
        return counts[0] if len(counts) == 1 and counts[0] > 0 else None

    def instance_spots(self, study_uid: str, series_uid: str) -> list[InstanceSpot]:
        """The series' instances in spatial order (WADO-RS metadata)."""
        with self._errors(f"reading the metadata of series {series_uid}"):
            items = self.client.retrieve_series_metadata(study_uid, series_uid)
        return spatial_order([s for s in map(_spot, items) if s.sop_uid])

    def _instances_in_order(self, study_uid: str, series_uid: str) -> list[str]:
        return [s.sop_uid for s in self.instance_spots(study_uid, series_uid)]

    # -- WADO-RS -------------------------------------------------------------------------------------
    def fetch_series(self, series_instance_uid: str, progress: ProgressFn | None = None,
                     cancel: CancelToken | None = None, study_instance_uid: str | None = None) -> list[Path]:
        """Retrieve the series into the cache; returns its files.

        A fresh retrieval streams the whole series in one response while (on a slow link) the slices nearest
        the middle are fetched one by one; a retrieval that finds part of the series cached (an earlier one
        was interrupted) fetches only the missing instances, middle first.  The files come in spatial order
        when the series' metadata was read (a resumed or slow retrieval), else in the order the archive sent
        them: the loader orders slices by their own headers.  Raises ArchiveError subclasses or Cancelled;
        the cache then holds only complete instances.
        """
        if self.cache_index is None:
            raise ArchiveError(f"{self.name}: no cache folder configured to retrieve into")
        cached = self.cache_index.open_current(
            series_instance_uid, lambda study: self.instance_count(study_instance_uid or study, series_instance_uid),
            progress)
        if cached is not None:
            return cached  # complete, and the archive has nothing new (or cannot be asked)
        with self.cache_index.retrieving(series_instance_uid):
            study = study_instance_uid or self.study_of_series(series_instance_uid)
            paths, sops, sizes = self._fetch_into_cache(study, series_instance_uid, progress, cancel)
            self.cache_index.finish(study, series_instance_uid, sops, sizes)
        return paths

    def _fetch_into_cache(self, study: str, series_instance_uid: str, progress: ProgressFn | None,
                          cancel: CancelToken | None) -> tuple[list[Path], list[str], dict[str, int]]:
        """(files, their SOP UIDs, sizes of the instances this retrieval wrote: those not indexed yet are
        recorded by :meth:`CacheIndex.finish`, in the transaction that marks the series complete)."""
        cache = self.cache_index.series_cache(study, series_instance_uid)
        cache.remove_parts()
        resuming = bool(cache.files())
        tally = Tally(cache, progress, cancel, fresh=not resuming)
        done = False
        try:
            if resuming:
                sops = self._instances_in_order(study, series_instance_uid)
            else:
                sops = self._stream_with_prefetch(study, series_instance_uid, tally)
            if not sops:
                raise NotFound(f"series {series_instance_uid} has no instances in the {self.name} archive")
            unwritten = set(tally.missing(sops))  # (after a whole stream: none)
            todo = [sop for sop in middle_out(sops) if sop in unwritten and tally.needed(sop)] if unwritten else []
            tally.start(len(sops), len(sops) - len(todo) - len(tally.written))
            self._retrieve(tally, study, series_instance_uid, todo)
            done = True
        finally:
            tally.stop.set()
            if not done:
                tally.flush()  # what was written stays indexed: a later retrieval resumes after it
                cache.remove_parts()  # (after a success every file this retrieval began is in place)
        return cache.paths(sops), sops, tally.sizes()

    def _stream_with_prefetch(self, study: str, series: str, tally: Tally) -> list[str]:
        """Stream the series in the background; returns its instances' SOP UIDs (in spatial order when the
        metadata was read, else in the order they came).

        On a fast link that is all: asking the server for the series' metadata as well would only slow it
        down.  When the stream is still running
        after ``list_after`` seconds, the metadata is read meanwhile and the slices nearest the middle are
        fetched one by one.  The metadata is also read when the stream failed in a way that single
        instances can make up for, or sent parts without a SOP Instance UID."""
        failures: list[BaseException] = []
        url = f"{self.url}/studies/{study}/series/{series}"

        def run() -> None:
            try:
                with self._errors(f"retrieving series {series}"):
                    stream_series(self.session, url, INSTANCE_ACCEPT, self.timeout, tally)
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                failures.append(exc)

        thread = threading.Thread(target=run, name="wado-series", daemon=True)
        thread.start()
        sops: list[str] | None = None
        try:
            deadline = time.monotonic() + self.list_after
            while thread.is_alive() and time.monotonic() < deadline:
                thread.join(0.02)
                tally.check()
            if thread.is_alive():
                sops = self._instances_in_order(study, series)
                tally.start(len(sops), 0)
                for sop in middle_out(sops)[:_PREFETCH]:
                    tally.check()
                    if failures or not thread.is_alive():
                        break
                    self._fetch_instance(tally, study, series, sop)
            while thread.is_alive():
                thread.join(0.05)
                tally.check()
        finally:
            if sys.exc_info()[0] is not None:
                tally.stop.set()
            thread.join()
        if failures and not _can_fill_in(failures[0]):
            raise failures[0]
        if sops is None and (failures or tally.unnamed or not tally.arrived):
            sops = self._instances_in_order(study, series)
        if sops is None:
            sops = list(tally.arrived)
        return sops  # whatever the stream missed is fetched instance by instance

    def _retrieve(self, tally: Tally, study: str, series: str, todo: list[str]) -> None:
        """Fetch single instances, a few at a time, in the given order."""
        if not todo:
            return
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="wado")
        try:
            pending: set[Future] = {pool.submit(self._fetch_instance, tally, study, series, sop) for sop in todo}
            while pending:
                finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                tally.check()
                for fut in finished:
                    fut.result()
        finally:
            tally.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)

    def _fetch_instance(self, tally: Tally, study: str, series: str, sop: str) -> None:
        if tally.stop.is_set() or not tally.needed(sop):
            return
        url = f"{self.url}/studies/{study}/series/{series}/instances/{sop}"
        with self._errors(f"retrieving instance {sop}"):
            response = self.session.get(url, headers={"Accept": INSTANCE_ACCEPT}, timeout=self.timeout)
            response.raise_for_status()
            body = single_part(response)
        tally.write(sop, body)

    def series_instances(self, study: str, series: str, fields: tuple[str, ...]) -> list[dict]:
        """QIDO-RS: the series' instances as DICOM JSON, with these attributes asked for."""
        return self._qido(f"studies/{study}/series/{series}/instances", {}, fields)

    def thumbnail(self, series_instance_uid: str, size: int = 96, study_instance_uid: str | None = None):
        """An (h, w) uint8 picture of the series at most ``size`` pixels a side, rendered by the server
        (WADO-RS series thumbnail, else the middle instance rendered): the series is not retrieved."""
        from workstation.archive._rendered import series_thumbnail

        study = study_instance_uid or self.study_of_series(series_instance_uid)
        with self._errors(f"rendering a thumbnail of series {series_instance_uid}"):
            return series_thumbnail(self, study, series_instance_uid, size)

    # -- STOW-RS -------------------------------------------------------------------------------------
    def store(self, paths: Iterable[Path], progress: ProgressFn | None = None) -> ImportReport:
        """Send DICOM files with STOW-RS (in batches); unreadable files are reported, not sent."""
        from pydicom import dcmread
        from pydicom.errors import InvalidDicomError

        files = list(iter_files(paths))
        imported: list[str] = []
        skipped: list[Skipped] = []
        studies: set[str] = set()
        series: set[str] = set()
        batch: list = []
        for n, path in enumerate(files, 1):
            try:
                ds = dcmread(path)
            except (InvalidDicomError, OSError, ValueError) as exc:
                skipped.append(Skipped(str(path), f"not a readable DICOM file ({exc})"))
                continue
            batch.append((str(path), ds))
            if len(batch) >= _STOW_BATCH or n == len(files):
                self._stow(batch, imported, skipped, studies, series)
                batch = []
            if progress is not None:
                progress(Progress(n, len(files), str(path)))
        if batch:
            self._stow(batch, imported, skipped, studies, series)
        return ImportReport(imported=tuple(imported), skipped=tuple(skipped), studies=tuple(sorted(studies)),
                            series=tuple(sorted(series)))

    def _stow(self, batch: list, imported: list, skipped: list, studies: set, series: set) -> None:
        datasets = [ds for _, ds in batch]
        with self._errors(f"storing {len(batch)} instances"):
            try:
                answer = self.client.store_instances(datasets)
            except requests.HTTPError as exc:
                # an upload sent in chunks cannot be replayed by the OAuth2 retry: its token was renewed
                # after the refusal, so the batch goes once more (a replayed request has a history)
                refused = exc.response is not None and exc.response.status_code == 401 and not exc.response.history
                if self.tokens is None or not refused:
                    raise
                answer = self.client.store_instances(datasets)
        failed = {str(getattr(i, "ReferencedSOPInstanceUID", "")): i for i in answer.get("FailedSOPSequence", [])}
        # PS3.18: every instance stored is listed in the Referenced SOP Sequence; one in neither list was
        # not stored (Orthanc answers an empty or cut-off upload with 200 and two empty lists)
        stored = {str(getattr(i, "ReferencedSOPInstanceUID", "")) for i in answer.get("ReferencedSOPSequence", [])}
        for path, ds in batch:
            sop = str(ds.SOPInstanceUID)
            if sop in failed:
                reason = getattr(failed[sop], "FailureReason", "?")
                skipped.append(Skipped(path, f"{self.name} refused it (failure reason {reason})"))
                continue
            if sop not in stored:
                skipped.append(Skipped(path, f"{self.name} did not confirm storing it"))
                continue
            imported.append(sop)
            studies.add(str(ds.StudyInstanceUID))
            series.add(str(ds.SeriesInstanceUID))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.session.close()
