"""What a TLS endpoint really serves: a handshake, the presented chain, and its validation.

:func:`probe` connects, completes a TLS handshake without trusting anything
(so that a wrong or broken certificate can still be seen), records the
certificates the server sent, and then validates that chain with
cryptography's verifier (RFC 5280 path building, the server name, validity
at the current time) against the given CA bundle or the system trust store.
"""
from __future__ import annotations

import _ssl
import datetime as dt
import hashlib
import ipaddress
import os
import select
import socket
import ssl
import time
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

from cryptography import x509
from cryptography.x509.verification import DNSName, IPAddress, PolicyBuilder, Store, VerificationError

from agent.errors import ProbeError

__all__ = ["ProbeResult", "probe", "validate_chain", "system_roots", "SYSTEM_CA_FILE", "Handshake", "HandshakeError",
           "handshake"]

SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"


@dataclass(frozen=True)
class ProbeResult:
    """One handshake with one endpoint.

    ``chain_ders`` are the certificates the server sent after its own
    (``leaf_der``), in the order sent. ``validated`` says whether that chain
    leads to a trusted root and names ``sni`` (or ``host``);
    ``validation_error`` says why not.
    """

    host: str
    port: int
    sni: str | None
    leaf_der: bytes = field(repr=False)
    fingerprint: str                      # SHA-256 of leaf_der, lower-case hex
    chain_ders: tuple[bytes, ...] = field(repr=False)
    protocol: str                         # e.g. "TLSv1.3"
    cipher: str                           # e.g. "TLS_AES_256_GCM_SHA384"
    validated: bool
    validation_error: str                 # "" when validated
    seconds: float                        # connect + handshake

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _presented(tls: ssl.SSLSocket) -> list[bytes]:
    getter: Any = getattr(tls, "get_unverified_chain", None)        # public from Python 3.13
    if getter is None:
        getter = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)  # private in 3.10-3.12
    if getter is not None:
        out = []
        for item in getter() or []:
            out.append(bytes(item) if isinstance(item, (bytes, bytearray)) else item.public_bytes(_ssl.ENCODING_DER))
        if out:
            return out
    leaf = tls.getpeercert(binary_form=True)
    return [leaf] if leaf else []


@lru_cache(maxsize=4)
def _load_roots(path: str, mtime_ns: int) -> tuple[x509.Certificate, ...]:
    """Every certificate of a PEM bundle that parses (one odd root must not disable all the others)."""
    with open(path, "rb") as f:
        data = f.read()
    out = []
    end_marker = b"-----END CERTIFICATE-----"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # old roots with non-positive serials: still usable as anchors
        for chunk in data.split(end_marker)[:-1]:
            try:
                out.append(x509.load_pem_x509_certificate(chunk + end_marker + b"\n"))
            except ValueError:
                continue
    return tuple(out)


def system_roots() -> tuple[x509.Certificate, ...]:
    """The system trust store (Debian's ca-certificates bundle, or what OpenSSL names)."""
    paths = [ssl.get_default_verify_paths().cafile, ssl.get_default_verify_paths().openssl_cafile, SYSTEM_CA_FILE]
    for p in paths:
        if p and os.path.isfile(p):
            try:
                return _load_roots(p, os.stat(p).st_mtime_ns)
            except (OSError, ValueError):
                continue
    return ()


def _subject(name: str) -> DNSName | IPAddress:
    try:
        return IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return DNSName(name)


def validate_chain(leaf_der: bytes, chain_ders: list[bytes] | tuple[bytes, ...], name: str,
                   ca_bundle: bytes | None = None, now: dt.datetime | None = None) -> str:
    """"" when the chain validates for ``name`` against ``ca_bundle`` (PEM) or the system roots; else why not."""
    try:
        leaf = x509.load_der_x509_certificate(leaf_der)
        intermediates = [x509.load_der_x509_certificate(d) for d in chain_ders]
    except ValueError:
        return "the server sent a certificate that cannot be parsed"
    if ca_bundle is not None:
        try:
            roots = x509.load_pem_x509_certificates(ca_bundle)
        except ValueError:
            return "the CA bundle holds no PEM certificates"
    else:
        roots = list(system_roots())
        if not roots:
            return f"no system trust store found ({SYSTEM_CA_FILE})"
    try:
        subject = _subject(name)
    except ValueError:
        return f"{name!r} is not a valid host name"
    builder = PolicyBuilder().store(Store(roots)).time(now or dt.datetime.now(dt.timezone.utc))
    try:
        builder.build_server_verifier(subject).verify(leaf, intermediates)
    except VerificationError as e:
        return f"the chain does not validate for {name}: {e}"
    except ValueError as e:
        return f"the chain cannot be validated: {e}"
    return ""


# Stable codes for why a handshake gave no certificate (HandshakeError.code).
REFUSED = "refused"                  # nothing listens there
TIMEOUT = "timeout"                  # no complete answer within the timeout
NOT_TLS = "not_tls"                  # something answers, but not TLS (or STARTTLS is not offered)
HANDSHAKE_FAILED = "handshake_failed"  # a TLS server refused the handshake (alert), or sent no certificate
UNREACHABLE = "unreachable"          # no route, host down, name does not resolve

