"""The facts the registry keeps about a certificate, read from its DER.

``parse_certificate`` is pure and cheap (tens of microseconds for a typical
certificate): the registry calls it once per new fingerprint while storing
reports of tens of thousands of certificates.

Odd certificates are common in a fleet (old v1 roots, vendor appliances,
malformed extensions): every field is read on its own, and a field that cannot
be read is left empty instead of failing the certificate. Only a DER that
cannot be parsed as a certificate at all raises :class:`InvalidInput`.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtensionOID, ObjectIdentifier

from collector.errors import InvalidInput

__all__ = ["CertFacts", "parse_certificate", "name_hash"]


@dataclass(frozen=True, slots=True)
class CertFacts:
    fingerprint: str                       # lower-case hex SHA-256 of the DER
    subject: str                           # RFC 4514
    issuer: str                            # RFC 4514
    serial: str                            # lower-case hex, "-" prefix if negative
    sans: tuple[tuple[str, str], ...]      # (dns|ip|email|uri, value), in certificate order
    not_before: dt.datetime                # aware UTC
    not_after: dt.datetime                 # aware UTC
    key_type: str                          # RSA, EC, Ed25519, Ed448, DSA, or the algorithm OID
    key_size: int                          # bits; 0 when unknown
    key_curve: str                         # EC curve name, "" otherwise
    signature_algorithm: str               # e.g. sha256WithRSAEncryption, ecdsa-with-SHA256
    is_ca: bool                            # basicConstraints cA
    has_basic_constraints: bool            # the extension is present (v1 and odd CAs lack it)
    self_signed: bool                      # subject == issuer and the signature verifies with its own key
    key_usage: tuple[str, ...]             # digital_signature, key_encipherment, ...
    extended_key_usage: tuple[str, ...]    # serverAuth, clientAuth, ... (dotted OID when unnamed)
    subject_key_id: str                    # hex, "" when absent
    authority_key_id: str                  # hex, "" when absent


def name_hash(rfc4514: str) -> str:
    """A short, index-friendly key for a distinguished name (used to link issuers)."""
    return hashlib.sha256(rfc4514.encode("utf-8", "surrogatepass")).hexdigest()[:32]


# Names for OIDs that cryptography leaves unnamed.
_EKU_NAMES = {
    "2.5.29.37.0": "anyExtendedKeyUsage",
    "1.3.6.1.5.5.7.3.5": "ipsecEndSystem",
    "1.3.6.1.5.5.7.3.6": "ipsecTunnel",
    "1.3.6.1.5.5.7.3.7": "ipsecUser",
    "1.3.6.1.5.5.7.3.17": "ipsecIKE",
    "1.3.6.1.4.1.311.10.3.4": "msEFS",
    "1.3.6.1.4.1.311.10.3.12": "msDocumentSigning",
    "1.3.6.1.4.1.11129.2.4.4": "certificateTransparency",
}
_KU_FIELDS = (
    "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
    "key_agreement", "key_cert_sign", "crl_sign",
)
# keyUsage BIT STRING bit numbers (RFC 5280 4.2.1.3)
_KU_BITS = _KU_FIELDS + ("encipher_only", "decipher_only")

_OID_BC = ExtensionOID.BASIC_CONSTRAINTS
_OID_KU = ExtensionOID.KEY_USAGE
_OID_EKU = ExtensionOID.EXTENDED_KEY_USAGE
_OID_SKI = ExtensionOID.SUBJECT_KEY_IDENTIFIER
_OID_AKI = ExtensionOID.AUTHORITY_KEY_IDENTIFIER
_OID_SAN = ExtensionOID.SUBJECT_ALTERNATIVE_NAME


def _oid_name(oid: ObjectIdentifier, extra: dict[str, str] | None = None) -> str:
    dotted = oid.dotted_string
    if extra and dotted in extra:
        return extra[dotted]
    name = getattr(oid, "_name", "")
    return dotted if not name or name == "Unknown OID" else name


def parse_certificate(der: bytes) -> CertFacts:
    """Read the registry's facts from one DER certificate.

    Raises InvalidInput if ``der`` is not a certificate at all.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "negative serial number": we still want its facts
            cert = x509.load_der_x509_certificate(der)
            serial_int = cert.serial_number
        subject, issuer = _names(cert, der)
        not_before = cert.not_valid_before_utc
        not_after = cert.not_valid_after_utc
    except Exception as e:  # noqa: BLE001 - anything cryptography refuses is "not a certificate"
        raise InvalidInput(f"not a parseable X.509 certificate: {_short(e)}") from None

    serial = format(serial_int, "x") if serial_int >= 0 else "-" + format(-serial_int, "x")
    ext = _extensions(cert)
    key_type, key_size, key_curve, public_key = _key_facts(cert)
    try:
        sig_alg = _oid_name(cert.signature_algorithm_oid)
    except Exception:  # noqa: BLE001
        sig_alg = ""

    self_signed = False
    if subject == issuer and public_key is not None:
        try:
            cert.verify_directly_issued_by(cert)
            self_signed = True
        except Exception:  # noqa: BLE001 - bad signature, unsupported algorithm: not self-signed
            self_signed = False

    return CertFacts(
        fingerprint=hashlib.sha256(der).hexdigest(),
        subject=subject,
        issuer=issuer,
        serial=serial,
        sans=ext.sans,
        not_before=not_before,
        not_after=not_after,
        key_type=key_type,
        key_size=key_size,
        key_curve=key_curve,
        signature_algorithm=sig_alg,
        is_ca=ext.is_ca,
        has_basic_constraints=ext.has_basic_constraints,
        self_signed=self_signed,
        key_usage=ext.key_usage,
        extended_key_usage=ext.extended_key_usage,
        subject_key_id=ext.subject_key_id,
        authority_key_id=ext.authority_key_id,
    )


