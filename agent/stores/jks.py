"""Java keystores: JKS and JCEKS. Reader (with pyjks) and writer.

``store_type`` is "jks" or "jceks" according to the file's magic number. A
PKCS#12 file configured as jks (keytool's default since Java 9) is read and written
as PKCS#12: :mod:`agent.stores` routes by content.

Writing a renewed private-key entry: The file is split into its raw entry records; every entry except the one
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
import importlib
import logging
import os
import struct
import time
from dataclasses import dataclass
from typing import Any, Mapping

import agent.stores.asn1 as asn1
from agent.errors import StoreWriteError
from agent.inventory import MATCHES, MISMATCH, NO_KEY, PRIVATE_KEY_ENTRY, TRUSTED_CERTIFICATE, UNKNOWN, FoundCert
from agent.keys import private_key_pkcs8_der
from agent.stores.base import (KeystoreWriter, NewEntry, ReadContext, StoreReader, StoreReadError, WriteTarget,
                               der_length_check)
from agent.stores.keys import KEY_ERRORS, cert_spki, der_key_spki
from agent.stores.sniff import JCEKS_MAGIC, JKS_MAGIC, hint

__all__ = ["JksReader", "JksWriter", "rewrite_keystore", "decrypt_key", "WrongKeyPassword", "JCEKS_ITERATIONS"]


class _LazyPyjks:
    """pyjks (with pycryptodomex and twofish) costs about 14 MB of memory: load it on the first keystore."""

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module("jks"), name)


pyjks = _LazyPyjks()

log = logging.getLogger(__name__)


class JksReader(StoreReader):
    """Reads JKS and JCEKS keystores.

    Private-key entries give their chain (chain_index 0 = the key's own
    certificate, which alone has ``has_private_key``); the key is decrypted
    with the store password to check that it matches (UNKNOWN when its own
    password differs). Keys in these formats are always encrypted, so
    ``key_encrypted`` is True. Trusted-certificate entries are
    TRUSTED_CERTIFICATE; secret-key entries are ignored. Without a password the
    certificates are still listed (they are not encrypted in these formats) and
    a ``no_password`` problem says that integrity and keys were not checked.
    """

    store_type = "jks"

    def read(self, path: str, data: bytes, ctx: ReadContext) -> list[FoundCert]:
        """Entries of the JKS/JCEKS ``data``."""
        magic = data[:4]
        if magic == JKS_MAGIC:
            stype = "jks"
        elif magic == JCEKS_MAGIC:
            stype = "jceks"
        else:
            raise StoreReadError("corrupt", "the file is not a JKS or JCEKS keystore" + hint(data, "jks"), "jks")

        secret, unavailable = ctx.password_or_why()
        password: str | None = secret.reveal() if secret is not None else None  # type: ignore[attr-defined]
        ks = _load(data, password, stype)
        if password is None:
            if unavailable is not None:
                reason, why = unavailable.reason, unavailable.message
            else:
                reason, why = "no_password", "no password is configured for its store"
            ctx.report(stype, path, reason,
                       f"certificates listed without checking the keystore's integrity or its keys: {why}")

        out: list[FoundCert] = []
        for alias, entry in ks.entries.items():
            if isinstance(entry, pyjks.PrivateKeyEntry):
                out.extend(self._private(path, stype, alias, entry, password, ctx))
            elif isinstance(entry, pyjks.TrustedCertEntry):
                if entry.type != "X.509":
                    continue
                if _check(path, stype, alias, 0, entry.cert, ctx):
                    out.append(ctx.found(stype, path, alias, 0, entry.cert, entry_type=TRUSTED_CERTIFICATE))
        if not out and not ctx.problems:
            raise StoreReadError("no_certificates", f"the {stype.upper()} keystore holds no certificates", stype)
        return out

    @staticmethod
    def _private(path: str, stype: str, alias: str, entry: pyjks.PrivateKeyEntry, password: str | None,
                 ctx: ReadContext) -> list[FoundCert]:
        chain = [der for (ctype, der) in entry.cert_chain if ctype == "X.509"]
        if not chain:
            return []
        match = UNKNOWN
        if password is not None:
            pkcs8 = None
            try:
                pkcs8 = decrypt_key(entry._encrypted, password, stype)   # noqa: SLF001 - the protected key bytes
            except WrongKeyPassword:
                log.debug("%s: key %r has its own password; not checked", path, alias)
            except Exception:  # noqa: BLE001 - the key protection is untrusted input
                log.debug("%s: key %r cannot be decrypted", path, alias, exc_info=True)
            if pkcs8 is not None:
                try:
                    spki = der_key_spki(pkcs8)
                except KEY_ERRORS:
                    spki = None
                if spki is not None:
                    match = MATCHES if spki == cert_spki(chain[0]) else MISMATCH
        out = []
        for i, der in enumerate(chain):
            if not _check(path, stype, alias, i, der, ctx):
                continue
            if i == 0:
                out.append(ctx.found(stype, path, alias, 0, der, True, True, match, PRIVATE_KEY_ENTRY))
            else:
                out.append(ctx.found(stype, path, alias, i, der, False, False, NO_KEY, PRIVATE_KEY_ENTRY))
        return out


class WrongKeyPassword(Exception):
    """The key's protection does not open with the password (the key has a password of its own)."""


