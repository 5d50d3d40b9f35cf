"""TLS for DIMSE associations (PS3.15 Annex B secure transport): settings, the client context, and why a
handshake failed (pynetdicom only logs the reason, so the failure is reproduced here to name it)."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from workstation.archive.client import ArchiveError, TLSFailure


@dataclass(frozen=True)
class DimseTls:
    """TLS on the association: ``ca_bundle`` (PEM) to verify the peer (empty: the system's trusted CAs),
    and a client certificate with its private key for peers that require one (``key`` empty: in ``cert``)."""

    ca_bundle: str = ""
    cert: str = ""
    key: str = ""

    def context(self) -> ssl.SSLContext:
        """A client context that verifies the peer's certificate and host name; raises ArchiveError when a
        file is missing or unreadable."""
        if self.key and not self.cert:
            raise ArchiveError("a TLS private key was given without its certificate")
        for what, name in (("CA bundle", self.ca_bundle), ("client certificate", self.cert),
                           ("client private key", self.key)):
            if name and not Path(name).is_file():
                raise ArchiveError(f"TLS {what} {name}: no such file")
        try:
            context = ssl.create_default_context(cafile=self.ca_bundle or None)
        except ssl.SSLError as exc:
            raise ArchiveError(f"TLS CA bundle {self.ca_bundle}: not a PEM certificate file ({exc.reason})") from None
        if self.cert:
            try:
                context.load_cert_chain(self.cert, self.key or None)
            except ssl.SSLError as exc:
                raise ArchiveError(f"TLS client certificate {self.cert}: cannot load it with its key "
                                   f"({exc.reason or exc})") from None
        return context


def handshake_failure(name: str, host: str, port: int, context: ssl.SSLContext, timeout: float) -> TLSFailure | None:
    """Shake hands with the peer once more and return the TLSFailure that names what went wrong, or None when
    the handshake (and the peer's first reaction to it) is fine."""
    try:
        with socket.create_connection((host, port), timeout=min(timeout, 5.0)) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                # TLS 1.3 servers check the client certificate after the client's handshake is done: their
                # verdict arrives as an alert on the first read
                tls.settimeout(0.5)
                try:
                    tls.recv(1)
                except (TimeoutError, socket.timeout):
                    pass
    except ssl.SSLCertVerificationError as exc:
        return TLSFailure(f"{name}: certificate verify failed: {str(exc.verify_message).rstrip('.')}")
    except ssl.SSLError as exc:
        reason = (exc.reason or str(exc)).replace("_", " ").lower()
        if reason.startswith(("wrong version number", "unexpected eof", "record layer failure")):
            return TLSFailure(f"{name}: the TLS handshake with {host}:{port} failed ({reason}): does that port "
                              "speak TLS?")
        return TLSFailure(f"{name}: the TLS handshake with {host}:{port} failed: {reason}")
    except (ConnectionResetError, BrokenPipeError):
        return TLSFailure(f"{name}: {host}:{port} closed the connection during the TLS handshake: does that port "
                          "speak TLS, and does it need a client certificate?")
    except OSError:
        return None  # not a TLS problem; the caller explains it
    return None


def endpoint_tls(endpoint) -> DimseTls | None:
    """The TLS settings of a DIMSE :class:`~workstation.config.ArchiveEndpoint` (None: in the clear)."""
    if not getattr(endpoint, "tls", False):
        return None
    return DimseTls(ca_bundle=endpoint.ca_bundle, cert=endpoint.tls_cert, key=endpoint.tls_key)