# A fleet has many certificates and few issuers: remember the issuer DNs'
# RFC 4514 strings by their DER (rendering a Name is a good part of a parse).
_ISSUER_CACHE: dict[bytes, str] = {}
_ISSUER_CACHE_MAX = 4096


def _names(cert: x509.Certificate, der: bytes) -> tuple[str, str]:
    """(subject, issuer) as RFC 4514 strings.

    A name cryptography cannot decode (e.g. invalid UTF-8 in a UTF8String) is shown
    as ``#`` and the hex of its DER, so that the rest of the certificate is still read.
    """
    try:
        raw_issuer, raw_subject = _name_ders(der)
    except Exception:  # noqa: BLE001 - let cryptography judge the structure
        return cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
    try:
        subject = cert.subject.rfc4514_string()
    except Exception:  # noqa: BLE001
        subject = "#" + raw_subject.hex()
    issuer = _ISSUER_CACHE.get(raw_issuer)
    if issuer is None:
        try:
            issuer = cert.issuer.rfc4514_string()
        except Exception:  # noqa: BLE001
            issuer = "#" + raw_issuer.hex()
        if len(_ISSUER_CACHE) >= _ISSUER_CACHE_MAX:
            _ISSUER_CACHE.clear()
        _ISSUER_CACHE[raw_issuer] = issuer
    return subject, issuer


def _name_ders(der: bytes) -> tuple[bytes, bytes]:
    """The DER of the issuer and subject Names of a DER certificate."""
    _, s, _ = _tlv(der, 0)             # Certificate
    _, s, e = _tlv(der, s)             # TBSCertificate
    pos = s
    fields = []
    while pos < e and len(fields) < 6:
        tag, cs, ce = _tlv(der, pos)
        fields.append((tag, pos, ce))
        pos = ce
    if fields and fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject
    (itag, istart, iend), (stag, sstart, send) = fields[2], fields[4]
    if itag != 0x30 or stag != 0x30:
        raise _DerError("names are not SEQUENCEs")
    return der[istart:iend], der[sstart:send]


