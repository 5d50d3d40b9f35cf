"""Command line for remote archives: ``archives add|list|test|remove``, ``fetch`` and ``store``.

Secrets are read from environment variables named on the command line (``--password-env VAR``,
``--token-env VAR``, ``--client-secret-env VAR``), so they never appear in the shell history, the settings file or the logs; they are
kept in the OS keyring when one is available, otherwise in ``<home>/secrets.json`` (mode 0600).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from workstation.config import ArchiveEndpoint, Settings, save_archives

_DIMSE_ADDRESS = re.compile(r"(?P<ae>[^@]{1,16})@(?P<host>[^:@]+):(?P<port>\d{1,5})")


class ArchiveCliError(Exception):
    """A failure to report as one line (the main CLI prints it)."""


def _dimse_address(text: str) -> tuple[str, str, int]:
    m = _DIMSE_ADDRESS.fullmatch(text.strip())
    if not m or not 0 < int(m["port"]) < 65536:
        raise argparse.ArgumentTypeError(f"expected AET@HOST:PORT (e.g. PACS@pacs.example.org:104), got {text!r}")
    return m["ae"], m["host"], int(m["port"])


def add_parsers(sub) -> None:
    """Add ``archives``, ``fetch`` and ``store`` to the main parser's subcommands."""
    p = sub.add_parser("archives", help="list, add, test and remove remote archives")
    actions = p.add_subparsers(dest="archives_action", metavar="ACTION", required=True)
    a = actions.add_parser("add", help="add (or replace) a DICOMweb or DIMSE archive")
    a.add_argument("name", metavar="NAME")
    where = a.add_mutually_exclusive_group(required=True)
    where.add_argument("--dicomweb", metavar="URL", help="DICOMweb root, e.g. https://pacs/dicom-web")
    where.add_argument("--dimse", type=_dimse_address, metavar="AET@HOST:PORT", help="a DIMSE peer")
    a.add_argument("--user", help="user name for HTTP basic authentication")
    a.add_argument("--password-env", metavar="VAR", help="environment variable holding the password")
    a.add_argument("--token-env", metavar="VAR", help="environment variable holding a bearer token")
    a.add_argument("--oauth-token-url", metavar="URL", help="OAuth2 token endpoint (client-credentials grant)")
    a.add_argument("--client-id", metavar="ID", help="OAuth2 client id")
    a.add_argument("--client-secret-env", metavar="VAR", help="environment variable holding the OAuth2 client secret")
    a.add_argument("--scope", default="", metavar="SCOPE", help="OAuth2 scope to ask for (optional)")
    a.add_argument("--ca", type=Path, metavar="FILE", help="CA bundle (PEM) to verify the server's certificate")
    a.add_argument("--calling-ae", default="WORKSTATION", metavar="AET", help="our AE title (DIMSE)")
    a.add_argument("--retrieve", choices=("get", "move"), default="get", help="C-GET or C-MOVE (DIMSE)")
    a.add_argument("--move-port", type=int, default=0, metavar="PORT", help="our storage SCP port for C-MOVE")
    a.add_argument("--tls", action="store_true", help="DIMSE over TLS (peer verified against --ca, else system CAs)")
    a.add_argument("--tls-cert", type=Path, metavar="FILE", help="our client certificate (PEM) for DIMSE TLS")
    a.add_argument("--tls-key", type=Path, metavar="FILE", help="its private key (PEM), unless in --tls-cert")
    a.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS")
    actions.add_parser("list", help="list the archives")
    t = actions.add_parser("test", help="check that an archive answers (C-ECHO or a QIDO-RS query)")
    t.add_argument("name", metavar="NAME")
    r = actions.add_parser("remove", help="forget an archive and its stored secrets")
    r.add_argument("name", metavar="NAME")
    f = sub.add_parser("fetch", help="retrieve a study or series from an archive into the cache")
    f.add_argument("--archive", required=True, metavar="NAME")
    f.add_argument("uid", metavar="STUDY_OR_SERIES_UID")
    s = sub.add_parser("store", help="send DICOM files to an archive")
    s.add_argument("--archive", required=True, metavar="NAME")
    s.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    c = sub.add_parser("cache", help="the retrieval cache: status, pin or unpin a study, clear")
    cache_actions = c.add_subparsers(dest="cache_action", metavar="ACTION", required=True)
    cache_actions.add_parser("status", help="size, limit, instances, series, studies and pinned studies")
    for action, text in (("pin", "keep a study in the cache for offline reading"),
                         ("unpin", "let a study be evicted again")):
        cache_actions.add_parser(action, help=text).add_argument("study_uid", metavar="STUDY_UID")
    clear = cache_actions.add_parser("clear", help="remove every cached series (pinned studies stay)")
    clear.add_argument("--pinned", action="store_true", help="remove the pinned studies too")
    pr = sub.add_parser("priors", help="list the same patient's other studies, newest first")
    pr.add_argument("--archive", metavar="NAME", default="Local", help="Local (default) or a remote archive")
    pr.add_argument("study_uid", metavar="STUDY_UID")


