"""Keys and certificate signing requests for the certificates the agent installs.

The key is made on the host that uses it and never leaves it: the collector
sees only the CSR (:func:`make_csr`) and returns certificates.

Key specs (:data:`KEY_SPECS`): ``rsa-2048``, ``rsa-3072``, ``rsa-4096``,
``ec-p256``, ``ec-p384``. A few other spellings are accepted
(``RSA2048``, ``ec-p-256``, ``ecdsa-p384``, ``secp256r1``...), see
:func:`normalize_spec`.

Serialisation keeps the layout a store already uses: PKCS#8 PEM
(``BEGIN PRIVATE KEY`` / ``BEGIN ENCRYPTED PRIVATE KEY``) or the
traditional OpenSSL form (``BEGIN RSA PRIVATE KEY`` / ``BEGIN EC PRIVATE
KEY``, legacy ``Proc-Type: 4,ENCRYPTED`` when encrypted), see
:func:`pem_key_style` and :func:`private_key_pem`.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Iterable, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from agent.errors import KeySpecError

__all__ = [
    "KEY_SPECS", "PrivateKey", "new_key", "make_csr", "normalize_spec", "key_spec_of", "private_key_pem",
    "private_key_pkcs8_der", "pem_key_style", "load_pem_private_key", "same_public_key", "PKCS8", "TRADITIONAL",
]

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]

KEY_SPECS = ("rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384")

PKCS8 = "pkcs8"
TRADITIONAL = "traditional"

_CURVES = {"ec-p256": ec.SECP256R1, "ec-p384": ec.SECP384R1}
_SPEC_ALIASES = {
    "p256": "ec-p256", "p-256": "ec-p256", "secp256r1": "ec-p256", "prime256v1": "ec-p256",
    "p384": "ec-p384", "p-384": "ec-p384", "secp384r1": "ec-p384",
}


def normalize_spec(spec: str) -> str:
    """The canonical form of a key spec; :class:`KeySpecError` for unknown ones.

    ``"RSA2048"``, ``"rsa:2048"``, ``"rsa-2048"`` -> ``"rsa-2048"``;
    ``"ec-p-256"``, ``"ecdsa-p256"``, ``"P-256"``, ``"secp256r1"`` -> ``"ec-p256"``.
    """
    if not isinstance(spec, str):
        raise KeySpecError(f"a key spec must be a string such as 'ec-p256' (got {type(spec).__name__})")
    s = spec.strip().lower().replace("_", "-").replace(":", "-")
    m = re.fullmatch(r"rsa-?(\d+)", s)
    if m:
        s = f"rsa-{m.group(1)}"
    else:
        m = re.fullmatch(r"(?:ecdsa|ec)-?(.+)", s)
        tail = m.group(1) if m else s
        s = _SPEC_ALIASES.get(tail, _SPEC_ALIASES.get(s, s))
    if s not in KEY_SPECS:
        raise KeySpecError(f"unknown key type {spec!r}: use one of {', '.join(KEY_SPECS)}")
    return s


def new_key(spec: str = "ec-p256") -> PrivateKey:
    """A new private key of ``spec`` (see :data:`KEY_SPECS`)."""
    s = normalize_spec(spec)
    if s in _CURVES:
        return ec.generate_private_key(_CURVES[s]())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(s[4:]))


def key_spec_of(key: object) -> str:
    """The spec of a key (private or public): ``rsa-2048``, ``ec-p256``...; ``"unknown"`` otherwise."""
    pub = key.public_key() if hasattr(key, "public_key") else key
    if isinstance(pub, rsa.RSAPublicKey):
        return f"rsa-{pub.key_size}"
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return {"secp256r1": "ec-p256", "secp384r1": "ec-p384"}.get(pub.curve.name, f"ec-{pub.curve.name}")
    return "unknown"


def make_csr(
    key: PrivateKey,
    common_name: str | None,
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str | ipaddress.IPv4Address | ipaddress.IPv6Address] = (),
) -> bytes:
    """A DER PKCS#10 request for ``key`` with the names in a subjectAltName extension.

    ACME and the CA/Browser Forum rules use only the SANs, so every name goes
    there; the common name (when given) should be one of them. Raises
    :class:`KeySpecError` for a request without any name or with an invalid
    IP address.
    """
    dns = [d.strip() for d in dns_names if d and d.strip()]
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for ip in ip_addresses:
        try:
            ips.append(ip if not isinstance(ip, str) else ipaddress.ip_address(ip.strip()))
        except ValueError:
            raise KeySpecError(f"not an IP address: {ip!r}") from None
    if not common_name and not dns and not ips:
        raise KeySpecError("a certificate request needs a common name or at least one DNS name or IP address")
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dict.fromkeys(dns)]
    sans += [x509.IPAddress(i) for i in dict.fromkeys(ips)]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _encryption(password: str | bytes | None) -> serialization.KeySerializationEncryption:
    if password is None:
        return serialization.NoEncryption()
    pw = password.encode("utf-8") if isinstance(password, str) else password
    if not pw:
        return serialization.NoEncryption()
    return serialization.BestAvailableEncryption(pw)


def private_key_pem(key: PrivateKey, style: str = PKCS8, password: str | bytes | None = None) -> bytes:
    """``key`` as PEM: ``style`` :data:`PKCS8` or :data:`TRADITIONAL`, encrypted when ``password`` is given.

    PKCS#8 encryption is PBES2 (AES-256-CBC); traditional encryption is
    OpenSSL's legacy ``Proc-Type: 4,ENCRYPTED`` form, as ``openssl rsa -aes256``
    writes it.
    """
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if style == TRADITIONAL else serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, _encryption(password))


def private_key_pkcs8_der(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 DER (what JKS/JCEKS entries protect)."""
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pem_key_style(block: bytes) -> tuple[str, bool]:
    """``(style, encrypted)`` of one PEM private key block.

    ``BEGIN PRIVATE KEY`` -> (pkcs8, False); ``BEGIN ENCRYPTED PRIVATE KEY`` ->
    (pkcs8, True); ``BEGIN RSA/EC PRIVATE KEY`` -> (traditional, whether it has
    ``Proc-Type: 4,ENCRYPTED``).
    """
    head = block.lstrip()[:64]
    if head.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"):
        return PKCS8, True
    if head.startswith(b"-----BEGIN PRIVATE KEY-----"):
        return PKCS8, False
    return TRADITIONAL, b"Proc-Type: 4,ENCRYPTED" in block


def load_pem_private_key(block: bytes, password: str | bytes | None = None) -> PrivateKey:
    """Load a PEM private key (encrypted ones need ``password``).

    Raises ValueError/TypeError like cryptography does (wrong password, not a key).
    """
    pw = password.encode("utf-8") if isinstance(password, str) else password
    key = serialization.load_pem_private_key(block, pw or None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise TypeError(f"unsupported key type {type(key).__name__}")
    return key


def same_public_key(key: object, other: object) -> bool:
    """Whether ``key`` (private or public) and ``other`` (a certificate, DER certificate, CSR, private or
    public key) hold the same public key."""
    if isinstance(other, (bytes, bytearray)):
        try:
            other = x509.load_der_x509_certificate(bytes(other))
        except ValueError:
            return False
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        a = key.public_key() if hasattr(key, "public_key") else key
        b = other.public_key() if hasattr(other, "public_key") else other
        return a.public_bytes(*fmt) == b.public_bytes(*fmt)  # type: ignore[union-attr]
    except (ValueError, TypeError, AttributeError):
        return False