# OpenSSL reasons that mean "the peer does not speak TLS at all"
_NOT_TLS_REASONS = {
    "WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST", "PACKET_LENGTH_TOO_LONG",
    "RECORD_LAYER_FAILURE", "RECORD_LENGTH_MISMATCH", "WRONG_SSL_VERSION", "UNEXPECTED_MESSAGE",
    "BAD_PACKET_LENGTH", "UNEXPECTED_EOF_WHILE_READING", "NO_PROTOCOLS_AVAILABLE",
}


class HandshakeError(ProbeError):
    """A handshake that gave no certificate; ``code`` is one of the stable codes above."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Handshake:
    """What one completed handshake showed: the certificates sent (leaf first), protocol, cipher."""

    presented: tuple[bytes, ...] = field(repr=False)
    protocol: str
    cipher: str
    seconds: float


Prepare = Callable[[socket.socket, float], None]   # (plain socket, monotonic deadline): e.g. a STARTTLS exchange


def _wait(sock: socket.socket, write: bool, deadline: float) -> bool:
    """Wait until ``sock`` is readable (or writable); False when the deadline passed first."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    if hasattr(select, "poll"):
        p = select.poll()
        p.register(sock, select.POLLOUT if write else select.POLLIN)
        return bool(p.poll(remaining * 1000.0))
    r, w, _ = select.select([] if write else [sock], [sock] if write else [], [], remaining)
    return bool(r or w)


def _not_server_name(sni: str | None) -> str | None:
    if not sni:
        return None
    try:
        ipaddress.ip_address(sni)
        return None                        # SNI never carries IP addresses
    except ValueError:
        return sni


def handshake(host: str, port: int, sni: str | None = None, timeout: float = 5.0,
              prepare: Prepare | None = None) -> Handshake:
    """One TLS handshake with ``host:port`` that trusts nothing, within a hard ``timeout``.

    The timeout bounds connect, ``prepare`` (a STARTTLS exchange on the plain
    socket, given the monotonic deadline) and the handshake together: a server
    that accepts and then trickles or says nothing cannot stretch it. Raises
    :class:`HandshakeError` with a stable ``code`` and a message naming the
    endpoint. (Name resolution of a host name is not bounded by it.)
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE        # see everything; validation follows, separately
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout
    raw: socket.socket | None = None
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
        if time.monotonic() >= deadline:      # a name with several addresses may have used it all up
            raise TimeoutError
        if prepare is not None:
            prepare(raw, deadline)
        raw.setblocking(False)
        tls = ctx.wrap_socket(raw, server_hostname=_not_server_name(sni), do_handshake_on_connect=False)
        raw = tls
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if not _wait(tls, False, deadline):
                    raise TimeoutError from None
            except ssl.SSLWantWriteError:
                if not _wait(tls, True, deadline):
                    raise TimeoutError from None
        presented = tuple(_presented(tls))
        protocol = tls.version() or ""
        cipher = (tls.cipher() or ("", "", 0))[0]
    except HandshakeError:
        raise
    except (socket.timeout, TimeoutError):
        raise HandshakeError(TIMEOUT, f"{where}: no TLS answer within {timeout:g} s") from None
    except ssl.SSLError as e:
        reason = getattr(e, "reason", None) or ""
        if isinstance(e, ssl.SSLEOFError) or reason in _NOT_TLS_REASONS:
            raise HandshakeError(NOT_TLS, f"{where}: does not speak TLS ({reason or e})") from None
        raise HandshakeError(HANDSHAKE_FAILED, f"{where}: TLS handshake failed: {reason or e}") from None
    except ConnectionRefusedError:
        raise HandshakeError(REFUSED, f"{where}: connection refused (nothing listens there)") from None
    except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
        raise HandshakeError(NOT_TLS, f"{where}: closed the connection during the TLS handshake") from None
    except socket.gaierror as e:
        raise HandshakeError(UNREACHABLE, f"{where}: cannot resolve {host}: {e.strerror or e}") from None
    except OSError as e:
        raise HandshakeError(UNREACHABLE, f"{where}: cannot connect: {e.strerror or e}") from None
    finally:
        if raw is not None:
            try:
                raw.close()
            except OSError:
                pass
    if not presented:
        raise HandshakeError(HANDSHAKE_FAILED, f"{where}: the server presented no certificate")
    return Handshake(presented, protocol, cipher, time.perf_counter() - t0)


def probe(host: str, port: int, sni: str | None = None, timeout: float = 5.0,
          ca_bundle: bytes | None = None) -> ProbeResult:
    """Handshake with ``host:port`` (sending ``sni`` when given) and validate what it presents.

    The chain is validated for ``sni`` (else ``host``) against ``ca_bundle``
    (PEM) or, when None, the system trust store. Raises :class:`ProbeError`
    (a :class:`HandshakeError` with a ``code``) when the endpoint cannot be
    reached, does not answer within ``timeout`` seconds, or the handshake fails.
    """
    hs = handshake(host, port, sni, timeout)
    leaf, chain = hs.presented[0], tuple(hs.presented[1:])
    error = validate_chain(leaf, chain, sni or host, ca_bundle)
    return ProbeResult(
        host=host, port=port, sni=sni, leaf_der=leaf, fingerprint=hashlib.sha256(leaf).hexdigest(),
        chain_ders=chain, protocol=hs.protocol, cipher=hs.cipher, validated=not error, validation_error=error,
        seconds=hs.seconds,
    )