#: Sun's proprietary JKS key protection and the JCEKS PBE (PBEWithMD5AndTripleDES)
JKS_KEY_OID = "1.3.6.1.4.1.42.2.17.1.1"
JCE_KEY_OID = "1.3.6.1.4.1.42.2.19.1"


def decrypt_key(protected: bytes, password: str, stype: str) -> bytes:
    """The PKCS#8 PrivateKeyInfo inside a JKS/JCEKS EncryptedPrivateKeyInfo.

    Parsed here rather than by pyjks: OpenJDK 17.0.19 and later write the JKS
    algorithm identifier without its NULL parameters, which pyjks 20 cannot read
    (it asks for the absent parameters' bytes). Raises :class:`WrongKeyPassword`
    when the integrity check or padding fails, ValueError for anything malformed.
    """
    _, start, end = asn1.read_tlv(protected)
    items = asn1.children(protected, start, end)
    if len(items) != 2 or items[0][0] != asn1.SEQUENCE or items[1][0] != asn1.OCTET_STRING:
        raise ValueError("not an EncryptedPrivateKeyInfo")
    algorithm = asn1.children(protected, items[0][2], items[0][3])
    if not algorithm or algorithm[0][0] != asn1.OID:
        raise ValueError("no key protection algorithm")
    oid = asn1.decode_oid(protected[algorithm[0][2]:algorithm[0][3]])
    encrypted = protected[items[1][2]:items[1][3]]
    sun_crypto = importlib.import_module("jks.sun_crypto")
    wrong = (pyjks.BadHashCheckException, pyjks.BadPaddingException)
    try:
        if oid == JKS_KEY_OID:
            return sun_crypto.jks_pkey_decrypt(encrypted, password)
        if oid == JCE_KEY_OID and stype == "jceks":
            if len(algorithm) != 2 or algorithm[1][0] != asn1.SEQUENCE:
                raise ValueError("JCEKS key protection without its PBE parameters")
            params = asn1.children(protected, algorithm[1][2], algorithm[1][3])
            if len(params) != 2 or params[0][0] != asn1.OCTET_STRING or params[1][0] != asn1.INTEGER:
                raise ValueError("malformed JCEKS PBE parameters")
            salt = protected[params[0][2]:params[0][3]]
            iterations = int.from_bytes(protected[params[1][2]:params[1][3]], "big")
            return sun_crypto.jce_pbe_decrypt(encrypted, password, salt, iterations)
    except wrong:
        raise WrongKeyPassword() from None
    raise ValueError(f"unknown {stype.upper()} key protection algorithm {oid}")


def _check(path: str, stype: str, alias: str, index: int, der: bytes, ctx: ReadContext) -> bool:
    problem = der_length_check(der)
    if problem is None:
        return True
    ctx.report(stype, path, problem, f"certificate {index} of entry {alias!r} is not a valid DER certificate", alias)
    return False


def _load(data: bytes, password: str | None, stype: str) -> pyjks.KeyStore:
    label = stype.upper()
    try:
        return pyjks.KeyStore.loads(data, password, try_decrypt_keys=False)
    except pyjks.KeystoreSignatureException:
        raise StoreReadError(
            "wrong_password",
            f"the configured password does not open the {label} keystore (wrong password, or the file is damaged)",
            stype,
        ) from None
    except pyjks.BadKeystoreFormatException as e:
        cut = isinstance(e.args[0] if e.args else None, struct.error) or "signature size" in str(e)
        if cut:
            raise StoreReadError("truncated", f"the {label} keystore is cut short", stype) from None
        raise StoreReadError("corrupt", f"the {label} keystore is malformed", stype) from None
    except pyjks.UnsupportedKeystoreVersionException:
        raise StoreReadError("unsupported", f"the {label} keystore version is not supported", stype) from None
    except Exception:  # noqa: BLE001 - pyjks parses untrusted input and may raise anything
        log.debug("pyjks failed", exc_info=True)
        raise StoreReadError("corrupt", f"the {label} keystore cannot be parsed", stype) from None


# --------------------------------------------------------------------------- writing

_WHITENING = b"Mighty Aphrodite"
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
    return asn1.seq(asn1.seq(asn1.oid(JKS_KEY_OID), asn1.null()), asn1.octets(encrypted))


def _protect_jceks(pkcs8: bytes, password: str) -> bytes:
    from Cryptodome.Cipher import DES3
    from jks import sun_crypto

    salt = os.urandom(8)
    key, iv = sun_crypto._jce_pbe_derive_key_and_iv(password, salt, JCEKS_ITERATIONS)
    pad = 8 - len(pkcs8) % 8
    encrypted = DES3.new(key, DES3.MODE_CBC, iv=iv).encrypt(pkcs8 + bytes([pad]) * pad)
    params = asn1.seq(asn1.octets(salt), asn1.integer(JCEKS_ITERATIONS))
    return asn1.seq(asn1.seq(asn1.oid(JCE_KEY_OID), params), asn1.octets(encrypted))


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
        if target.password is None:
            raise StoreWriteError(f"{loc.path}: the keystore's store has no password configured; set "
                                  "password_file or password_env")
        kp = target.key_password.reveal() if target.key_password is not None else None
        return {loc.path: rewrite_keystore(data, loc.alias, entry, target.password.reveal(), kp, loc.path)}
