"""What the Windows boundary returns about certificate stores. Pure Python: runs and is tested anywhere.

Store enumeration records (:class:`StoreRecord`): what :mod:`agent.windows.api` reads with
CertEnumCertificatesInStore, CertGetCertificateContextProperty and
CryptAcquireCertificatePrivateKey/NCryptGetProperty/NCryptExportKey. They round-trip
through a JSON capture format (:func:`dump_capture`, :func:`load_capture`) so that what a
Windows host returns can be recorded and replayed in tests. Also here: thumbprints and the
BCRYPT public key blobs a key's public half is exported as.

The bindings that serve certificates are parsed beside this module: http.sys
(``netsh http show sslcert``) in :mod:`agent.windows.sslcert`, IIS sites (``appcmd``) in
:mod:`agent.windows.sites`.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from agent.windows.errors import RecordFormatError

__all__ = [
    "STORE_LOCATION", "KeyProvInfo", "KeyFacts", "StoreRecord", "thumbprint_of", "normalize_thumbprint",
    "load_capture", "dump_capture", "public_key_from_blob", "public_blob_of", "CAPTURE_FORMAT",
    "NCRYPT_ALLOW_EXPORT_FLAG", "NCRYPT_ALLOW_PLAINTEXT_EXPORT_FLAG", "KEY_MISSING_CODES", "is_exportable",
]

STORE_LOCATION = "LocalMachine"
CAPTURE_FORMAT = "certfleet-windows-store-capture/1"

NCRYPT_ALLOW_EXPORT_FLAG = 0x1
NCRYPT_ALLOW_PLAINTEXT_EXPORT_FLAG = 0x2
# CryptAcquireCertificatePrivateKey failures that mean "the key the certificate names does not exist"
KEY_MISSING_CODES = {
    0x80090016: "NTE_BAD_KEYSET",
    0x8009000D: "NTE_NO_KEY",
    0x80092004: "CRYPT_E_NOT_FOUND",
    0x8009200B: "CRYPT_E_NO_KEY_PROPERTY",
}

_HEX40 = re.compile(r"[0-9A-F]{40}")


def thumbprint_of(der: bytes) -> str:
    """The Windows thumbprint of a certificate: SHA-1 of its DER, upper-case hex."""
    return hashlib.sha1(der).hexdigest().upper()  # noqa: S324 - the thumbprint is SHA-1 by definition


def normalize_thumbprint(value: str) -> str:
    """Upper-case hex without spaces, colons or the invisible marks copying from MMC adds (U+200E, U+200F, BOM).

    Raises :class:`RecordFormatError` when the result is not 40 hex digits.
    """
    text = re.sub(r"[\s:\u200e\u200f\ufeff]", "", value or "").upper()
    if not _HEX40.fullmatch(text):
        raise RecordFormatError(f"not a certificate thumbprint (40 hex digits): {value[:60]!r}")
    return text


# --------------------------------------------------------------------------- store records

@dataclass(frozen=True)
class KeyProvInfo:
    """CERT_KEY_PROV_INFO_PROP_ID (CRYPT_KEY_PROV_INFO): where the certificate's private key lives."""

    container: str                   # pwszContainerName
    provider: str                    # pwszProvName
    prov_type: int = 0               # dwProvType: 0 = a CNG key storage provider, >0 = a legacy CryptoAPI CSP
    flags: int = 0                   # dwFlags (CRYPT_MACHINE_KEYSET 0x20, ...)
    key_spec: int = 0                # dwKeySpec: AT_KEYEXCHANGE 1, AT_SIGNATURE 2, CERT_NCRYPT_KEY_SPEC 0xFFFFFFFF


@dataclass(frozen=True)
class KeyFacts:
    """What opening the private key silently told (CryptAcquireCertificatePrivateKey, NCryptGetProperty).

    ``export_policy`` is NCRYPT_EXPORT_POLICY_PROPERTY (None when it could not be
    read); ``public_blob`` a BCRYPT_PUBLIC_KEY_BLOB from NCryptExportKey (the
    public half is exportable even from non-exportable keys); ``error_code`` and
    ``error`` say why the key could not be opened (0 / "" when it was).
    """

    acquired: bool
    provider: str = ""
    export_policy: int | None = None
    public_blob: bytes | None = field(default=None, repr=False)
    error_code: int = 0
    error: str = ""


