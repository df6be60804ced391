"""PKCS#12 keystores (.p12, .pfx), made by openssl, keytool or Windows."""
from __future__ import annotations

import logging

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from agent.inventory import (
    CERTIFICATE, MATCHES, MISMATCH, NO_KEY, PRIVATE_KEY_ENTRY, TRUSTED_CERTIFICATE, FoundCert,
)
from agent.stores.base import ReadContext, StoreReader, StoreReadError, tlv_header
from agent.stores.keys import KEY_ERRORS, public_spki
from agent.stores.sniff import JCEKS_MAGIC, JKS_MAGIC, hint

log = logging.getLogger(__name__)
_DER = serialization.Encoding.DER


class Pkcs12Reader(StoreReader):
    """Reads PKCS#12 files (``store_type`` "pkcs12").

    The key's certificate is chain_index 0 of a PRIVATE_KEY_ENTRY whose alias is
    its friendly name ("" when it has none); further certificates without a
    friendly name (or with the key's) are its chain, 1, 2, ...; certificates
    with their own friendly name are TRUSTED_CERTIFICATE entries (keytool's
    trusted entries). ``key_encrypted`` is True when a non-empty password
    protects the file. A JKS/JCEKS file configured as pkcs12 is read as such.
    """

    store_type = "pkcs12"

    def read(self, path: str, data: bytes, ctx: ReadContext) -> list[FoundCert]:
        """Entries of the PKCS#12 ``data``, opened with the store's password."""
        if data[:4] in (JKS_MAGIC, JCEKS_MAGIC):
            from agent.stores.jks import JksReader

            return JksReader().read(path, data, ctx)
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
