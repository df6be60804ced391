"""Rewrite a JKS or JCEKS keystore with a renewed private-key entry.

The file is split into its raw entry records; every entry except the one
replaced is copied byte for byte (other private keys, whatever their own
passwords, trusted certificates, JCEKS secret keys), so nothing is decrypted
or re-encoded that does not have to be. The replaced entry keeps its alias and
gets a fresh timestamp, the new key (protected with the key password, by
default the store password, as keytool does) and the new chain. The keystore
integrity hash is made again with the store password.

Key protection: JKS uses Sun's SHA-1 keystream (pyjks implements it); JCEKS
uses PBEWithMD5AndTripleDES (made here from pyjks' key derivation and
Cryptodome's 3DES, both already dependencies of pyjks). JCEKS passwords must
be ASCII (a Java rule).
"""
from __future__ import annotations

import hashlib
import os
import struct
import time
from dataclasses import dataclass
from typing import Mapping

from agent.errors import StoreWriteError
from agent.keys import private_key_pkcs8_der
from agent.stores import asn1
from agent.stores.writers import KeystoreWriter, NewEntry, WriteTarget

__all__ = ["JksWriter", "rewrite_keystore", "JCEKS_ITERATIONS"]

JKS_MAGIC = b"\xfe\xed\xfe\xed"
JCEKS_MAGIC = b"\xce\xce\xce\xce"
_WHITENING = b"Mighty Aphrodite"
_JKS_KEY_OID = "1.3.6.1.4.1.42.2.17.1.1"
_JCE_KEY_OID = "1.3.6.1.4.1.42.2.19.1"
JCEKS_ITERATIONS = 200_000        # what Java 17's JceKeyStore uses
_PRIVATE, _TRUSTED, _SECRET = 1, 2, 3


@dataclass
class _Record:
    tag: int
    alias: str
    raw: bytes        # the whole entry, tag included


def _u16(data: bytes, pos: int) -> tuple[int, int]:
    return struct.unpack_from(">H", data, pos)[0], pos + 2


def _u32(data: bytes, pos: int) -> tuple[int, int]:
    return struct.unpack_from(">I", data, pos)[0], pos + 4


def _skip_data(data: bytes, pos: int) -> int:
    n, pos = _u32(data, pos)
    if pos + n > len(data):
        raise StoreWriteError("truncated")
    return pos + n


def _skip_utf(data: bytes, pos: int) -> int:
    n, pos = _u16(data, pos)
    return pos + n


def _split(data: bytes, path: str) -> tuple[bytes, int, list[_Record]]:
    """``(magic, version, records)``; the trailing hash is checked by the caller."""
    magic = data[:4]
    if magic not in (JKS_MAGIC, JCEKS_MAGIC):
        raise StoreWriteError(f"{path}: not a JKS or JCEKS keystore")
    try:
        version, pos = _u32(data, 4)
        if version != 2:
            raise StoreWriteError(f"{path}: keystore version {version} is not supported for writing (only 2)")
        count, pos = _u32(data, pos)
        records = []
        for _ in range(count):
            start = pos
            tag, pos = _u32(data, pos)
            n, p = _u16(data, pos)
            alias = data[p:p + n].decode("utf-8")
            pos = p + n + 8                               # alias, timestamp
            if tag == _PRIVATE:
                pos = _skip_data(data, pos)               # protected key
                chain, pos = _u32(data, pos)
                for _ in range(chain):
                    pos = _skip_utf(data, pos)            # certificate type
                    pos = _skip_data(data, pos)
            elif tag == _TRUSTED:
                pos = _skip_utf(data, pos)
                pos = _skip_data(data, pos)
            elif tag == _SECRET and magic == JCEKS_MAGIC:
                from jks import KeyStore                  # a serialized Java object: let javaobj find its end

                _, pos = KeyStore._read_java_obj(data, pos, ignore_remaining_data=True)
            else:
                raise StoreWriteError(f"{path}: unknown keystore entry type {tag}")
            records.append(_Record(tag, alias, data[start:pos]))
    except StoreWriteError as e:
        if str(e) == "truncated":
            raise StoreWriteError(f"{path}: the keystore is cut short") from None
        raise
    except (struct.error, UnicodeDecodeError, ValueError, IndexError):
        raise StoreWriteError(f"{path}: the keystore is malformed") from None
    except Exception:  # noqa: BLE001 - javaobj parses untrusted input
        raise StoreWriteError(f"{path}: the keystore is malformed") from None
    if len(data) != pos + 20:
        raise StoreWriteError(f"{path}: the keystore is malformed (unexpected data after its entries)")
    return magic, version, records