@dataclass(frozen=True)
class StoreRecord:
    """One certificate in one system store, as the boundary read it."""

    store_location: str              # LocalMachine
    store_name: str                  # My, WebHosting, ...
    der: bytes = field(repr=False)
    sha1_hash: str = ""              # CERT_SHA1_HASH_PROP_ID, upper-case hex
    friendly_name: str = ""          # CERT_FRIENDLY_NAME_PROP_ID
    key_prov_info: KeyProvInfo | None = None
    key: KeyFacts | None = None

    @property
    def thumbprint(self) -> str:
        return thumbprint_of(self.der)

    @property
    def store_path(self) -> str:
        return f"{self.store_location}\\{self.store_name}"


def is_exportable(policy: int | None) -> bool:
    return bool(policy is not None and policy & (NCRYPT_ALLOW_EXPORT_FLAG | NCRYPT_ALLOW_PLAINTEXT_EXPORT_FLAG))


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def dump_capture(stores: Iterable[tuple[str, str, Sequence[StoreRecord]]], source: str, note: str = "") -> str:
    """The JSON capture of store enumerations: ``[(location, name, records), ...]``.

    ``source`` says where the values come from: ``"windows"`` for a capture made
    on a Windows host, ``"composed"`` for values written by hand or by a test.
    """
    out: dict[str, Any] = {"format": CAPTURE_FORMAT, "source": source, "note": note, "stores": []}
    for location, name, records in stores:
        recs = []
        for r in records:
            props: dict[str, Any] = {"CERT_SHA1_HASH_PROP_ID": r.sha1_hash or None,
                                     "CERT_FRIENDLY_NAME_PROP_ID": r.friendly_name or None,
                                     "CERT_KEY_PROV_INFO_PROP_ID": None}
            if r.key_prov_info is not None:
                p = r.key_prov_info
                props["CERT_KEY_PROV_INFO_PROP_ID"] = {
                    "pwszContainerName": p.container, "pwszProvName": p.provider, "dwProvType": p.prov_type,
                    "dwFlags": p.flags, "dwKeySpec": p.key_spec,
                }
            key = None
            if r.key is not None:
                key = {"acquired": r.key.acquired, "provider": r.key.provider,
                       "NCRYPT_EXPORT_POLICY_PROPERTY": r.key.export_policy,
                       "public_blob": _b64(r.key.public_blob), "error_code": r.key.error_code, "error": r.key.error}
            recs.append({"der": _b64(r.der), "properties": props, "private_key": key})
        out["stores"].append({"location": location, "name": name, "records": recs})
    return json.dumps(out, indent=2) + "\n"


