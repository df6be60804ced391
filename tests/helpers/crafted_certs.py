"""Certificates no well-behaved tool writes, made at test time by patching real DER.

cryptography refuses to build these, so a valid certificate is built first and a few
bytes are changed afterwards (the signature no longer verifies; readers never check it).
"""
from __future__ import annotations

import base64
import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_SAN_OID = b"\x06\x03\x55\x1d\x11"        # 2.5.29.17 subjectAltName
_IAN_OID = b"\x06\x03\x55\x1d\x12"        # 2.5.29.18 issuerAltName


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def build(cn: str = "crafted.example.test", days: int = 90, start: dt.datetime | None = None,
          extensions: tuple[x509.ExtensionType, ...] = (), key: ec.EllipticCurvePrivateKey | None = None,
          name: x509.Name | None = None) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    """A self-signed certificate (DER) and its key."""
    key = key or _key()
    start = start or dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    subject = name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(start)
         .not_valid_after(start + dt.timedelta(days=days)))
    for ext in extensions:
        b = b.add_extension(ext, critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER), key


def duplicate_san() -> bytes:
    """A certificate with two subjectAltName extensions (cryptography raises DuplicateExtension on it)."""
    names = x509.SubjectAlternativeName([x509.DNSName("dup.example.test")])
    der, _ = build("dup.example.test", extensions=(names, x509.IssuerAlternativeName(list(names))))
    assert der.count(_IAN_OID) == 1
    return der.replace(_IAN_OID, _SAN_OID)


def invalid_version(key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    """A certificate whose version field says 6 (x509.InvalidVersion when loaded)."""
    der, _ = build("badversion.example.test", key=key)
    v3 = b"\xa0\x03\x02\x01\x02"
    assert der.count(v3) == 1
    return der.replace(v3, b"\xa0\x03\x02\x01\x05")


def non_utf8_cn() -> bytes:
    """A certificate whose CN is a UTF8String holding bytes that are not UTF-8."""
    der, _ = build("caf\u00e9-xx.example.test")
    good = "caf\u00e9-xx".encode()
    assert der.count(good) == 2                       # subject and issuer
    return der.replace(good, b"caf\xe9\xff-xx")        # same length: every DER length stays right


def pem_raw(der: bytes, label: str = "CERTIFICATE") -> bytes:
    """``der`` as a PEM block, without parsing it."""
    b64 = base64.b64encode(der).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return (f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n").encode()


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_bulk_pem(path, n: int) -> None:  # noqa: ANN001 - a path
    """A PEM bundle of ``n`` distinct certificates: one real certificate, its serial rewritten each time.

    Fast (no signing per certificate); the signatures do not verify, which a scan never checks.
    """
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bulk.example.test")])
    now = dt.datetime.now(dt.timezone.utc)
    serial = int.from_bytes(b"\x11" * 19, "big")
    der = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
           .serial_number(serial).not_valid_before(now).not_valid_after(now + dt.timedelta(days=90))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("bulk.example.test")]), critical=False)
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    old = serial.to_bytes(19, "big")
    assert der.count(old) == 1
    base = b"\x12" + b"\x00" * 10               # a minimal positive INTEGER: 19 bytes, first 0x12
    with open(path, "wb") as f:
        for i in range(n):
            f.write(pem_raw(der.replace(old, base + i.to_bytes(8, "big"))))
