"""Background retrieval of remote series for the study browser, shown in its Downloads tab.

:class:`Retrievals` keeps one :class:`~workstation.archive.prefetch.Prefetcher` for the remote archive in use
(a new one when the series come from another archive), relays its progress from the worker threads to the
GUI thread and into a :class:`~workstation.ui.downloads.DownloadsPanel`, and turns the panel's Cancel,
Pause and Cancel-all into prefetcher calls.  The series the reader opens is loaded by its own task (the
viewport streams it slice by slice); :meth:`Retrievals.watch_open` shows that transfer in the panel too.

A series opened while the prefetcher is still retrieving it would otherwise be retrieved twice at once into
the same cache folder; :meth:`Retrievals.open_when_retrieved` instead lets the running retrieval finish and
then emits :attr:`Retrievals.ready` (the load then reads the cache), and takes a merely queued series out of
the queue so the load fetches it at once.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from workstation.archive.prefetch import QUEUED, RUNNING, Prefetcher, SeriesProgress
from workstation.model.refs import SeriesRef
from workstation.ui.downloads import DownloadsPanel
from workstation.ui.qt_compat import emit


class Retrievals(QObject):
    progress = Signal(object)  # SeriesProgress, after the panel showed it (GUI thread)
    ready = Signal(object)  # SeriesRef whose background retrieval ended: open it now
    _relay = Signal(object)  # SeriesProgress from worker threads
    _ended = Signal(object)  # SeriesRef from worker threads

    def __init__(self, archive, panel: DownloadsPanel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.archive, self.panel = archive, panel
        self.concurrency = 3  # series retrieved at once
        self.prefetcher: Prefetcher | None = None
        self._labels: dict[str, str] = {}
        self._relay.connect(self._show)
        self._ended.connect(lambda ref: emit(self.ready, ref))
        panel.cancel_requested.connect(self.cancel)
        panel.pause_toggled.connect(self.set_paused)

    def _client(self, series_uid: str):
        return self.archive.client(self.archive.owner(series_uid))

    def prefetcher_for(self, series_uid: str) -> Prefetcher:
        """The prefetcher of the archive that listed ``series_uid`` (the previous one stops when it differs)."""
        client = self._client(series_uid)
        if self.prefetcher is None or self.prefetcher.client is not client:
            self.stop()
            self.prefetcher = Prefetcher(client, concurrency=self.concurrency,
                                         on_progress=lambda p: emit(self._relay, p))
            if self.panel.pause_button.isChecked():
                self.prefetcher.pause()
        return self.prefetcher

    def request(self, refs: list[SeriesRef]) -> None:
        """Retrieve these series in the background (each once; cached ones cost no transfer)."""
        if not refs:
            return
        for ref in refs:
            self._labels[ref.series_instance_uid] = ref.series_description or ref.series_instance_uid
        self.prefetcher_for(refs[0].series_instance_uid).request_all(refs)

    def _show(self, p: SeriesProgress) -> None:
        self.panel.show_progress(p, self._labels.get(p.series_uid, p.series_uid))
        emit(self.progress, self.panel.states.get(p.series_uid, p))

    def cancel(self, series_uid: str) -> None:
        """Cancel one background retrieval (what is cached stays; asking again resumes)."""
        if self.prefetcher is not None:
            self.prefetcher.cancel(series_uid)

    def set_paused(self, on: bool) -> None:
        if self.prefetcher is not None:
            (self.prefetcher.pause if on else self.prefetcher.resume)()

    def stop(self) -> None:
        """Cancel every background retrieval and let the prefetcher's threads end."""
        if self.prefetcher is not None:
            self.prefetcher.close(wait=False)
            self.prefetcher = None

    def is_remote(self, series_uid: str) -> bool:
        owner = getattr(self.archive, "owner", None)  # an ArchiveSwitch knows which archive listed it
        return owner is not None and owner(series_uid) != self.archive.local.name

    def watch_open(self, ref: SeriesRef, handle) -> None:
        """Show the transfer of a remote series opened in a viewport (its load task) in the panel."""
        uid = ref.series_instance_uid
        if not self.is_remote(uid):
            return
        index = getattr(self._client(uid), "cache_index", None)
        cached = index is not None and index.complete_files(uid) is not None
        self.panel.watch(uid, ref.series_description or uid, handle, from_cache=cached)

    def open_when_retrieved(self, ref: SeriesRef) -> bool:
        """True when ``ref`` is being retrieved in the background: :attr:`ready` follows when that ends.

        A queued (not yet running) retrieval of it is cancelled instead and False returned: the caller's
        load fetches it now, with the first slice on screen early."""
        uid = ref.series_instance_uid
        pre = self.prefetcher
        state = pre.progress().get(uid) if pre is not None else None
        if state is None or state.state not in (QUEUED, RUNNING):
            return False
        if state.state == QUEUED:
            pre.cancel(uid)
            if pre.progress()[uid].state != RUNNING:  # it did not start meanwhile
                return False
        pre.request(ref).add_done_callback(lambda _future: emit(self._ended, ref))
        return True