def load_capture(text: str) -> dict[tuple[str, str], list[StoreRecord]]:
    """Parse a capture (see :func:`dump_capture`) into ``{(location, name): records}``."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise RecordFormatError(f"the store capture is not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != CAPTURE_FORMAT:
        raise RecordFormatError(f"not a store capture (expected format {CAPTURE_FORMAT!r})")
    out: dict[tuple[str, str], list[StoreRecord]] = {}
    try:
        for store in doc["stores"]:
            location, name = str(store["location"]), str(store["name"])
            records = []
            for i, rec in enumerate(store["records"]):
                where = f"{location}\\{name} record {i}"
                try:
                    der = base64.b64decode(rec["der"], validate=True)
                except (binascii.Error, TypeError, ValueError):
                    raise RecordFormatError(f"{where}: 'der' is not base64") from None
                props = rec.get("properties") or {}
                kpi = props.get("CERT_KEY_PROV_INFO_PROP_ID")
                prov = None
                if kpi:
                    prov = KeyProvInfo(str(kpi.get("pwszContainerName") or ""), str(kpi.get("pwszProvName") or ""),
                                       int(kpi.get("dwProvType") or 0), int(kpi.get("dwFlags") or 0),
                                       int(kpi.get("dwKeySpec") or 0))
                k = rec.get("private_key")
                key = None
                if k is not None:
                    blob = k.get("public_blob")
                    policy = k.get("NCRYPT_EXPORT_POLICY_PROPERTY")
                    key = KeyFacts(bool(k.get("acquired")), str(k.get("provider") or ""),
                                   None if policy is None else int(policy),
                                   base64.b64decode(blob) if blob else None, int(k.get("error_code") or 0),
                                   str(k.get("error") or ""))
                records.append(StoreRecord(location, name, der, str(props.get("CERT_SHA1_HASH_PROP_ID") or ""),
                                           str(props.get("CERT_FRIENDLY_NAME_PROP_ID") or ""), prov, key))
            out[(location, name)] = records
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, RecordFormatError):
            raise
        raise RecordFormatError(f"the store capture is malformed ({type(e).__name__}: {e})") from None
    return out


# --------------------------------------------------------------------------- BCRYPT public key blobs

_RSA_PUBLIC_MAGIC = 0x31415352                       # "RSA1"
_ECC_MAGICS = {
    0x31534345: ec.SECP256R1, 0x33534345: ec.SECP384R1, 0x35534345: ec.SECP521R1,   # ECS1/3/5 (ECDSA public)
    0x314B4345: ec.SECP256R1, 0x334B4345: ec.SECP384R1, 0x354B4345: ec.SECP521R1,   # ECK1/3/5 (ECDH public)
}
_ECC_GENERIC = {0x50444345, 0x504B4345}              # ECDP / ECKP: the curve is a separate property
_CURVE_BY_SIZE = {32: ec.SECP256R1, 48: ec.SECP384R1, 66: ec.SECP521R1}


def public_key_from_blob(blob: bytes) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """The public key in a BCRYPT_RSAKEY_BLOB or BCRYPT_ECCKEY_BLOB (little-endian header, big-endian numbers).

    Raises :class:`RecordFormatError` for anything else.
    """
    if len(blob) < 8:
        raise RecordFormatError("the public key blob is too short")
    magic = struct.unpack_from("<I", blob, 0)[0]
    try:
        if magic == _RSA_PUBLIC_MAGIC:
            _, _bits, cb_exp, cb_mod, _, _ = struct.unpack_from("<6I", blob, 0)
            body = blob[24:]
            if len(body) < cb_exp + cb_mod:
                raise RecordFormatError("the RSA public key blob is truncated")
            e = int.from_bytes(body[:cb_exp], "big")
            n = int.from_bytes(body[cb_exp:cb_exp + cb_mod], "big")
            return rsa.RSAPublicNumbers(e, n).public_key()
        if magic in _ECC_MAGICS or magic in _ECC_GENERIC:
            cb_key = struct.unpack_from("<I", blob, 4)[0]
            curve = _ECC_MAGICS.get(magic) or _CURVE_BY_SIZE.get(cb_key)
            if curve is None:
                raise RecordFormatError(f"the EC public key blob has an unknown curve (coordinates of {cb_key} bytes)")
            body = blob[8:]
            if len(body) < 2 * cb_key:
                raise RecordFormatError("the EC public key blob is truncated")
            x = int.from_bytes(body[:cb_key], "big")
            y = int.from_bytes(body[cb_key:2 * cb_key], "big")
            return ec.EllipticCurvePublicNumbers(x, y, curve()).public_key()
    except ValueError as e:
        raise RecordFormatError(f"the public key blob does not hold a valid key ({e})") from None
    raise RecordFormatError(f"unknown public key blob magic 0x{magic:08X}")


def public_blob_of(public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> bytes:
    """The BCRYPT public key blob NCryptExportKey(BCRYPT_PUBLIC_KEY_BLOB) returns for ``public_key``."""
    if isinstance(public_key, rsa.RSAPublicKey):
        nums = public_key.public_numbers()
        e = nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big")
        n = nums.n.to_bytes((public_key.key_size + 7) // 8, "big")
        return struct.pack("<6I", _RSA_PUBLIC_MAGIC, public_key.key_size, len(e), len(n), 0, 0) + e + n
    size = {"secp256r1": 32, "secp384r1": 48, "secp521r1": 66}[public_key.curve.name]
    magic = {32: 0x31534345, 48: 0x33534345, 66: 0x35534345}[size]
    nums = public_key.public_numbers()
    return struct.pack("<2I", magic, size) + nums.x.to_bytes(size, "big") + nums.y.to_bytes(size, "big")