def _short(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def _key_facts(cert: x509.Certificate) -> tuple[str, int, str, object | None]:
    try:
        key = cert.public_key()
    except Exception:  # noqa: BLE001 - unsupported or malformed key: name it by its OID
        try:
            return cert.public_key_algorithm_oid.dotted_string, 0, "", None
        except Exception:  # noqa: BLE001
            return "unknown", 0, "", None
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size, "", key
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size, key.curve.name, key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256, "", key
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456, "", key
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size, "", key
    try:
        return cert.public_key_algorithm_oid.dotted_string, 0, "", key
    except Exception:  # noqa: BLE001
        return type(key).__name__, 0, "", key


@dataclass(slots=True)
class _Ext:
    sans: tuple[tuple[str, str], ...] = ()
    is_ca: bool = False
    has_basic_constraints: bool = False
    key_usage: tuple[str, ...] = ()
    extended_key_usage: tuple[str, ...] = ()
    subject_key_id: str = ""
    authority_key_id: str = ""


def _extensions(cert: x509.Certificate) -> _Ext:
    out = _Ext()
    try:
        exts = cert.extensions
    except Exception:  # noqa: BLE001 - one bad extension spoils the whole list: read them one by one
        return _extensions_raw(cert)
    for e in exts:
        oid = e.oid
        v = e.value
        try:
            if oid == _OID_SAN:
                out.sans = tuple(_san_items(v))
            elif oid == _OID_BC:
                out.has_basic_constraints = True
                out.is_ca = bool(v.ca)
            elif oid == _OID_KU:
                out.key_usage = _key_usage(v)
            elif oid == _OID_EKU:
                out.extended_key_usage = tuple(_oid_name(o, _EKU_NAMES) for o in v)
            elif oid == _OID_SKI:
                out.subject_key_id = v.digest.hex()
            elif oid == _OID_AKI:
                out.authority_key_id = (v.key_identifier or b"").hex()
        except Exception:  # noqa: BLE001 - skip just this field
            continue
    return out


def _key_usage(ku: x509.KeyUsage) -> tuple[str, ...]:
    names = [n for n in _KU_FIELDS if getattr(ku, n)]
    if ku.key_agreement:  # encipher_only/decipher_only are only defined with key_agreement
        names += [n for n in ("encipher_only", "decipher_only") if getattr(ku, n)]
    return tuple(names)


def _san_items(san: x509.SubjectAlternativeName) -> Iterator[tuple[str, str]]:
    for gn in san:
        if isinstance(gn, x509.DNSName):
            yield "dns", gn.value
        elif isinstance(gn, x509.IPAddress):
            yield "ip", str(gn.value)
        elif isinstance(gn, x509.RFC822Name):
            yield "email", gn.value
        elif isinstance(gn, x509.UniformResourceIdentifier):
            yield "uri", gn.value


# --- fallback: read the extensions we need straight from the DER -------------
#
# cryptography parses all extensions at once and refuses the lot when one is
# malformed (or duplicated). Then we walk the TBSCertificate ourselves and decode
# each extension we care about separately, skipping any that does not decode.

class _DerError(ValueError):
    pass


def _tlv(buf: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content_start, content_end) of the element at pos."""
    if pos + 2 > len(buf):
        raise _DerError("truncated")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise _DerError("high tag numbers unsupported")
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(buf):
            raise _DerError("bad length")
        length = int.from_bytes(buf[pos:pos + n], "big")
        pos += n
    end = pos + length
    if end > len(buf):
        raise _DerError("truncated")
    return tag, pos, end


def _children(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    pos = start
    while pos < end:
        tag, s, e = _tlv(buf, pos)
        if e > end:
            raise _DerError("element overruns its parent")
        yield tag, s, e
        pos = e


def _decode_oid(b: bytes) -> str:
    if not b:
        raise _DerError("empty OID")
    arcs: list[int] = []
    val = 0
    for byte in b:
        val = (val << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(val)
            val = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def _raw_extensions(tbs: bytes) -> Iterator[tuple[str, bytes]]:
    _, s, e = _tlv(tbs, 0)                     # TBSCertificate SEQUENCE
    for tag, cs, ce in _children(tbs, s, e):
        if tag == 0xA3:                        # [3] EXPLICIT Extensions
            _, ls, le = _tlv(tbs, cs)
            for _, xs, xe in _children(tbs, ls, le):
                parts = list(_children(tbs, xs, xe))
                oid = _decode_oid(tbs[parts[0][1]:parts[0][2]])
                value = parts[-1]             # extnValue OCTET STRING (after optional critical)
                if value[0] != 0x04:
                    continue
                yield oid, tbs[value[1]:value[2]]


def _bc_raw(v: bytes) -> bool:
    tag, s, e = _tlv(v, 0)
    if tag != 0x30:
        raise _DerError("basicConstraints is not a SEQUENCE")
    for tag, cs, ce in _children(v, s, e):
        if tag == 0x01:
            return v[cs:ce] != b"\x00"
    return False


def _ku_raw(v: bytes) -> tuple[str, ...]:
    tag, s, e = _tlv(v, 0)
    if tag != 0x03 or e <= s:
        raise _DerError("keyUsage is not a BIT STRING")
    bits = int.from_bytes(v[s + 1:e], "big") if e > s + 1 else 0
    nbits = (e - s - 1) * 8
    return tuple(name for i, name in enumerate(_KU_BITS) if i < nbits and bits >> (nbits - 1 - i) & 1)


def _eku_raw(v: bytes) -> tuple[str, ...]:
    _, s, e = _tlv(v, 0)
    return tuple(_oid_name(ObjectIdentifier(_decode_oid(v[cs:ce])), _EKU_NAMES) for _, cs, ce in _children(v, s, e))


def _ski_raw(v: bytes) -> str:
    tag, s, e = _tlv(v, 0)
    if tag != 0x04:
        raise _DerError("subjectKeyIdentifier is not an OCTET STRING")
    return v[s:e].hex()


def _aki_raw(v: bytes) -> str:
    _, s, e = _tlv(v, 0)
    for tag, cs, ce in _children(v, s, e):
        if tag == 0x80:                        # [0] IMPLICIT keyIdentifier
            return v[cs:ce].hex()
    return ""


def _san_raw(v: bytes) -> tuple[tuple[str, str], ...]:
    _, s, e = _tlv(v, 0)
    out: list[tuple[str, str]] = []
    for tag, cs, ce in _children(v, s, e):
        raw = v[cs:ce]
        if tag == 0x81:
            out.append(("email", raw.decode("ascii", "replace")))
        elif tag == 0x82:
            out.append(("dns", raw.decode("ascii", "replace")))
        elif tag == 0x86:
            out.append(("uri", raw.decode("ascii", "replace")))
        elif tag == 0x87 and len(raw) in (4, 16):
            out.append(("ip", str(ipaddress.ip_address(raw))))
    return tuple(out)


_RAW_READERS: dict[str, tuple[str, Callable[[bytes], object]]] = {
    _OID_SAN.dotted_string: ("sans", _san_raw),
    _OID_BC.dotted_string: ("is_ca", _bc_raw),
    _OID_KU.dotted_string: ("key_usage", _ku_raw),
    _OID_EKU.dotted_string: ("extended_key_usage", _eku_raw),
    _OID_SKI.dotted_string: ("subject_key_id", _ski_raw),
    _OID_AKI.dotted_string: ("authority_key_id", _aki_raw),
}


def _extensions_raw(cert: x509.Certificate) -> _Ext:
    out = _Ext()
    try:
        items = list(_raw_extensions(cert.tbs_certificate_bytes))
    except Exception:  # noqa: BLE001 - cannot even find the extensions: no extension facts
        return out
    seen: set[str] = set()
    for oid, value in items:
        reader = _RAW_READERS.get(oid)
        if reader is None or oid in seen:      # first occurrence wins for duplicates
            continue
        seen.add(oid)
        attr, fn = reader
        try:
            setattr(out, attr, fn(value))
        except Exception:  # noqa: BLE001 - skip just this field
            continue
        if attr == "is_ca":
            out.has_basic_constraints = True
    return out
