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
import socket
import ssl
import time
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.x509.verification import DNSName, IPAddress, PolicyBuilder, Store, VerificationError

from agent.errors import ProbeError

__all__ = ["ProbeResult", "probe", "validate_chain", "system_roots", "SYSTEM_CA_FILE"]

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


def probe(host: str, port: int, sni: str | None = None, timeout: float = 5.0,
          ca_bundle: bytes | None = None) -> ProbeResult:
    """Handshake with ``host:port`` (sending ``sni`` when given) and validate what it presents.

    The chain is validated for ``sni`` (else ``host``) against ``ca_bundle``
    (PEM) or, when None, the system trust store. Raises :class:`ProbeError`
    when the endpoint cannot be reached, does not answer within ``timeout``
    seconds, or the handshake fails.
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE        # see everything; validation follows, separately
    server_hostname = sni
    if server_hostname is not None:
        try:
            ipaddress.ip_address(server_hostname)
            server_hostname = None         # SNI never carries IP addresses
        except ValueError:
            pass
    t0 = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
                presented = _presented(tls)
                protocol = tls.version() or ""
                cipher = (tls.cipher() or ("", "", 0))[0]
    except (socket.timeout, TimeoutError):
        raise ProbeError(f"{where}: no TLS answer within {timeout:g} s") from None
    except ssl.SSLError as e:
        raise ProbeError(f"{where}: TLS handshake failed: {e.reason or e}") from None
    except ConnectionRefusedError:
        raise ProbeError(f"{where}: connection refused (nothing listens there)") from None
    except OSError as e:
        raise ProbeError(f"{where}: cannot connect: {e.strerror or e}") from None
    seconds = time.perf_counter() - t0
    if not presented:
        raise ProbeError(f"{where}: the server presented no certificate")
    leaf, chain = presented[0], tuple(presented[1:])
    error = validate_chain(leaf, chain, sni or host, ca_bundle)
    return ProbeResult(
        host=host, port=port, sni=sni, leaf_der=leaf, fingerprint=hashlib.sha256(leaf).hexdigest(),
        chain_ders=chain, protocol=protocol, cipher=cipher, validated=not error, validation_error=error,
        seconds=seconds,
    )
