"""How the workstation proves who it is to an archive, and where it keeps the secrets.

Secrets never go into the settings file or the logs: the representations below hide them, and
:class:`SecretStore` keeps them in the OS keyring when ``keyring`` is importable and has a usable
backend, otherwise in ``<home>/secrets.json`` readable by the user only (mode 0600).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

_KEYRING_SERVICE = "workstation"


@dataclass(frozen=True)
class NoAuth:
    kind: str = field(default="none", init=False)


@dataclass(frozen=True)
class BasicAuth:
    user: str
    password: str = field(repr=False)
    kind: str = field(default="basic", init=False)


@dataclass(frozen=True)
class BearerToken:
    token: str = field(repr=False)
    kind: str = field(default="bearer", init=False)


@dataclass(frozen=True)
class OAuth2ClientCredentials:
    """OAuth 2.0 client credentials: tokens come from ``token_url`` (see :mod:`workstation.archive.oauth`)."""

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str = ""
    kind: str = field(default="oauth2", init=False)


Auth = NoAuth | BasicAuth | BearerToken | OAuth2ClientCredentials


def _keyring():
    """The keyring module when a real (not the fail/null) backend is configured, else None."""
    try:
        import keyring
        from keyring.backends import fail
    except Exception:  # noqa: BLE001 - any import problem means: no keyring
        return None
    with contextlib.suppress(Exception):
        backend = keyring.get_keyring()
        if not isinstance(backend, fail.Keyring) and "null" not in type(backend).__module__.lower():
            return keyring
    return None


class SecretStore:
    """Named secrets (``"archive/<name>/password"``, ``.../token``, ``.../client_secret``) for one home."""

    def __init__(self, home: Path | str, use_keyring: bool = True) -> None:
        self.file = Path(home) / "secrets.json"
        self._keyring = _keyring() if use_keyring else None

    def get(self, key: str) -> str | None:
        if self._keyring is not None:
            with contextlib.suppress(Exception):
                value = self._keyring.get_password(_KEYRING_SERVICE, key)
                if value is not None:
                    return value
        return self._read().get(key)

    def set(self, key: str, value: str) -> None:
        if self._keyring is not None:
            with contextlib.suppress(Exception):
                self._keyring.set_password(_KEYRING_SERVICE, key, value)
                return
        data = self._read()
        data[key] = value
        self._write(data)

    def delete(self, key: str) -> None:
        if self._keyring is not None:
            with contextlib.suppress(Exception):
                self._keyring.delete_password(_KEYRING_SERVICE, key)
        data = self._read()
        if data.pop(key, None) is not None:
            self._write(data)

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.file.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _write(self, data: dict[str, str]) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_name(f".{self.file.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as fp:
                json.dump(data, fp)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.file)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
