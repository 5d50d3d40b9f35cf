"""One archive face for the browser and viewer over several archives: the local one plus named remotes.

:class:`ArchiveSwitch` searches the *selected* archive, remembers which archive listed each series, and
fetches a series from that archive (remote series land in the bounded cache).  Everything the embedded
archive alone can do (import, delete, thumbnails of local files) goes to the local archive.
Remote clients are built on first use, so a misconfigured archive costs nothing until chosen.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from pathlib import Path

from workstation.archive.client import ArchiveClient, ArchiveError, CancelToken, ProgressFn, StudyQuery
from workstation.model.refs import SeriesRef, StudyRef

ClientFactory = Callable[[], ArchiveClient]


def archive_name_of(archive, series_uid: str) -> str:
    """The name of the archive ``series_uid`` came from: the switch's owner, else the archive's own name.

    Results made on a series (annotations, AI results) go back where its images are.
    """
    owner = getattr(archive, "owner", None)
    if callable(owner):
        return str(owner(series_uid))
    name = getattr(archive, "name", "Local")
    return str(name() if callable(name) else name)


class ArchiveSwitch:
    def __init__(self, local, remotes: dict[str, ClientFactory] | None = None) -> None:
        self.local = local
        self._factories: dict[str, ClientFactory] = dict(remotes or {})
        self._clients: dict[str, ArchiveClient] = {}
        self._owner: dict[str, tuple[str, str]] = {}  # series UID -> (archive name, study UID)
        self._lock = threading.Lock()
        self.current = local.name

    @property
    def name(self) -> str:
        return self.current

    def names(self) -> list[str]:
        return [self.local.name, *self._factories]

    def set_remotes(self, remotes: dict[str, ClientFactory]) -> None:
        """Replace the remote archives (after the archives dialog saved); the local one stays selected
        when the selected remote went away."""
        with self._lock:
            for client in self._clients.values():
                _close(client)
            self._factories, self._clients = dict(remotes), {}
        if self.current not in self.names():
            self.current = self.local.name

    def select(self, name: str) -> None:
        if name not in self.names():
            raise ArchiveError(f"no archive named {name!r}")
        self.current = name

    @property
    def is_remote(self) -> bool:
        return self.current != self.local.name

    def client(self, name: str | None = None) -> ArchiveClient:
        name = name or self.current
        if name == self.local.name:
            return self.local
        with self._lock:
            if name not in self._clients:
                if name not in self._factories:
                    raise ArchiveError(f"no archive named {name!r}")
                self._clients[name] = self._factories[name]()
            return self._clients[name]

    # -- the ArchiveClient face ------------------------------------------------------------------------------
    def find_studies(self, query: StudyQuery | None = None) -> list[StudyRef]:
        return self.client().find_studies(query or StudyQuery())

    def find_series(self, study_instance_uid: str) -> list[SeriesRef]:
        name = self.current
        series = self.client(name).find_series(study_instance_uid)
        for s in series:
            self._owner[s.series_instance_uid] = (name, study_instance_uid)
        return series

    def owner(self, series_uid: str) -> str:
        return self._owner.get(series_uid, (self.local.name, ""))[0]

    def fetch_series(self, series_instance_uid: str, progress: ProgressFn | None = None,
                     cancel: CancelToken | None = None) -> list[Path]:
        name, study = self._owner.get(series_instance_uid, (self.local.name, ""))
        client = self.client(name)
        if study and "study_instance_uid" in inspect.signature(client.fetch_series).parameters:
            return client.fetch_series(series_instance_uid, progress, cancel, study_instance_uid=study)
        return client.fetch_series(series_instance_uid, progress, cancel)

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                _close(client)
            self._clients = {}
        self.local.close()

    def __getattr__(self, attr: str):
        # import_paths, delete_study, get_study, series_files, root...: the embedded archive's own
        if attr.startswith("_") or attr == "local":
            raise AttributeError(attr)
        return getattr(self.local, attr)


def _close(client) -> None:
    close = getattr(client, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # noqa: BLE001 - closing must not stop the others
            pass
