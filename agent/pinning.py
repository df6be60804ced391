"""Trust on first use, made safe by a pinned fingerprint: fetch the collector CA.

``certfleet-agent enroll --ca-fingerprint SHA256`` knows only a fingerprint.
:func:`fetch_pinned_ca` opens a TLS connection to the collector's enrollment
listener *without* verification, reads the certificate chain the server
presents (the collector sends [server certificate, CA certificate]), picks the
certificate whose SHA-256 is the pinned one, checks it is a CA that signed the
server's certificate, and returns it. From then on the agent trusts only that
CA, so the unverified connection carries nothing but certificates.
"""
from __future__ import annotations

import _ssl
import hashlib
import re
import socket
import ssl
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from agent.errors import IdentityError

_HEX64 = re.compile(r"[0-9a-f]{64}")


def normalize_fingerprint(fingerprint: str) -> str:
    """``AB:CD:...``, ``abcd...`` or ``SHA256:...`` -> 64 lower-case hex digits; else IdentityError."""
    fp = re.sub(r"\s", "", str(fingerprint)).lower()
    if fp.startswith("sha256:"):  # the form `openssl x509 -fingerprint` and others print
        fp = fp[len("sha256:"):]
    fp = fp.replace(":", "")
    if not _HEX64.fullmatch(fp):
        raise IdentityError(
            "--ca-fingerprint must be a SHA-256 fingerprint: 64 hexadecimal digits, colons allowed "
            "(certfleet-collector prints it)"
        )
    return fp


def fetch_pinned_ca(host: str, port: int, fingerprint_sha256: str, timeout: float) -> bytes:
    """The DER of the collector CA certificate whose SHA-256 is ``fingerprint_sha256``.

    Raises :class:`IdentityError` when the collector cannot be reached, sends
    no certificate with that fingerprint (wrong fingerprint or a man in the
    middle: the message names both fingerprints), when that certificate is not
    a CA, or when it did not sign the server certificate.
    """
    expected = normalize_fingerprint(fingerprint_sha256)
    chain = _presented_chain(host, port, timeout)
    if not chain:
        raise IdentityError(f"the collector at {host}:{port} presented no certificate")
    prints = [hashlib.sha256(der).hexdigest() for der in chain]
    if expected not in prints:
        if len(chain) == 1:
            raise IdentityError(
                f"the collector at {host}:{port} presented only its server certificate "
                f"(SHA-256 {prints[0]}), no CA certificate, expected CA fingerprint {expected}: "
                "its TLS listener must send the chain from server.pem (server certificate, then CA)"
            )
        raise IdentityError(
            f"the collector presented CA fingerprint {prints[-1]}, expected {expected}: "
            "wrong --ca-fingerprint or a man in the middle"
        )
    ca_der = chain[prints.index(expected)]
    try:
        ca = x509.load_der_x509_certificate(ca_der)
        leaf = x509.load_der_x509_certificate(chain[0])
    except ValueError:
        raise IdentityError("the collector presented a certificate that cannot be parsed") from None
    try:
        is_ca = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError):
        is_ca = False
    if not is_ca:
        raise IdentityError(
            f"the certificate with fingerprint {expected} is not a CA certificate: "
            "pin the collector CA's fingerprint, not the server certificate's"
        )
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise IdentityError(
            f"the collector's server certificate is not signed by the pinned CA {expected}: "
            "a misconfigured listener or a man in the middle"
        ) from None
    return ca_der


def _presented_chain(host: str, port: int, timeout: float) -> list[bytes]:
    """DER certificates the server sends in the handshake, leaf first (unverified)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # nothing is trusted here: the fingerprint decides
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2"])  # the enrollment listener is a gRPC server
    where = f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                return _chain_of(tls)
    except IdentityError:
        raise
    except ssl.SSLError as e:
        raise IdentityError(f"TLS handshake with the collector at {where} failed: {e.reason or e}") from None
    except (socket.timeout, TimeoutError):
        raise IdentityError(f"the collector at {where} did not answer within {timeout:g} s") from None
    except OSError as e:
        raise IdentityError(f"cannot connect to the collector at {where}: {e.strerror or e}") from None


def _chain_of(tls: ssl.SSLSocket) -> list[bytes]:
    getter: Any = getattr(tls, "get_unverified_chain", None)  # public from Python 3.13
    if getter is None:
        sslobj = getattr(tls, "_sslobj", None)
        getter = getattr(sslobj, "get_unverified_chain", None)  # private in 3.10-3.12
    if getter is None:
        raise IdentityError(
            "this Python cannot read the certificate chain a TLS server presents "
            "(needs Python 3.10 or later); cannot check the CA fingerprint"
        )
    out: list[bytes] = []
    for item in getter() or []:
        if isinstance(item, (bytes, bytearray)):
            out.append(bytes(item))
        else:
            out.append(item.public_bytes(_ssl.ENCODING_DER))
    return out
