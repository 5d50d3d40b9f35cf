"""``workstation archives add|list|test|remove``: settings written, secrets kept out of them (no network)."""

from __future__ import annotations

import socket
import stat
import tomllib

import pytest

from tests.conftest import run_cli as run
from workstation.archive.credentials import BasicAuth, BearerToken, SecretStore
from workstation.archive.factory import endpoint_auth, open_archive
from workstation.config import ArchiveEndpoint, load_settings




def test_add_dicomweb_keeps_the_password_out_of_settings(home, capsys, monkeypatch):
    monkeypatch.setenv("PACS_PW", "hunter2-secret")
    code, out, _ = run(capsys, "archives", "add", "Web", "--dicomweb", "https://pacs.example.org/dicom-web",
                       "--user", "rad", "--password-env", "PACS_PW")
    assert code == 0 and "added archive 'Web'" in out
    toml = (home / "workstation.toml").read_text()
    assert "hunter2" not in toml
    assert tomllib.loads(toml)["archives"][0] == {"name": "Web", "kind": "dicomweb",
                                                  "url": "https://pacs.example.org/dicom-web", "auth": "basic",
                                                  "user": "rad"}
    secrets = home / "secrets.json"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    (ep,) = load_settings().archives
    assert endpoint_auth(ep, SecretStore(home, use_keyring=False)) == BasicAuth("rad", "hunter2-secret")
    assert "hunter2" not in repr(endpoint_auth(ep, SecretStore(home, use_keyring=False)))
    code, out, _ = run(capsys, "archives", "list")
    assert "Web\tdicomweb\thttps://pacs.example.org/dicom-web\tauth basic (rad)" in out and "hunter2" not in out


def test_add_token_dimse_replace_and_remove(home, capsys, monkeypatch):
    monkeypatch.setenv("TOKEN", "abc.def")
    assert run(capsys, "archives", "add", "W", "--dicomweb", "http://x/dicom-web", "--token-env", "TOKEN")[0] == 0
    (ep,) = load_settings().archives
    assert endpoint_auth(ep, SecretStore(home, use_keyring=False)) == BearerToken("abc.def")
    code, out, _ = run(capsys, "archives", "add", "P", "--dimse", "PACS@pacs.local:11112", "--retrieve", "move",
                       "--move-port", "11113")
    assert code == 0
    assert load_settings().archives[1] == ArchiveEndpoint("P", "dimse", host="pacs.local", port=11112,
                                                          called_ae="PACS", retrieve="move", move_port=11113)
    code, out, _ = run(capsys, "archives", "add", "W", "--dicomweb", "http://y/dicom-web")
    assert "updated archive 'W'" in out
    assert [e.name for e in load_settings().archives] == ["P", "W"]
    assert SecretStore(home, use_keyring=False).get("archive/W/token") is None  # the old token went too
    assert run(capsys, "archives", "remove", "P")[0] == 0
    assert [e.name for e in load_settings().archives] == ["W"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["archives", "add", "W", "--dicomweb", "http://x", "--user", "u", "--password-env", "UNSET_VAR_XYZ"],
         "--password-env UNSET_VAR_XYZ: the environment variable is not set or empty"),
        (["archives", "add", "W", "--dicomweb", "http://x", "--password-env", "HOME"], "--password-env needs --user"),
        (["archives", "add", "W", "--dicomweb", "ftp://x"], "expected an http:// or https:// URL"),
        (["archives", "add", "P", "--dimse", "PACS@h:104", "--retrieve", "move"], "--retrieve move needs --move-port"),
        (["archives", "add", "W", "--dicomweb", "http://x", "--ca", "/no/such.pem"], "--ca /no/such.pem: no such file"),
        (["fetch", "--archive", "Nope", "1.2.3"], "no archive named 'Nope'"),
    ],
)
def test_archive_cli_errors(home, capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 1 and message in err


def test_bad_dimse_address_is_a_usage_error(home, capsys):
    code, _, err = run(capsys, "archives", "add", "P", "--dimse", "pacs:104")
    assert code == 2 and "expected AET@HOST:PORT" in err


def test_archives_test_reports_a_closed_port(home, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run(capsys, "archives", "add", "Down", "--dicomweb", f"http://127.0.0.1:{port}/dicom-web", "--timeout", "2")
    code, _, err = run(capsys, "archives", "test", "Down")
    assert code == 1 and f"cannot reach http://127.0.0.1:{port}/dicom-web: connection refused" in err


def test_missing_secret_is_named(home, tmp_path):
    ep = ArchiveEndpoint("W", "dicomweb", url="http://x", auth="basic", user="u")
    with pytest.raises(Exception, match="no password is stored for archive 'W'"):
        open_archive(ep, tmp_path, SecretStore(home, use_keyring=False))


def test_dimse_associations_setting_reaches_the_client(tmp_path):
    from workstation.config import ConfigError

    env = {"WORKSTATION_HOME": str(tmp_path)}
    table = '[[archives]]\nname = "PACS"\nkind = "dimse"\nhost = "pacs.example.org"\ncalled_ae = "PACS"\n'
    (tmp_path / "workstation.toml").write_text(table + "associations = 4\n")
    endpoint = load_settings(env).archives[0]
    assert endpoint.associations == 4
    assert open_archive(endpoint, cache_dir=tmp_path / "cache").associations == 4
    (tmp_path / "workstation.toml").write_text(table)
    assert load_settings(env).archives[0].associations == 1  # one association unless asked
    for bad, message in (("0", "expected 1 to 16"), ('"many"', "not a number")):
        (tmp_path / "workstation.toml").write_text(table + f"associations = {bad}\n")
        with pytest.raises(ConfigError, match=message):
            load_settings(env)