def _mac(password: str, body: bytes) -> bytes:
    return hashlib.sha1(password.encode("utf-16-be") + _WHITENING + body).digest()


def _protect_jks(pkcs8: bytes, password: str) -> bytes:
    from jks import sun_crypto

    encrypted = sun_crypto.jks_pkey_encrypt(pkcs8, password)
    return asn1.seq(asn1.seq(asn1.oid(_JKS_KEY_OID), asn1.null()), asn1.octets(encrypted))


def _protect_jceks(pkcs8: bytes, password: str) -> bytes:
    from Cryptodome.Cipher import DES3
    from jks import sun_crypto

    salt = os.urandom(8)
    key, iv = sun_crypto._jce_pbe_derive_key_and_iv(password, salt, JCEKS_ITERATIONS)
    pad = 8 - len(pkcs8) % 8
    encrypted = DES3.new(key, DES3.MODE_CBC, iv=iv).encrypt(pkcs8 + bytes([pad]) * pad)
    params = asn1.seq(asn1.octets(salt), asn1.integer(JCEKS_ITERATIONS))
    return asn1.seq(asn1.seq(asn1.oid(_JCE_KEY_OID), params), asn1.octets(encrypted))


def _utf(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


def _data(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def rewrite_keystore(data: bytes, alias: str, entry: NewEntry, store_password: str, key_password: str | None,
                     path: str) -> bytes:
    """``data`` (JKS/JCEKS) with private-key entry ``alias`` replaced by ``entry`` (see module doc)."""
    magic, version, records = _split(data, path)
    if _mac(store_password, data[:-20]) != data[-20:]:
        raise StoreWriteError(f"{path}: the store password does not open the keystore (wrong password, or the "
                              "file is damaged)")
    jceks = magic == JCEKS_MAGIC
    kind = "JCEKS" if jceks else "JKS"
    matches = [r for r in records if r.alias == alias]
    if not matches:
        raise StoreWriteError(f"{path}: the {kind} keystore has no entry {alias!r}")
    if matches[0].tag != _PRIVATE:
        raise StoreWriteError(f"{path}: entry {alias!r} is not a private-key entry; only those are renewed")
    kp = key_password if key_password is not None else store_password
    if jceks:
        try:
            kp.encode("ascii")
        except UnicodeEncodeError:
            raise StoreWriteError(f"{path}: JCEKS key passwords must be ASCII") from None
    pkcs8 = private_key_pkcs8_der(entry.key)  # type: ignore[arg-type]
    protected = _protect_jceks(pkcs8, kp) if jceks else _protect_jks(pkcs8, kp)
    chain = [entry.cert_der, *entry.chain_ders]
    new = (struct.pack(">I", _PRIVATE) + _utf(alias) + struct.pack(">q", int(time.time() * 1000))
           + _data(protected) + struct.pack(">I", len(chain))
           + b"".join(_utf("X.509") + _data(c) for c in chain))
    body = magic + struct.pack(">II", version, len(records)) + b"".join(
        new if r is matches[0] else r.raw for r in records)
    return body + _mac(store_password, body)


class JksWriter(KeystoreWriter):
    """JKS and JCEKS keystores."""

    store_types = ("jks", "jceks")

    def render(self, target: WriteTarget, current: Mapping[str, bytes], entry: NewEntry) -> dict[str, bytes]:
        loc = self.entry_location(target)
        data = current[loc.path]
        if data[:4] not in (JKS_MAGIC, JCEKS_MAGIC):
            # keytool's default store type is PKCS#12; a .jks file may hold one
            from agent.stores.pkcs12_write import Pkcs12Writer

            return Pkcs12Writer().render(target, current, entry)
        if target.password is None:
            raise StoreWriteError(f"{loc.path}: the keystore's store has no password configured; set "
                                  "password_file or password_env")
        kp = target.key_password.reveal() if target.key_password is not None else None
        return {loc.path: rewrite_keystore(data, loc.alias, entry, target.password.reveal(), kp, loc.path)}
