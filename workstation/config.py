"""Frozen settings: an optional TOML file plus the environment.

Where things live (first that applies):

* ``home``: ``$WORKSTATION_HOME``, else ``$XDG_DATA_HOME/workstation``, else ``~/.local/share/workstation``.
* ``archive_dir``: ``home/archive`` (the embedded local archive), unless the TOML file says otherwise.
* ``cache_dir``: ``$XDG_CACHE_HOME/workstation`` (else ``~/.cache/workstation``); with ``$WORKSTATION_HOME``
  set it is ``home/cache`` so that one variable isolates a whole installation (tests, portable use).

The TOML file is ``home/workstation.toml``::

    archive_dir = "/data/archive"        # optional
    cache_dir = "/data/cache"            # optional

    [[archives]]
    name = "PACS"
    kind = "dimse"                       # or "dicomweb"
    host = "pacs.example.org"
    port = 11112
    called_ae = "PACS"
    calling_ae = "WORKSTATION"

    [[archives]]
    name = "Orthanc web"
    kind = "dicomweb"
    url = "http://localhost:8042/dicom-web"

With no ``[[archives]]`` the embedded local archive is the only one.  Only stdlib is imported here.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_FILE_NAME = "workstation.toml"
ARCHIVE_KINDS = ("dicomweb", "dimse")


class ConfigError(ValueError):
    """The configuration file is unreadable or holds an invalid value; the message names which."""


@dataclass(frozen=True)
class ArchiveEndpoint:
    """A remote archive the workstation can query: DICOMweb (``url``) or DIMSE (``host``/``port``/AE titles)."""

    name: str
    kind: str  # "dicomweb" | "dimse"
    url: str = ""
    host: str = ""
    port: int = 104
    called_ae: str = ""
    calling_ae: str = "WORKSTATION"


@dataclass(frozen=True)
class Settings:
    home: Path
    archive_dir: Path
    cache_dir: Path
    archives: tuple[ArchiveEndpoint, ...] = field(default_factory=tuple)
    config_file: Path | None = None  # the TOML file that was read, if any


def _default_home(env: Mapping[str, str]) -> Path:
    if env.get("WORKSTATION_HOME"):
        return Path(env["WORKSTATION_HOME"]).expanduser()
    if env.get("XDG_DATA_HOME"):
        return Path(env["XDG_DATA_HOME"]).expanduser() / "workstation"
    return _user_home(env) / ".local" / "share" / "workstation"


def _user_home(env: Mapping[str, str]) -> Path:
    # honour HOME from the given mapping (tests pass their own), fall back to the OS's idea
    return Path(env["HOME"]) if env.get("HOME") else Path.home()


def _default_cache(env: Mapping[str, str], home: Path) -> Path:
    if env.get("WORKSTATION_HOME"):
        return home / "cache"
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]).expanduser() / "workstation"
    return _user_home(env) / ".cache" / "workstation"


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fp:
            return tomllib.load(fp)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _endpoint(raw: object, where: str) -> ArchiveEndpoint:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: each [[archives]] entry must be a table")
    name, kind = str(raw.get("name", "")).strip(), str(raw.get("kind", "")).strip().lower()
    if not name:
        raise ConfigError(f"{where}: an archive has no name")
    if kind not in ARCHIVE_KINDS:
        raise ConfigError(f"{where}: archive {name!r} has kind {kind!r}; expected one of {', '.join(ARCHIVE_KINDS)}")
    if kind == "dicomweb" and not raw.get("url"):
        raise ConfigError(f"{where}: DICOMweb archive {name!r} needs a url")
    if kind == "dimse" and not (raw.get("host") and raw.get("called_ae")):
        raise ConfigError(f"{where}: DIMSE archive {name!r} needs host and called_ae")
    try:
        port = int(raw.get("port", 104))
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: archive {name!r} has a port that is not a number") from None
    return ArchiveEndpoint(
        name=name,
        kind=kind,
        url=str(raw.get("url", "")),
        host=str(raw.get("host", "")),
        port=port,
        called_ae=str(raw.get("called_ae", "")),
        calling_ae=str(raw.get("calling_ae", "WORKSTATION")),
    )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default ``os.environ``) and ``home/workstation.toml`` if present.

    Raises
    ------
    ConfigError
        The TOML file exists but is invalid.
    """
    env = os.environ if env is None else env
    home = _default_home(env)
    config_file = home / CONFIG_FILE_NAME
    data = _read_toml(config_file) if config_file.is_file() else {}
    archive_dir = Path(data["archive_dir"]).expanduser() if data.get("archive_dir") else home / "archive"
    cache_dir = Path(data["cache_dir"]).expanduser() if data.get("cache_dir") else _default_cache(env, home)
    raw_archives = data.get("archives", [])
    if not isinstance(raw_archives, list):
        raise ConfigError(f"{config_file}: 'archives' must be an array of tables ([[archives]])")
    archives = tuple(_endpoint(a, str(config_file)) for a in raw_archives)
    return Settings(
        home=home,
        archive_dir=archive_dir,
        cache_dir=cache_dir,
        archives=archives,
        config_file=config_file if data else None,
    )
