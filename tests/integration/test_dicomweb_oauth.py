"""OAuth2 client credentials end to end: a token server issues bearer tokens, an authenticating gateway in
front of the real Orthanc lets through only requests that carry a token it issued (and not revoked), and
the workstation gets, caches, renews and sends those tokens.

The gateway stands where a site's OAuth2 proxy stands in front of its archive: it checks the bearer, then
forwards to Orthanc with Orthanc's own credentials, so every answer the workstation sees came from Orthanc.
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
import requests

from tests.conftest import run_cli as run
from tests.integration.test_archive_contract import fresh_copy
from workstation.archive.client import ArchiveUnavailable, AuthenticationFailed, StudyQuery
from workstation.archive.credentials import OAuth2ClientCredentials
from workstation.archive.dicomweb import DicomWebArchive

CLIENT_ID = "workstation"
CLIENT_SECRET = "s3cret-client-for-tests"


class _Server:
    def __init__(self, handler) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class TokenServer(_Server):
    """POST /token with grant_type=client_credentials; knows one client; tokens live until revoked."""

    def __init__(self, expires_in: int = 3600) -> None:
        self.expires_in = expires_in
        self.valid: set[str] = set()
        self.issued: list[str] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
                one = {k: v[0] for k, v in form.items()}
                if self.path != "/token" or one.get("grant_type") != "client_credentials":
                    return self._answer(400, {"error": "unsupported_grant_type"})
                if (one.get("client_id"), one.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
                    return self._answer(401, {"error": "invalid_client"})
                token = "tok-" + secrets.token_urlsafe(16)
                with owner.lock:
                    owner.valid.add(token)
                    owner.issued.append(token)
                return self._answer(200, {"access_token": token, "token_type": "Bearer",
                                          "expires_in": owner.expires_in})

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)

    def revoke_all(self) -> None:
        """Every token issued so far expires now (as far as the gateway is concerned)."""
        with self.lock:
            self.valid.clear()


class Gateway(_Server):
    """Checks ``Authorization: Bearer`` against the token server, then forwards to Orthanc (basic auth)."""

    def __init__(self, tokens: TokenServer, orthanc) -> None:
        self.seen: list[str] = []  # the bearer of every request, accepted or not
        self.refused = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                self._forward("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._forward("POST")

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                    return self.rfile.read(int(self.headers.get("Content-Length", 0)))
                data = bytearray()
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    data += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()  # after the last chunk
                return bytes(data)

            def _forward(self, method: str) -> None:
                header = self.headers.get("Authorization", "")
                bearer = header[len("Bearer "):] if header.startswith("Bearer ") else ""
                with tokens.lock:
                    owner.seen.append(bearer)
                    ok = bearer in tokens.valid
                    owner.refused += not ok
                body = self._body() if method == "POST" else None
                if not ok:
                    data = b'{"error": "invalid_token"}'
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "content-type")}
                with requests.request(method, orthanc.url + self.path, headers=headers, data=body,
                                      auth=orthanc.auth, stream=True, timeout=30) as r:
                    self.send_response(r.status_code)
                    self.send_header("Content-Type", r.headers.get("Content-Type", "application/octet-stream"))
                    self.end_headers()  # HTTP/1.0: the body ends when the connection closes
                    for chunk in r.iter_content(1 << 16):
                        self.wfile.write(chunk)

        super().__init__(Handler)


@pytest.fixture
def oauth_site(orthanc):
    tokens = TokenServer()
    gateway = Gateway(tokens, orthanc.server)
    try:
        yield tokens, gateway
    finally:
        gateway.close()
        tokens.close()


def _archive(tokens: TokenServer, gateway: Gateway, tmp_path, secret: str = CLIENT_SECRET) -> DicomWebArchive:
    creds = OAuth2ClientCredentials(f"{tokens.url}/token", CLIENT_ID, secret)
    return DicomWebArchive("Orthanc", f"{gateway.url}/dicom-web", auth=creds, cache_dir=tmp_path / "cache",
                           retries=0)


def test_cli_oauth_archive_end_to_end(oauth_site, home, capsys, monkeypatch):
    tokens, gateway = oauth_site
    monkeypatch.setenv("WS_CLIENT_SECRET", CLIENT_SECRET)
    code, out, err = run(capsys, "archives", "add", "Web", "--dicomweb", f"{gateway.url}/dicom-web",
                         "--oauth-token-url", f"{tokens.url}/token", "--client-id", CLIENT_ID,
                         "--client-secret-env", "WS_CLIENT_SECRET")
    assert code == 0, err
    assert CLIENT_SECRET not in (home / "workstation.toml").read_text()
    code, out, _ = run(capsys, "archives", "list")
    assert f"Web\tdicomweb\t{gateway.url}/dicom-web\tauth oauth2 (client {CLIENT_ID} at {tokens.url}/token)" in out
    code, out, err = run(capsys, "archives", "test", "Web")
    assert code == 0 and "Web: OK (QIDO-RS query" in out, err
    code, out, err = run(capsys, "studies", "--archive", "Web", "--patient-id", "LIDC-IDRI-0001", "--json")
    assert code == 0, err
    (study,) = json.loads(out)
    code, out, err = run(capsys, "fetch", "--archive", "Web", study["study_instance_uid"])
    assert code == 0 and ": 133 instances in " in out, err
    assert CLIENT_SECRET not in out + err
    # every request carried a token the server issued; each command got one token (cached in between)
    assert gateway.refused == 0 and set(gateway.seen) == set(tokens.issued)
    assert len(tokens.issued) == 3  # archives test, studies, fetch: one token each (a new client per command)


def test_token_cached_then_refreshed_when_revoked_or_expired(oauth_site, tmp_path):
    tokens, gateway = oauth_site
    archive = _archive(tokens, gateway, tmp_path)
    now = [0.0]
    archive.tokens.clock = lambda: now[0]  # the token source's clock, moved on by hand below
    (study,) = archive.find_studies(StudyQuery(patient_id="LIDC-IDRI-0001"))
    archive.find_series(study.study_instance_uid)
    assert len(tokens.issued) == 1 and archive.tokens.fetched == 1  # cached between requests

    tokens.revoke_all()  # the archive no longer takes it: 401, a fresh token, the request again
    (again,) = archive.find_studies(StudyQuery(patient_id="LIDC-IDRI-0001"))
    assert again == study
    assert len(tokens.issued) == 2 and gateway.refused == 1 and gateway.seen[-1] == tokens.issued[-1]

    now[0] += tokens.expires_in  # past the announced expiry the token is renewed before it is sent: no 401
    (series,) = archive.find_series(study.study_instance_uid)
    assert len(tokens.issued) == 3 and gateway.refused == 1 and gateway.seen[-1] == tokens.issued[-1]
    paths = archive.fetch_series(series.series_instance_uid, study_instance_uid=study.study_instance_uid)
    assert len(paths) == 133 and gateway.refused == 1

    copies = [tmp_path / f"new{n}.dcm" for n in range(3)]  # 1.5 MB: sent in chunks, not replayable
    sops = [fresh_copy(src, dst, "WS-OAUTH-STOW")[2] for src, dst in zip(paths[60:63], copies)]
    tokens.revoke_all()
    report = archive.store(copies)
    assert sorted(report.imported) == sorted(sops) and not report.skipped
    assert len(tokens.issued) == 4 and gateway.refused == 2 and gateway.seen[-1] == tokens.issued[-1]
    assert len(archive.find_studies(StudyQuery(patient_id="WS-OAUTH-STOW"))) == 3  # really in Orthanc


def test_wrong_client_secret_is_named(oauth_site, tmp_path, home, capsys, monkeypatch):
    tokens, gateway = oauth_site
    archive = _archive(tokens, gateway, tmp_path, secret="not-the-secret")
    message = (f"^Orthanc: the token server {tokens.url}/token refused client 'workstation' "
               r"\(wrong client id or client secret\)$")
    with pytest.raises(AuthenticationFailed, match=message):
        archive.find_studies()
    with pytest.raises(AuthenticationFailed, match=message):
        archive.fetch_series("1.2.3")
    assert gateway.seen == []  # nothing reached the archive without a token
    assert [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith("cache-index")] == []

    monkeypatch.setenv("WRONG", "not-the-secret")
    run(capsys, "archives", "add", "Web", "--dicomweb", f"{gateway.url}/dicom-web", "--oauth-token-url",
        f"{tokens.url}/token", "--client-id", CLIENT_ID, "--client-secret-env", "WRONG")
    code, out, err = run(capsys, "studies", "--archive", "Web")
    assert code == 1 and err.strip() == (f"workstation: error: Web: the token server {tokens.url}/token refused "
                                         "client 'workstation' (wrong client id or client secret)")
    assert "not-the-secret" not in out + err


def test_token_refused_by_the_archive_and_token_server_down(oauth_site, tmp_path):
    tokens, gateway = oauth_site
    other = TokenServer()  # a token server the gateway does not trust: its tokens never work
    try:
        archive = DicomWebArchive("Orthanc", f"{gateway.url}/dicom-web", cache_dir=tmp_path, retries=0,
                                  auth=OAuth2ClientCredentials(f"{other.url}/token", CLIENT_ID, CLIENT_SECRET))
        with pytest.raises(AuthenticationFailed, match="^Orthanc refused the OAuth2 access token, a freshly "
                                                       "issued one too"):
            archive.find_studies()
        assert len(other.issued) == 2 and gateway.refused == 2  # refreshed once, not again and again
    finally:
        other.close()
    down = f"{other.url}/token"
    archive = DicomWebArchive("Orthanc", f"{gateway.url}/dicom-web", cache_dir=tmp_path, retries=0,
                              auth=OAuth2ClientCredentials(down, CLIENT_ID, CLIENT_SECRET))
    with pytest.raises(ArchiveUnavailable, match=f"^cannot reach the token server {down}: connection refused$"):
        archive.find_studies()
    assert CLIENT_SECRET not in repr(archive.auth) + repr(archive.tokens)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--oauth-token-url", "http://idp/token", "--client-id", "ws"],
         "OAuth2 needs all three of --oauth-token-url, --client-id and --client-secret-env"),
        (["--oauth-token-url", "idp/token", "--client-id", "ws", "--client-secret-env", "HOME"],
         "--oauth-token-url idp/token: expected an http:// or https:// URL"),
        (["--oauth-token-url", "http://idp/token", "--client-id", "ws", "--client-secret-env", "UNSET_VAR_XYZ"],
         "--client-secret-env UNSET_VAR_XYZ: the environment variable is not set or empty"),
        (["--user", "u", "--client-id", "ws"], "give one way to authenticate"),
    ],
    ids=["incomplete", "bad-url", "unset-secret", "two-ways"],
)
def test_oauth_cli_input_errors(home, capsys, extra, message):
    code, _, err = run(capsys, "archives", "add", "W", "--dicomweb", "http://x/dicom-web", *extra)
    assert code == 1 and message in err
    assert not (home / "workstation.toml").exists()


def test_oauth_settings_need_a_token_url_and_a_stored_secret(home, tmp_path):
    from workstation.archive.credentials import SecretStore
    from workstation.archive.factory import open_archive
    from workstation.config import ConfigError, load_settings

    home.mkdir()
    (home / "workstation.toml").write_text('[[archives]]\nname = "W"\nkind = "dicomweb"\nurl = "http://x"\n'
                                           'auth = "oauth2"\nclient_id = "ws"\n')
    with pytest.raises(ConfigError, match="archive 'W' uses oauth2 and needs token_url and client_id"):
        load_settings()
    (home / "workstation.toml").write_text('[[archives]]\nname = "W"\nkind = "dicomweb"\nurl = "http://x"\n'
                                           'auth = "oauth2"\nclient_id = "ws"\ntoken_url = "http://idp/t"\n')
    (ep,) = load_settings().archives
    with pytest.raises(Exception, match="no OAuth2 client secret is stored for archive 'W'"):
        open_archive(ep, tmp_path, SecretStore(home, use_keyring=False))
