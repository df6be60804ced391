"""PKCS#12 keystores (.p12, .pfx), made by openssl, keytool or Windows: reader and writer.

Writing a renewed private-key entry: The entry keeps its friendly name (the alias) and the store keeps its
password. The new key, certificate and chain replace the old ones (the old
chain, certificates without a friendly name, goes with the old entry).
Certificates with their own friendly name are keytool's trusted entries:
they are kept, marked trusted for Java as keytool marks them, so ``keytool
-list`` still shows them.

Encryption is what keytool (Java 17+) and OpenSSL 3 read: PBES2 with
PBKDF2-HMAC-SHA256 and AES-256-CBC for keys and certificates, an
HMAC-SHA256 integrity MAC. A file holding several private keys is refused
(cryptography exposes one key; the others would be lost).

When trusted entries are kept, cryptography makes two PKCS#12 structures
(the key entry, and a Java truststore of the trusted certificates) and this
module joins their authenticated safes under one new MAC (RFC 7292, with the
PKCS#12 key derivation of its appendix B).

A JKS/JCEKS file configured as pkcs12 is read by the JKS reader: :mod:`agent.stores`
routes by content.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
from typing import Mapping

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12

import agent.stores.asn1 as asn1
from agent.errors import StoreWriteError
from agent.inventory import (
    CERTIFICATE, MATCHES, MISMATCH, NO_KEY, PRIVATE_KEY_ENTRY, TRUSTED_CERTIFICATE, FoundCert,
)
from agent.stores.base import KeystoreWriter, NewEntry, ReadContext, StoreReader, StoreReadError, WriteTarget, tlv_header
from agent.stores.keys import KEY_ERRORS, public_spki, why
from agent.stores.sniff import hint

__all__ = ["Pkcs12Reader", "Pkcs12Writer", "rewrite_pkcs12", "pkcs12_kdf", "KDF_ROUNDS"]

log = logging.getLogger(__name__)
_DER = serialization.Encoding.DER


class Pkcs12Reader(StoreReader):
    """Reads PKCS#12 files (``store_type`` "pkcs12").

    The key's certificate is chain_index 0 of a PRIVATE_KEY_ENTRY whose alias is
    its friendly name ("" when it has none); further certificates without a
    friendly name (or with the key's) are its chain, 1, 2, ...; certificates
    with their own friendly name are TRUSTED_CERTIFICATE entries (keytool's
    trusted entries). ``key_encrypted`` is True when a non-empty password
    protects the file.
    """

    store_type = "pkcs12"

    def read(self, path: str, data: bytes, ctx: ReadContext) -> list[FoundCert]:
        """Entries of the PKCS#12 ``data``, opened with the store's password."""
        outer = tlv_header(data)
        if outer is None or outer[0] != 0x30:
            raise StoreReadError("corrupt", "the file is not a PKCS#12 keystore" + hint(data, "pkcs12"), "pkcs12")
        if outer[1] + outer[2] > len(data):
            raise StoreReadError("truncated", "the PKCS#12 keystore is cut short", "pkcs12")

        store = self._open(data, ctx)
        p12, encrypted = store
        return self._entries(path, p12, encrypted, ctx)

    @staticmethod
    def _open(data: bytes, ctx: ReadContext) -> tuple[pkcs12.PKCS12KeyAndCertificates, bool]:
        secret, unavailable = ctx.password_or_why()
        candidates: list[bytes | None]
        if secret is not None:
            candidates = [secret.reveal().encode("utf-8")]  # type: ignore[attr-defined]
        else:
            candidates = [None, b""]
        for pw in candidates:
            try:
                return pkcs12.load_pkcs12(data, pw), bool(pw)
            except ValueError as e:
                if "password" not in str(e).lower():
                    raise StoreReadError("corrupt", "the PKCS#12 keystore cannot be parsed", "pkcs12") from None
            except KEY_ERRORS:
                raise StoreReadError(
                    "unsupported", "the PKCS#12 keystore uses an unsupported algorithm", "pkcs12") from None
            except Exception as e:  # noqa: BLE001 - untrusted input: InvalidVersion, DuplicateExtension...
                raise StoreReadError(
                    "corrupt", f"the PKCS#12 keystore cannot be parsed ({why(e)})", "pkcs12") from None
        if secret is not None:
            raise StoreReadError(
                "wrong_password",
                "the configured password does not open the PKCS#12 keystore (wrong password, or the file is damaged)",
                "pkcs12",
            )
        if unavailable is not None:
            raise StoreReadError(unavailable.reason, unavailable.message, "pkcs12")
        raise StoreReadError(
            "no_password",
            "the PKCS#12 keystore needs a password; set password_file or password_env for its store",
            "pkcs12",
        )

    @staticmethod
    def _entries(path: str, p12: pkcs12.PKCS12KeyAndCertificates, encrypted: bool, ctx: ReadContext) -> list[FoundCert]:
        out: list[FoundCert] = []
        used: set[tuple[str, int]] = set()

        def add(alias: str, index: int, cert: object, **kw: object) -> None:
            while (alias, index) in used:
                index += 1
            used.add((alias, index))
            out.append(ctx.found("pkcs12", path, alias, index, cert.public_bytes(_DER), **kw))  # type: ignore[attr-defined,arg-type]

        key_alias = ""
        chain_next = 1
        if p12.cert is not None:
            key_alias = _name(p12.cert.friendly_name)
            has_key = p12.key is not None
            match = NO_KEY
            if has_key:
                try:
                    match = MATCHES if public_spki(p12.key) == public_spki(p12.cert.certificate) else MISMATCH
                except KEY_ERRORS:
                    match = MISMATCH
            add(key_alias, 0, p12.cert.certificate, has_private_key=has_key,
                key_encrypted=has_key and encrypted, key_match=match,
                entry_type=PRIVATE_KEY_ENTRY if has_key else CERTIFICATE)
        elif p12.key is not None:
            log.debug("%s: the PKCS#12 key has no certificate", path)
        for extra in p12.additional_certs:
            name = _name(extra.friendly_name)
            if p12.cert is not None and (not name or name == key_alias):
                add(key_alias, chain_next, extra.certificate,
                    entry_type=PRIVATE_KEY_ENTRY if p12.key is not None else CERTIFICATE)
                chain_next += 1
            elif name:
                add(name, 0, extra.certificate, entry_type=TRUSTED_CERTIFICATE)
            else:
                add("", 0, extra.certificate, entry_type=CERTIFICATE)
        if not out:
            raise StoreReadError("no_certificates", "the PKCS#12 keystore holds no certificates", "pkcs12")
        return out


def _name(raw: bytes | None) -> str:
    return raw.decode("utf-8", "replace") if raw else ""


# --------------------------------------------------------------------------- writing

KDF_ROUNDS = 10_000           # keytool's default for PBKDF2 and the MAC
_DATA = "1.2.840.113549.1.7.1"
_KEY_BAGS = {"1.2.840.113549.1.12.10.1.1", "1.2.840.113549.1.12.10.1.2"}
_SHA256 = "2.16.840.1.101.3.4.2.1"


def _encryption(password: bytes) -> object:
    return (
        PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password)
    )


