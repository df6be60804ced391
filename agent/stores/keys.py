"""Key-to-certificate matching by comparing public keys.

Only used when a key is present, so the cost of cryptography's parsers is
paid for those files only. Public keys are compared as DER SubjectPublicKeyInfo.
"""
from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

_DER = serialization.Encoding.DER
_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo

#: what loaders raise for keys and certificates they cannot use
KEY_ERRORS = (ValueError, TypeError, UnsupportedAlgorithm)
#: what parsing an untrusted certificate may raise besides KEY_ERRORS: cryptography's
#: x509.InvalidVersion and x509.DuplicateExtension derive from Exception, not ValueError
CERT_ERRORS = (*KEY_ERRORS, x509.InvalidVersion, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


def public_spki(key: Any) -> bytes:
    """DER SubjectPublicKeyInfo of a private or public key object."""
    pub = key.public_key() if hasattr(key, "public_key") else key
    return pub.public_bytes(_DER, _SPKI)


def cert_spki(der: bytes) -> bytes | None:
    """DER SubjectPublicKeyInfo of a DER certificate; None when it cannot be parsed.

    Never raises: the certificate is untrusted input, and one that cannot be parsed
    must not cost the file its other certificates.
    """
    try:
        return x509.load_der_x509_certificate(der).public_key().public_bytes(_DER, _SPKI)
    except Exception:  # noqa: BLE001 - InvalidVersion, DuplicateExtension, a Rust parser error: all mean "no SPKI"
        return None


def pem_key_spki(block: bytes) -> bytes:
    """SubjectPublicKeyInfo of an unencrypted PEM private key block.

    Raises ValueError, TypeError or UnsupportedAlgorithm when the key cannot be loaded.
    """
    key = serialization.load_pem_private_key(block, None, unsafe_skip_rsa_key_validation=True)
    return public_spki(key)


def der_key_spki(pkcs8: bytes) -> bytes:
    """SubjectPublicKeyInfo of an unencrypted DER (PKCS#8) private key."""
    key = serialization.load_der_private_key(pkcs8, None, unsafe_skip_rsa_key_validation=True)
    return public_spki(key)


def why(e: BaseException) -> str:
    """A short, secret-free reason for a parser's exception (its type and first line)."""
    text = str(e).splitlines()[0][:120] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
