"""PEM files: one or many certificates, optionally with private keys.

The hot path (certificates without keys) never calls an X.509 parser: blocks
are found with ``bytes.find``, decoded with ``binascii.a2b_base64`` and given
a cheap DER length check. cryptography is used only when the file also holds
a private key (to check which certificate it belongs to) or a PKCS#7 block.
"""
from __future__ import annotations

import binascii
import logging
import warnings

from cryptography.exceptions import UnsupportedAlgorithm

from agent.inventory import MATCHES, MISMATCH, NO_KEY, UNKNOWN, FoundCert
from agent.stores.base import ReadContext, StoreReader, StoreReadError, der_length_check, tlv_header
from agent.stores.keys import KEY_ERRORS, cert_spki, pem_key_spki
from agent.stores.sniff import hint

log = logging.getLogger(__name__)

_BEGIN = b"-----BEGIN "
_DASHES = b"-----"
# label -> whether the DER may carry data after the certificate (OpenSSL's
# TRUSTED CERTIFICATE appends its trust settings)
_CERT_LABELS = {b"CERTIFICATE": False, b"X509 CERTIFICATE": False, b"TRUSTED CERTIFICATE": True}
_PKCS7_LABELS = {b"PKCS7", b"PKCS #7 SIGNED DATA", b"CMS"}
_ENCRYPTED_KEY = b"ENCRYPTED PRIVATE KEY"
_LEGACY_ENCRYPTED = b"Proc-Type: 4,ENCRYPTED"
_a2b = binascii.a2b_base64


class PemReader(StoreReader):
    """Reads PEM files (``store_type`` "pem")."""

    store_type = "pem"

    def read(self, path: str, data: bytes, ctx: ReadContext) -> list[FoundCert]:
        """Certificates in the PEM ``data``; keys are matched to certificates."""
        pos = data.find(_BEGIN)
        if pos < 0:
            raise StoreReadError("corrupt", "no PEM block (-----BEGIN ...) found" + hint(data, "pem"), "pem")
        certs: list[bytes] = []
        keys: list[tuple[bytes, bytes]] = []       # (label, whole block)
        others: list[bytes] = []
        while pos >= 0:
            label_end = data.find(_DASHES, pos + 11)
            label = data[pos + 11:label_end] if label_end >= 0 else b""
            if label_end < 0 or b"\n" in label or len(label) > 64:
                if label_end < 0 and data.find(b"\n", pos) < 0:
                    ctx.report("pem", path, "truncated", "the file ends inside a PEM header line")
                else:
                    ctx.report("pem", path, "corrupt", "a PEM header line (-----BEGIN ...-----) is malformed")
                break
            end_marker = b"-----END " + label + _DASHES
            body = label_end + 5
            end = data.find(end_marker, body)
            if end < 0:
                what = "certificate" if label in _CERT_LABELS else _text(label)
                ctx.report("pem", path, "truncated",
                           f"the file ends inside a {what} block (no -----END {_text(label)}----- line)")
                break
            if label in _CERT_LABELS:
                self._cert(path, data[body:end], label, len(certs) + 1, certs, ctx)
            elif label.endswith(b"PRIVATE KEY"):
                keys.append((label, data[pos:end + len(end_marker)]))
            elif label in _PKCS7_LABELS:
                self._pkcs7(path, data[pos:end + len(end_marker)], certs, ctx)
            else:
                others.append(label)
            pos = data.find(_BEGIN, end + len(end_marker))

        if not certs:
            if not ctx.problems and not keys:
                kinds = ", ".join(sorted({_text(x) for x in others}))
                raise StoreReadError("no_certificates", f"the file holds no certificates (only {kinds})", "pem")
            if keys and not ctx.problems:
                log.debug("%s holds only private keys; nothing to report", path)
            return []
        if not keys:
            found = ctx.found
            return [found("pem", path, "", i, der) for i, der in enumerate(certs)]
        return self._with_keys(path, certs, keys, ctx)

    @staticmethod
    def _cert(path: str, b64: bytes, label: bytes, n: int, certs: list[bytes], ctx: ReadContext) -> None:
        try:
            der = _a2b(b64)
        except binascii.Error:
            ctx.report("pem", path, "corrupt", f"certificate block {n} is not valid base64")
            return
        trailing = _CERT_LABELS[label]
        problem = der_length_check(der, allow_trailing=trailing)
        if problem is not None:
            detail = "is cut short" if problem == "truncated" else "is not a DER certificate"
            ctx.report("pem", path, problem, f"certificate block {n} {detail}")
            return
        if trailing:
            _, hl, length = tlv_header(der)  # type: ignore[misc]
            der = der[:hl + length]
        certs.append(der)

    @staticmethod
    def _pkcs7(path: str, block: bytes, certs: list[bytes], ctx: ReadContext) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.serialization import pkcs7

        try:
            with warnings.catch_warnings():
                # openssl writes the certificate SET unsorted (BER); cryptography warns and copes
                warnings.simplefilter("ignore", UserWarning)
                for c in pkcs7.load_pem_pkcs7_certificates(block):
                    certs.append(c.public_bytes(serialization.Encoding.DER))
        except KEY_ERRORS:
            ctx.report("pem", path, "corrupt", "a PKCS#7 block cannot be parsed")

    @staticmethod
    def _with_keys(path: str, certs: list[bytes], keys: list[tuple[bytes, bytes]], ctx: ReadContext) -> list[FoundCert]:
        plain: list[bytes] = []          # SPKIs of keys we could load
        encrypted = unknown = 0
        for n, (label, block) in enumerate(keys, 1):
            if label == _ENCRYPTED_KEY or _LEGACY_ENCRYPTED in block:
                encrypted += 1
                continue
            try:
                plain.append(pem_key_spki(block))
            except KEY_ERRORS as e:
                unknown += 1
                unsupported = isinstance(e, UnsupportedAlgorithm) or label.startswith(b"OPENSSH")
                reason = "unsupported" if unsupported else "corrupt"
                ctx.report("pem", path, reason, f"private key block {n} ({_text(label)}) cannot be loaded")
        spkis = [cert_spki(der) for der in certs]
        matched = set()
        flags = []
        for spki in spkis:
            if spki is not None and spki in plain:
                matched.add(spki)
                flags.append((True, False, MATCHES))
            else:
                flags.append((False, False, NO_KEY))
        if flags[0][2] != MATCHES:
            if any(s not in matched for s in plain):
                flags[0] = (True, False, MISMATCH)
            elif encrypted or unknown:
                flags[0] = (True, encrypted > 0, UNKNOWN)
        return [
            ctx.found("pem", path, "", i, der, has_key, enc, match)
            for i, (der, (has_key, enc, match)) in enumerate(zip(certs, flags, strict=True))
        ]


def _text(label: bytes) -> str:
    return label.decode("ascii", "replace")