def pkcs12_kdf(password: bytes, salt: bytes, purpose: int, iterations: int, length: int) -> bytes:
    """RFC 7292 appendix B.2 with SHA-256; ``password`` is the BMPString with its two-zero terminator."""
    u, v = 32, 64
    d = bytes([purpose]) * v

    def fill(s: bytes) -> bytes:
        if not s:
            return b""
        n = v * ((len(s) + v - 1) // v)
        return (s * (n // len(s) + 1))[:n]

    i = bytearray(fill(salt) + fill(password))
    out = b""
    while len(out) < length:
        a = hashlib.sha256(d + bytes(i)).digest()
        for _ in range(iterations - 1):
            a = hashlib.sha256(a).digest()
        out += a
        b = int.from_bytes((a * (v // u + 1))[:v], "big")
        for j in range(0, len(i), v):
            block = (int.from_bytes(i[j:j + v], "big") + b + 1) % (1 << (8 * v))
            i[j:j + v] = block.to_bytes(v, "big")
    return out[:length]


def _bmp(password: str) -> bytes:
    return password.encode("utf-16-be") + b"\x00\x00" if password is not None else b""


def _auth_safe_items(pfx: bytes) -> list[bytes]:
    """The ContentInfos of a PFX's authenticated safe (raw DER each)."""
    _, s, e = asn1.read_tlv(pfx)
    parts = asn1.children(pfx, s, e)
    ci = parts[1]                                     # authSafe ContentInfo
    inner = asn1.children(pfx, ci[2], ci[3])
    if asn1.decode_oid(pfx[inner[0][2]:inner[0][3]]) != _DATA:
        raise asn1.DerError("the authenticated safe is not plain data")
    _, os_start, os_end = asn1.read_tlv(pfx, inner[1][2])     # [0] EXPLICIT -> OCTET STRING
    _, safe_start, safe_end = asn1.read_tlv(pfx, os_start)   # AuthenticatedSafe SEQUENCE
    return [pfx[t:ce] for (_, t, _, ce) in asn1.children(pfx, safe_start, safe_end)]


def count_key_bags(pfx: bytes) -> int | None:
    """Private keys visible without decryption (key bags are rarely inside encrypted data); None if unreadable."""
    try:
        n = 0
        for item in _auth_safe_items(pfx):
            _, s, e = asn1.read_tlv(item)
            kids = asn1.children(item, s, e)
            if asn1.decode_oid(item[kids[0][2]:kids[0][3]]) != _DATA or len(kids) < 2:
                continue
            _, os_s, _ = asn1.read_tlv(item, kids[1][2])
            _, sc_s, sc_e = asn1.read_tlv(item, os_s)
            for (_, bag_t, bag_s, bag_e) in asn1.children(item, sc_s, sc_e):
                first = asn1.children(item, bag_s, bag_e)[0]
                if asn1.decode_oid(item[first[2]:first[3]]) in _KEY_BAGS:
                    n += 1
        return n
    except (asn1.DerError, IndexError):
        return None


def _join(pfx_parts: list[bytes], password: str) -> bytes:
    """One PFX holding the authenticated-safe items of ``pfx_parts``, with a new HMAC-SHA256 MAC."""
    items: list[bytes] = []
    for p in pfx_parts:
        items.extend(_auth_safe_items(p))
    auth_safe = asn1.seq(*items)
    salt = os.urandom(16)
    mac_key = pkcs12_kdf(_bmp(password), salt, 3, KDF_ROUNDS, 32)
    digest = hmac.new(mac_key, auth_safe, hashlib.sha256).digest()
    mac_data = asn1.seq(
        asn1.seq(asn1.seq(asn1.oid(_SHA256), asn1.null()), asn1.octets(digest)),
        asn1.octets(salt),
        asn1.integer(KDF_ROUNDS),
    )
    content_info = asn1.seq(asn1.oid(_DATA), asn1.explicit(0, asn1.octets(auth_safe)))
    return asn1.seq(asn1.integer(3), content_info, mac_data)


def rewrite_pkcs12(data: bytes, alias: str, entry: NewEntry, password: str | None, path: str) -> bytes:
    """``data`` with its private-key entry ``alias`` replaced by ``entry`` (see module doc)."""
    pw = password.encode("utf-8") if password else None
    try:
        old = pkcs12.load_pkcs12(data, pw)
    except ValueError:
        raise StoreWriteError(f"{path}: the PKCS#12 keystore cannot be opened with its store's password") from None
    if old.key is None or old.cert is None:
        raise StoreWriteError(f"{path}: the PKCS#12 keystore holds no private-key entry to replace")
    old_alias = (old.cert.friendly_name or b"").decode("utf-8", "replace")
    if old_alias != alias:
        raise StoreWriteError(f"{path}: the PKCS#12 keystore has no private-key entry {alias!r} "
                              f"(its key entry is {old_alias!r})")
    keys = count_key_bags(data)
    if keys is not None and keys > 1:
        raise StoreWriteError(f"{path}: the PKCS#12 keystore holds {keys} private keys; certfleet rewrites "
                              "keystores with one key entry only (the others would be lost)")
    trusted = [
        c for c in old.additional_certs
        if c.friendly_name and c.friendly_name.decode("utf-8", "replace") != alias
    ]
    name = old.cert.friendly_name or None
    cert = x509.load_der_x509_certificate(entry.cert_der)
    cas = [x509.load_der_x509_certificate(d) for d in entry.chain_ders]
    if pw is None:
        from cryptography.hazmat.primitives.serialization import NoEncryption

        if trusted:
            raise StoreWriteError(f"{path}: a PKCS#12 keystore without a password cannot keep trusted entries")
        return pkcs12.serialize_key_and_certificates(name, entry.key, cert, cas, NoEncryption())  # type: ignore[arg-type]
    enc = _encryption(pw)
    main = pkcs12.serialize_key_and_certificates(name, entry.key, cert, cas, enc)  # type: ignore[arg-type]
    if not trusted:
        return main
    truststore = pkcs12.serialize_java_truststore(trusted, enc)  # type: ignore[arg-type]
    try:
        return _join([main, truststore], password or "")
    except (asn1.DerError, IndexError) as e:  # pragma: no cover - cryptography writes DER
        raise StoreWriteError(f"{path}: cannot assemble the PKCS#12 keystore ({e})") from None


class Pkcs12Writer(KeystoreWriter):
    """PKCS#12 keystores (.p12, .pfx)."""

    store_types = ("pkcs12",)

    def render(self, target: WriteTarget, current: Mapping[str, bytes], entry: NewEntry) -> dict[str, bytes]:
        loc = self.entry_location(target)
        password = target.password.reveal() if target.password is not None else None
        return {loc.path: rewrite_pkcs12(current[loc.path], loc.alias, entry, password, loc.path)}
