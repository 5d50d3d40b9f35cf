"""Archive clients from settings: an :class:`~workstation.config.ArchiveEndpoint` plus its secrets."""

from __future__ import annotations

from pathlib import Path

from workstation.archive.client import ArchiveClient, ArchiveError
from workstation.archive.credentials import (
    Auth,
    BasicAuth,
    BearerToken,
    NoAuth,
    OAuth2ClientCredentials,
    SecretStore,
)
from workstation.config import ArchiveEndpoint


def password_key(name: str) -> str:
    return f"archive/{name}/password"


def token_key(name: str) -> str:
    return f"archive/{name}/token"


def client_secret_key(name: str) -> str:
    return f"archive/{name}/client_secret"


def endpoint_auth(endpoint: ArchiveEndpoint, secrets: SecretStore | None) -> Auth:
    """The credentials of a DICOMweb endpoint; raises ArchiveError when a needed secret is missing."""
    if endpoint.auth == "none":
        return NoAuth()
    if endpoint.auth == "oauth2":
        return oauth2_auth(endpoint, secrets)
    key = password_key(endpoint.name) if endpoint.auth == "basic" else token_key(endpoint.name)
    secret = secrets.get(key) if secrets is not None else None
    if secret is None:
        what = "password" if endpoint.auth == "basic" else "access token"
        raise ArchiveError(f"no {what} is stored for archive {endpoint.name!r}; add it again with "
                           f"`workstation archives add {endpoint.name} ... --{'password' if what == 'password' else 'token'}-env VAR`")
    if endpoint.auth == "basic":
        return BasicAuth(endpoint.user, secret)
    return BearerToken(secret)


def oauth2_auth(endpoint: ArchiveEndpoint, secrets: SecretStore | None) -> OAuth2ClientCredentials:
    secret = secrets.get(client_secret_key(endpoint.name)) if secrets is not None else None
    if secret is None:
        raise ArchiveError(f"no OAuth2 client secret is stored for archive {endpoint.name!r}; add it again with "
                           f"`workstation archives add {endpoint.name} ... --client-secret-env VAR`")
    return OAuth2ClientCredentials(endpoint.token_url, endpoint.client_id, secret, endpoint.scope)


def open_archive(endpoint: ArchiveEndpoint, cache_dir: Path | str, secrets: SecretStore | None = None,
                 *, move_listen_host: str = "", cache_max_mb: int | None = None) -> ArchiveClient:
    """A DICOMweb or DIMSE client for the endpoint, retrieving into ``cache_dir`` (bounded to
    ``cache_max_mb`` megabytes, least recently used series out)."""
    max_bytes = cache_max_mb * 1_000_000 if cache_max_mb else None
    if endpoint.kind == "dicomweb":
        from workstation.archive.dicomweb import DicomWebArchive

        return DicomWebArchive(endpoint.name, endpoint.url, auth=endpoint_auth(endpoint, secrets),
                               cache_dir=cache_dir, ca_bundle=endpoint.ca_bundle or None, timeout=endpoint.timeout,
                               cache_max_bytes=max_bytes)
    if endpoint.kind == "dimse":
        from workstation.archive.dimse import DimseArchive, endpoint_tls

        return DimseArchive(endpoint.name, endpoint.host, endpoint.port, endpoint.called_ae, endpoint.calling_ae,
                            retrieve=endpoint.retrieve, move_destination_port=endpoint.move_port or None,
                            move_listen_host=move_listen_host, cache_dir=cache_dir, timeout=endpoint.timeout,
                            cache_max_bytes=max_bytes, tls=endpoint_tls(endpoint),
                            associations=endpoint.associations)
    raise ArchiveError(f"archive {endpoint.name!r} has an unknown kind {endpoint.kind!r}")