def secret_store(settings: Settings):
    from workstation.archive.credentials import SecretStore

    return SecretStore(settings.home, use_keyring=os.environ.get("WORKSTATION_NO_KEYRING") != "1")


def find_endpoint(settings: Settings, name: str) -> ArchiveEndpoint:
    for ep in settings.archives:
        if ep.name == name:
            return ep
    known = ", ".join(ep.name for ep in settings.archives) or "none; add one with `workstation archives add`"
    raise ArchiveCliError(f"no archive named {name!r} (known: {known})")


def open_named(settings: Settings, name: str):
    """The client for a named archive ('Local' or an unknown name without remotes -> the local archive)."""
    from workstation.archive.factory import open_archive

    return open_archive(find_endpoint(settings, name), settings.instance_cache_dir, secret_store(settings),
                        cache_max_mb=settings.cache_max_mb)


def _secret(var: str | None, what: str) -> str | None:
    if var is None:
        return None
    value = os.environ.get(var, "")
    if not value:
        raise ArchiveCliError(f"--{what}-env {var}: the environment variable is not set or empty")
    return value


def _endpoint_from_args(args: argparse.Namespace) -> ArchiveEndpoint:
    oauth = bool(args.oauth_token_url or args.client_id or args.client_secret_env)
    if args.dimse is not None:
        if args.user or args.password_env or args.token_env or oauth:
            raise ArchiveCliError("--user, --password-env, --token-env and the OAuth2 options apply to DICOMweb "
                                  "archives only")
        if args.retrieve == "move" and not args.move_port:
            raise ArchiveCliError("--retrieve move needs --move-port (where this workstation listens for C-MOVE)")
        ae, host, port = args.dimse
        return ArchiveEndpoint(args.name, "dimse", host=host, port=port, called_ae=ae, calling_ae=args.calling_ae,
                               retrieve=args.retrieve, move_port=args.move_port, timeout=args.timeout,
                               **_dimse_tls_fields(args))
    if args.tls or args.tls_cert or args.tls_key:
        raise ArchiveCliError("--tls, --tls-cert and --tls-key apply to DIMSE archives (DICOMweb: an https:// URL)")
    if sum(map(bool, (args.token_env, args.user or args.password_env, oauth))) > 1:
        raise ArchiveCliError("give one way to authenticate: --user/--password-env, --token-env, or "
                              "--oauth-token-url/--client-id/--client-secret-env")
    if oauth and not (args.oauth_token_url and args.client_id and args.client_secret_env):
        raise ArchiveCliError("OAuth2 needs all three of --oauth-token-url, --client-id and --client-secret-env")
    if oauth and not re.match(r"https?://", args.oauth_token_url):
        raise ArchiveCliError(f"--oauth-token-url {args.oauth_token_url}: expected an http:// or https:// URL")
    if args.password_env and not args.user:
        raise ArchiveCliError("--password-env needs --user")
    if not re.match(r"https?://", args.dicomweb):
        raise ArchiveCliError(f"--dicomweb {args.dicomweb}: expected an http:// or https:// URL")
    ca = ""
    if args.ca is not None:
        if not args.ca.is_file():
            raise ArchiveCliError(f"--ca {args.ca}: no such file")
        ca = str(args.ca.resolve())
    auth = "oauth2" if oauth else "bearer" if args.token_env else "basic" if args.user else "none"
    return ArchiveEndpoint(args.name, "dicomweb", url=args.dicomweb, auth=auth, user=args.user or "",
                           token_url=args.oauth_token_url or "", client_id=args.client_id or "",
                           scope=args.scope if oauth else "", ca_bundle=ca, timeout=args.timeout)


