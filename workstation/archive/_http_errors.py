"""HTTP failures (requests / urllib3) in words for the user, as ArchiveError subclasses."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator

import requests

from workstation.archive.client import (
    ArchiveError,
    ArchiveTimeout,
    ArchiveUnavailable,
    AuthenticationFailed,
    NotFound,
    TLSFailure,
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes/contexts and the exceptions in its args (urllib3 nests them there)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
        todo.extend(x for x in (e.__cause__, e.__context__, getattr(e, "reason", None)) if isinstance(x, BaseException))


def tls_reason(exc: BaseException) -> str:
    """The certificate problem named as OpenSSL names it (expired, hostname mismatch, self-signed...)."""
    for e in _chain(exc):
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {e.verify_message}"
    for e in _chain(exc):
        if isinstance(e, ssl.SSLError):
            return e.reason or str(e)
    return str(exc)


def connection_reason(exc: BaseException) -> str:
    for e in _chain(exc):
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, ConnectionResetError):
            return "connection reset by the server"
    text = str(exc)
    if "Name or service not known" in text or "NameResolutionError" in text or "nodename nor servname" in text:
        return "host name not found"
    if "Connection refused" in text:
        return "connection refused"
    return text


def _is_timeout(exc: BaseException) -> bool:
    from urllib3.exceptions import NewConnectionError, TimeoutError as Urllib3Timeout

    # urllib3 makes NewConnectionError a ConnectTimeoutError for history's sake: a refusal is not a timeout
    return any(isinstance(e, (requests.exceptions.Timeout, Urllib3Timeout, TimeoutError))
               and not isinstance(e, NewConnectionError) for e in _chain(exc))


@contextlib.contextmanager
def http_errors(name: str, url: str, auth_kind: str, timeout: float, what: str) -> Iterator[None]:
    """Translate requests' exceptions raised inside the block into ArchiveError subclasses."""
    try:
        yield
    except requests.exceptions.SSLError as exc:
        raise TLSFailure(f"TLS connection to {url} failed: {tls_reason(exc)}") from None
    except requests.exceptions.HTTPError as exc:
        raise status_error(name, auth_kind, exc.response, what) from None
    except requests.exceptions.RetryError as exc:
        raise ArchiveUnavailable(f"{name} kept failing while {what} ({exc}); try again later") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        reason = connection_reason(exc)
        if reason not in ("connection refused", "host name not found") and _is_timeout(exc):
            raise ArchiveTimeout(f"{name} did not answer within {timeout:g} s while {what}") from None
        raise ArchiveUnavailable(f"cannot reach {url}: {reason}") from None
    except requests.exceptions.ChunkedEncodingError as exc:
        raise ArchiveUnavailable(f"{name} broke off the transfer while {what}: {exc}") from None


def status_error(name: str, auth_kind: str, response: requests.Response | None, what: str) -> ArchiveError:
    """The ArchiveError for an HTTP error status."""
    status = getattr(response, "status_code", 0)
    if status == 401:
        if auth_kind == "basic":
            return AuthenticationFailed(f"wrong user name or password for {name}")
        if auth_kind == "bearer":
            return AuthenticationFailed(f"{name} refused the access token (expired or invalid)")
        if auth_kind == "oauth2":
            return AuthenticationFailed(f"{name} refused the OAuth2 access token, a freshly issued one too "
                                        "(is the token server the one this archive trusts?)")
        return AuthenticationFailed(f"{name} requires authentication (a user name and password, or a token)")
    if status == 403:
        return AuthenticationFailed(f"{name} does not allow this account to do this ({what})")
    if status == 404:
        return NotFound(f"{name} has no such object ({what})")
    if status in (502, 503, 504):
        return ArchiveUnavailable(f"{name} is unavailable (HTTP {status}) while {what}")
    reason = getattr(response, "reason", "") or ""
    return ArchiveError(f"{name} answered HTTP {status} {reason} while {what}".rstrip())
