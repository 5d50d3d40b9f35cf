"""OAuth 2.0 client credentials (RFC 6749 section 4.4) for DICOMweb archives behind a token server.

The workstation asks the token endpoint for an access token (``grant_type=client_credentials``, the client
authenticating with its id and secret in the form body), keeps it until shortly before it expires, and
sends it as ``Authorization: Bearer``.  When the archive still answers 401 (the token was revoked, or the
clocks disagree) a fresh token is fetched and the request sent again, once.  Neither the secret nor a token
ever appears in a message, a ``repr`` or a log line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import requests
from requests.auth import AuthBase

from workstation.archive._http_errors import connection_reason, tls_reason
from workstation.archive.client import ArchiveError, ArchiveTimeout, ArchiveUnavailable, AuthenticationFailed
from workstation.archive.credentials import OAuth2ClientCredentials

#: A token is renewed this many seconds before the expiry the server announced.
EXPIRY_MARGIN = 30.0
#: Lifetime assumed when the token endpoint does not say (``expires_in`` is only RECOMMENDED).
DEFAULT_LIFETIME = 300.0

# RFC 6749 section 5.2 error codes, in words
_ERRORS = {
    "invalid_client": "wrong client id or client secret",
    "unauthorized_client": "this client may not use the client-credentials grant",
    "invalid_scope": "the requested scope is not allowed for this client",
    "invalid_grant": "the grant was refused",
    "unsupported_grant_type": "the server does not offer the client-credentials grant",
    "invalid_request": "the server did not understand the token request",
}


class TokenSource:
    """Access tokens for one client, fetched when needed and shared by every thread."""

    def __init__(self, credentials: OAuth2ClientCredentials, archive: str, *, verify: bool | str = True,
                 timeout: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.credentials = credentials
        self.archive = archive
        self.verify = verify
        self.timeout = float(timeout)
        self.clock = clock
        self.fetched = 0  # tokens obtained so far
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TokenSource({self.credentials.token_url!r}, client {self.credentials.client_id!r})"

    def token(self) -> str:
        """The current access token, fetched anew when there is none or it is about to expire."""
        with self._lock:
            if self._token is None or self.clock() >= self._renew_at:
                self._fetch()
            return self._token

    def refresh(self, refused: str | None) -> str:
        """A new token after the archive refused ``refused`` (another thread may have renewed it already)."""
        with self._lock:
            if self._token is None or self._token == refused:
                self._fetch()
            return self._token

    def _fetch(self) -> None:
        creds = self.credentials
        where = f"the token server {creds.token_url}"
        form = {"grant_type": "client_credentials", "client_id": creds.client_id,
                "client_secret": creds.client_secret}
        if creds.scope:
            form["scope"] = creds.scope
        try:
            response = requests.post(creds.token_url, data=form, timeout=self.timeout, verify=self.verify,
                                     headers={"Accept": "application/json"})
        except requests.exceptions.SSLError as exc:
            raise ArchiveUnavailable(f"TLS connection to {where} failed: {tls_reason(exc)}") from None
        except requests.exceptions.Timeout:
            raise ArchiveTimeout(f"{where} did not answer within {self.timeout:g} s") from None
        except requests.exceptions.ConnectionError as exc:
            raise ArchiveUnavailable(f"cannot reach {where}: {connection_reason(exc)}") from None
        body = _json(response)
        if response.status_code != 200:
            code = str(body.get("error", "")) if body else ""
            reason = _ERRORS.get(code, f"HTTP {response.status_code}" + (f" {code}" if code else ""))
            cls = AuthenticationFailed if response.status_code in (400, 401, 403) else ArchiveError
            raise cls(f"{self.archive}: {where} refused client {creds.client_id!r} ({reason})")
        token = body.get("access_token") if body else None
        if not isinstance(token, str) or not token:
            raise ArchiveError(f"{self.archive}: {where} answered without an access token")
        if str(body.get("token_type", "bearer")).lower() != "bearer":
            raise ArchiveError(f"{self.archive}: {where} issued a {body.get('token_type')!r} token; "
                               "only bearer tokens are supported")
        try:
            lifetime = float(body.get("expires_in", DEFAULT_LIFETIME))
        except (TypeError, ValueError):
            lifetime = DEFAULT_LIFETIME
        self._token = token
        self._renew_at = self.clock() + max(0.0, lifetime - min(EXPIRY_MARGIN, lifetime / 2))
        self.fetched += 1


def _json(response: requests.Response) -> dict | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


class OAuth2Bearer(AuthBase):
    """``requests`` authentication: the source's token as a bearer; on a 401, one retry with a new token."""

    def __init__(self, source: TokenSource) -> None:
        self.source = source

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.source.token()}"
        request.register_hook("response", self._retry_on_401)
        return request

    def _retry_on_401(self, response: requests.Response, **kwargs) -> requests.Response:
        request = response.request
        if response.status_code != 401 or getattr(request, "_oauth_retried", False):
            return response
        refused = str(request.headers.get("Authorization", ""))[len("Bearer "):]
        token = self.source.refresh(refused)
        if request.body is not None and not isinstance(request.body, (bytes, str)):
            return response  # a streamed body is gone: the caller sends it again (with the new token)
        response.content  # noqa: B018 - read the refusal so the connection can be reused
        response.close()
        retry = request.copy()
        retry.headers["Authorization"] = f"Bearer {token}"
        retry._oauth_retried = True  # type: ignore[attr-defined]
        again = response.connection.send(retry, **kwargs)
        again.history.append(response)
        again.request = retry
        return again