def _dimse_tls_fields(args: argparse.Namespace) -> dict:
    """The endpoint's TLS fields from --tls, --ca, --tls-cert and --tls-key (files checked, paths absolute)."""
    if not args.tls:
        if args.tls_cert or args.tls_key or args.ca:
            raise ArchiveCliError("--ca, --tls-cert and --tls-key need --tls for a DIMSE archive")
        return {}
    if args.retrieve == "move":
        raise ArchiveCliError("--tls works with --retrieve get only (C-MOVE over TLS is not supported)")
    files = {}
    for option, field, path in (("--ca", "ca_bundle", args.ca), ("--tls-cert", "tls_cert", args.tls_cert),
                                ("--tls-key", "tls_key", args.tls_key)):
        if path is not None and not path.is_file():
            raise ArchiveCliError(f"{option} {path}: no such file")
        files[field] = str(path.resolve()) if path is not None else ""
    if files["tls_key"] and not files["tls_cert"]:
        raise ArchiveCliError("--tls-key needs --tls-cert")
    return {"tls": True, **files}


def cmd_archives(settings: Settings, args: argparse.Namespace) -> int:
    return {"add": _add, "list": _list, "test": _test, "remove": _remove}[args.archives_action](settings, args)


def _add(settings: Settings, args: argparse.Namespace) -> int:
    from workstation.archive.factory import client_secret_key, password_key, token_key

    endpoint = _endpoint_from_args(args)
    web = endpoint.kind == "dicomweb"
    password = _secret(args.password_env, "password") if web else None
    token = _secret(args.token_env, "token") if web else None
    client_secret = _secret(args.client_secret_env, "client-secret") if web else None
    others = [ep for ep in settings.archives if ep.name != endpoint.name]
    replaced = len(others) != len(settings.archives)
    secrets = secret_store(settings)
    for key, value in ((password_key(endpoint.name), password), (token_key(endpoint.name), token),
                       (client_secret_key(endpoint.name), client_secret)):
        if value is not None:
            secrets.set(key, value)
        else:
            secrets.delete(key)
    path = save_archives(settings.home, [*others, endpoint])
    print(f"{'updated' if replaced else 'added'} archive {endpoint.name!r} ({_address(endpoint)}) in {path}")
    return 0


def _address(ep: ArchiveEndpoint) -> str:
    if ep.kind == "dicomweb":
        return ep.url
    tls = ", TLS" if ep.tls else ""
    return f"{ep.called_ae}@{ep.host}:{ep.port}, C-{ep.retrieve.upper()} as {ep.calling_ae}{tls}"


def _list(settings: Settings, args: argparse.Namespace) -> int:
    print(f"Local\tembedded\t{settings.archive_dir}")
    for ep in settings.archives:
        who = ep.user or (f"client {ep.client_id} at {ep.token_url}" if ep.auth == "oauth2" else "")
        auth = "" if ep.kind == "dimse" else f"\tauth {ep.auth}" + (f" ({who})" if who else "")
        print(f"{ep.name}\t{ep.kind}\t{_address(ep)}{auth}")
    return 0


def _test(settings: Settings, args: argparse.Namespace) -> int:
    client = open_named(settings, args.name)
    start = time.perf_counter()
    client.ping()
    how = "C-ECHO" if hasattr(client, "echo") else "QIDO-RS query"
    print(f"{args.name}: OK ({how} answered in {(time.perf_counter() - start) * 1000:.0f} ms)")
    return 0


def _remove(settings: Settings, args: argparse.Namespace) -> int:
    from workstation.archive.factory import client_secret_key, password_key, token_key

    find_endpoint(settings, args.name)
    save_archives(settings.home, [ep for ep in settings.archives if ep.name != args.name])
    secrets = secret_store(settings)
    secrets.delete(password_key(args.name))
    secrets.delete(token_key(args.name))
    secrets.delete(client_secret_key(args.name))
    print(f"removed archive {args.name!r}")
    return 0


