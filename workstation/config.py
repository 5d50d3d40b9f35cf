"""Frozen settings: an optional TOML file plus the environment.

Where things live (first that applies):

* ``home``: ``$WORKSTATION_HOME``, else ``$XDG_DATA_HOME/workstation``, else ``~/.local/share/workstation``.
* ``archive_dir``: ``home/archive`` (the embedded local archive), unless the TOML file says otherwise.
* ``cache_dir``: ``$XDG_CACHE_HOME/workstation`` (else ``~/.cache/workstation``); with ``$WORKSTATION_HOME``
  set it is ``home/cache`` so that one variable isolates a whole installation (tests, portable use).

The TOML file is ``home/workstation.toml``::

    archive_dir = "/data/archive"        # optional
    cache_dir = "/data/cache"            # optional
    cache_max_mb = 20000                 # size limit of the retrieval cache; least recently used out
    user_name = "Smith^Jane"             # who signs AI review decisions; default: the OS user
    ai_autorun = ["brainchop-tissue"]    # plugins run by themselves when a series they take opens
    ai_threads = 4                       # inference threads per AI run; 0 (default) = onnxruntime's own
    plugin_dirs = ["/opt/site-plugins"]  # more plugin folders (<dir>/<id>/plugin.toml)

    [[archives]]
    name = "PACS"
    kind = "dimse"                       # or "dicomweb"
    host = "pacs.example.org"
    port = 11112
    called_ae = "PACS"
    calling_ae = "WORKSTATION"

    retrieve = "move"                    # or "get" (the default)
    move_port = 11113                    # where the workstation's storage SCP listens for C-MOVE
    # associations = 4  (C-GET) shares a series over several associations: faster from a distant archive,
    # where every instance costs a round trip; 1 (the default) is fastest on a local network
    # tls = true  (C-GET only): ca_bundle = "/etc/pki/site-ca.pem"; a client certificate if the PACS wants
    # one: tls_cert = "/etc/pki/ws.pem", tls_key = "/etc/pki/ws.key"

    [[archives]]
    name = "Orthanc web"
    kind = "dicomweb"
    url = "https://pacs.example.org/dicom-web"
    auth = "basic"                       # "none" (default), "basic", "bearer" or "oauth2"
    user = "radiologist"                 # the password / token lives in the keyring or secrets file
    # auth = "oauth2" instead: token_url = "https://idp/token", client_id = "..." (scope optional);
    # the client secret lives in the keyring or secrets file
    ca_bundle = "/etc/pki/site-ca.pem"   # optional; else the system's trusted CAs
    timeout = 30                         # seconds

With no ``[[archives]]`` the embedded local archive is the only one.  Only stdlib is imported here.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_FILE_NAME = "workstation.toml"
DEFAULT_CACHE_MAX_MB = 20000
ARCHIVE_KINDS = ("dicomweb", "dimse")
AUTH_KINDS = ("none", "basic", "bearer")  # a user (basic) or one stored secret (bearer)
ALL_AUTH_KINDS = (*AUTH_KINDS, "oauth2")  # oauth2: token_url + client_id, the client secret stored
RETRIEVE_KINDS = ("get", "move")


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
    retrieve: str = "get"  # DIMSE: "get" | "move"
    move_port: int = 0  # DIMSE C-MOVE: the port of the workstation's own storage SCP
    associations: int = 1  # DIMSE C-GET: associations sharing one series retrieval
    auth: str = "none"  # DICOMweb: "none" | "basic" | "bearer" | "oauth2" (secrets are kept elsewhere)
    user: str = ""
    token_url: str = ""  # DICOMweb auth "oauth2": the token endpoint (client-credentials grant)
    client_id: str = ""  # ... and the client; its secret is kept with the other secrets
    scope: str = ""  # ... and the scope to ask for (optional)
    ca_bundle: str = ""
    timeout: float = 30.0
    tls: bool = False  # DIMSE: TLS on the association (verified against ca_bundle, else the system's CAs)
    tls_cert: str = ""  # DIMSE TLS: the workstation's client certificate (PEM), for peers that require one
    tls_key: str = ""  # ... and its private key (PEM; empty: in tls_cert)


@dataclass(frozen=True)
class Settings:
    home: Path
    archive_dir: Path
    cache_dir: Path
    archives: tuple[ArchiveEndpoint, ...] = field(default_factory=tuple)
    config_file: Path | None = None  # the TOML file that was read, if any
    cache_max_mb: int = DEFAULT_CACHE_MAX_MB  # retrieval cache size limit (megabytes)
    user_name: str = ""  # who signs review decisions on AI findings; "" = the OS user
    ai_autorun: tuple[str, ...] = ()  # plugin ids run automatically when a series they take is opened
    ai_threads: int = 0  # onnxruntime intra-op threads for AI runs; 0 = onnxruntime's default (all cores)
    plugin_dirs: tuple[Path, ...] = ()  # folders of site plugins (<dir>/<id>/plugin.toml), besides the built-in ones

    @property
    def instance_cache_dir(self) -> Path:
        """Where instances retrieved from remote archives are cached."""
        return self.cache_dir / "instances"


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
        move_port = int(raw.get("move_port", 0))
        timeout = float(raw.get("timeout", 30.0))
        associations = int(raw.get("associations", 1))
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: archive {name!r} has a port, timeout or associations that is not a number") \
            from None
    if not 1 <= associations <= 16:
        raise ConfigError(f"{where}: archive {name!r} has associations = {associations}; expected 1 to 16")
    auth = str(raw.get("auth", "none")).strip().lower()
    retrieve = str(raw.get("retrieve", "get")).strip().lower()
    if auth not in ALL_AUTH_KINDS:
        raise ConfigError(f"{where}: archive {name!r} has auth {auth!r}; expected one of {', '.join(ALL_AUTH_KINDS)}")
    if retrieve not in RETRIEVE_KINDS:
        raise ConfigError(f"{where}: archive {name!r} has retrieve {retrieve!r}; expected get or move")
    if auth == "oauth2" and not (raw.get("token_url") and raw.get("client_id")):
        raise ConfigError(f"{where}: archive {name!r} uses oauth2 and needs token_url and client_id")
    if kind == "dimse" and retrieve == "move" and not move_port:
        raise ConfigError(f"{where}: DIMSE archive {name!r} retrieves by C-MOVE and needs a move_port")
    if not isinstance(raw.get("tls", False), bool):
        raise ConfigError(f"{where}: archive {name!r} has tls = {raw.get('tls')!r}; expected true or false")
    if kind == "dimse" and raw.get("tls") and retrieve == "move":
        raise ConfigError(f"{where}: DIMSE archive {name!r}: TLS works with retrieve = \"get\" only")
    return ArchiveEndpoint(
        name=name,
        kind=kind,
        url=str(raw.get("url", "")),
        host=str(raw.get("host", "")),
        port=port,
        called_ae=str(raw.get("called_ae", "")),
        calling_ae=str(raw.get("calling_ae", "WORKSTATION")),
        retrieve=retrieve,
        move_port=move_port,
        associations=associations,
        auth=auth,
        user=str(raw.get("user", "")),
        token_url=str(raw.get("token_url", "")),
        client_id=str(raw.get("client_id", "")),
        scope=str(raw.get("scope", "")),
        ca_bundle=str(raw.get("ca_bundle", "")),
        timeout=timeout,
        tls=bool(raw.get("tls", False)),
        tls_cert=str(raw.get("tls_cert", "")),
        tls_key=str(raw.get("tls_key", "")),
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
    try:
        cache_max_mb = int(data.get("cache_max_mb", DEFAULT_CACHE_MAX_MB))
    except (TypeError, ValueError):
        raise ConfigError(f"{config_file}: cache_max_mb must be a whole number of megabytes") from None
    if cache_max_mb < 1:
        raise ConfigError(f"{config_file}: cache_max_mb must be at least 1")
    ai = _ai_settings(data, config_file)
    return Settings(
        **ai,
        cache_max_mb=cache_max_mb,
        home=home,
        archive_dir=archive_dir,
        cache_dir=cache_dir,
        archives=archives,
        config_file=config_file if data else None,
    )


def _ai_settings(data: dict, config_file: Path) -> dict:
    """``user_name``, ``ai_autorun = ["plugin-id", ...]`` and ``plugin_dirs = ["/path", ...]`` from the file."""
    user = data.get("user_name", "")
    if not isinstance(user, str):
        raise ConfigError(f"{config_file}: user_name must be a string")
    lists = {}
    for key in ("ai_autorun", "plugin_dirs"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ConfigError(f"{config_file}: {key} must be an array of non-empty strings")
        lists[key] = value
    threads = data.get("ai_threads", 0)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ConfigError(f"{config_file}: ai_threads must be a whole number, 0 (onnxruntime's default) or more")
    return {"user_name": user.strip(), "ai_threads": threads,
            "ai_autorun": tuple(v.strip() for v in lists["ai_autorun"]),
            "plugin_dirs": tuple(Path(v).expanduser() for v in lists["plugin_dirs"])}


# -- writing ------------------------------------------------------------------------------------------------
def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    text = "".join(c if c >= " " else f"\\u{ord(c):04x}" for c in text)  # no raw control characters
    return f'"{text}"'


def _endpoint_table(ep: ArchiveEndpoint) -> dict:
    """The endpoint's non-default fields (name and kind always)."""
    default = ArchiveEndpoint(name=ep.name, kind=ep.kind)
    table = {"name": ep.name, "kind": ep.kind}
    for key in ArchiveEndpoint.__dataclass_fields__:
        value = getattr(ep, key)
        if key not in table and value != getattr(default, key):
            table[key] = value
    return table


def save_archives(home: Path, archives: tuple[ArchiveEndpoint, ...] | list[ArchiveEndpoint]) -> Path:
    """Rewrite ``home/workstation.toml`` with these archives, keeping its other top-level settings.

    Comments in the file are not kept.  The file is replaced atomically.  Secrets never pass through here.
    """
    path = Path(home) / CONFIG_FILE_NAME
    data = _read_toml(path) if path.is_file() else {}
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items()
             if k != "archives" and not isinstance(v, (dict, list))]
    lines += [f"{k} = [{', '.join(_toml_value(x) for x in v)}]" for k, v in data.items()  # ai_autorun, ...
              if k != "archives" and isinstance(v, list) and not any(isinstance(x, (dict, list)) for x in v)]
    for ep in archives:
        lines += ["", "[[archives]]", *(f"{k} = {_toml_value(v)}" for k, v in _endpoint_table(ep).items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines).lstrip("\n") + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
