"""Java keystores: JKS and JCEKS (read with pyjks).

``store_type`` is "jks" or "jceks" according to the file's magic number. A
PKCS#12 file configured as jks (keytool's default since Java 9) is read as
PKCS#12.
"""
from __future__ import annotations

import logging
import struct

import importlib
from typing import Any

from agent.inventory import MATCHES, MISMATCH, NO_KEY, PRIVATE_KEY_ENTRY, TRUSTED_CERTIFICATE, UNKNOWN, FoundCert
from agent.stores import asn1
from agent.stores.base import ReadContext, StoreReader, StoreReadError, der_length_check
from agent.stores.keys import KEY_ERRORS, cert_spki, der_key_spki
from agent.stores.sniff import JCEKS_MAGIC, JKS_MAGIC, hint, sniff


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
        elif sniff(data) == "pkcs12":
            from agent.stores.pkcs12 import Pkcs12Reader

            return Pkcs12Reader().read(path, data, ctx)
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