def _progress_line(label: str):
    if not sys.stderr.isatty():
        return None
    start = time.perf_counter()

    def show(p) -> None:
        mb = p.bytes_done / 1e6
        rate = mb / max(time.perf_counter() - start, 1e-6)
        sys.stderr.write(f"\r\033[K{label}: {p.done}/{p.total} instances, {mb:.1f} MB, {rate:.1f} MB/s")
        sys.stderr.flush()

    return show


def cmd_fetch(settings: Settings, args: argparse.Namespace) -> int:
    from workstation.archive.client import NotFound

    client = open_named(settings, args.archive)
    try:
        series = [s.series_instance_uid for s in client.find_series(args.uid)]
    except NotFound:
        series = []
    targets = series or [args.uid]  # a study's series, else the UID names a series
    for uid in targets:
        progress = _progress_line(f"series {uid}")
        paths = client.fetch_series(uid, progress=progress)
        if progress is not None:
            sys.stderr.write("\r\033[K")
        folder = Path(paths[0]).parent if paths else settings.cache_dir
        print(f"series {uid}: {len(paths)} instances in {folder}")
    return 0


def cmd_store(settings: Settings, args: argparse.Namespace) -> int:
    client = open_named(settings, args.archive)
    report = client.store(args.paths)
    print(f"stored {len(report.imported)} instances in {args.archive} "
          f"({len(report.series)} series of {len(report.studies)} studies)")
    for skip in report.skipped:
        print(f"skipped {skip.path}: {skip.reason}")
    return 0 if report.imported or not report.skipped else 1



def open_cache(settings: Settings):
    from workstation.archive.cache import CacheIndex

    return CacheIndex(settings.instance_cache_dir, settings.cache_max_mb * 1_000_000)


def cmd_cache(settings: Settings, args: argparse.Namespace) -> int:
    index = open_cache(settings)
    try:
        if args.cache_action == "status":
            st = index.status()
            print(f"cache {st.root}: {st.bytes_used / 1e6:.1f} MB of {st.max_bytes / 1e6:.0f} MB, "
                  f"{st.instances} instances in {st.series} series of {st.studies} studies")
            for uid in st.pinned:
                print(f"pinned {uid}")
        elif args.cache_action == "pin":
            index.pin(args.study_uid)
            print(f"pinned study {args.study_uid}")
        elif args.cache_action == "unpin":
            index.unpin(args.study_uid)
            print(f"unpinned study {args.study_uid}")
        else:
            gone = index.clear(include_pinned=args.pinned)
            print(f"removed {gone} series from the cache")
    finally:
        index.close()
    return 0


def _study(client, study_uid: str):
    from workstation.archive.client import NotFound, StudyQuery

    if hasattr(client, "get_study"):
        return client.get_study(study_uid)
    if hasattr(client, "find_study"):
        return client.find_study(study_uid)
    for s in client.find_studies(StudyQuery(limit=0)):
        if s.study_instance_uid == study_uid:
            return s
    raise NotFound(f"study {study_uid} is not in the {client.name} archive")


def cmd_priors(settings: Settings, args: argparse.Namespace) -> int:
    from workstation.archive.priors import find_priors

    if args.archive == "Local":
        from workstation.archive.local import LocalArchive

        client = LocalArchive(settings.archive_dir)
    else:
        client = open_named(settings, args.archive)
    study = _study(client, args.study_uid)
    priors = find_priors(client, study)
    print(f"{len(priors)} prior studies of patient {study.patient_id} in {args.archive}")
    for s in priors:
        print(f"{s.study_date or '-'}\t{'/'.join(s.modalities) or '-'}\t{s.study_description or '-'}\t"
              f"{s.study_instance_uid}")
    return 0


def commands() -> dict:
    """Command name -> handler, for the main CLI's table."""
    return {"archives": cmd_archives, "fetch": cmd_fetch, "store": cmd_store, "cache": cmd_cache,
            "priors": cmd_priors}
