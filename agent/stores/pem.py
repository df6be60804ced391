"""PEM files: one or many certificates, optionally with private keys. Reader and writer.

Reading: the hot path (certificates without keys) never calls an X.509 parser:
blocks are found with ``bytes.find``, decoded with ``binascii.a2b_base64`` and given
a cheap DER length check. cryptography is used only when the file also holds a
private key (to check which certificate it belongs to) or a PKCS#7 block.

Writing (:class:`PemWriter`) keeps the layout, all driven by what the files hold now:

- separate files: the certificate file (leaf only) and a key file
  (``WriteTarget.key_file``), optionally a chain file (``chain_file``);
- fullchain: the certificate file holds the leaf and its chain, the key is
  in a key file;
- combined: one file holds key, leaf and chain (in any order).

In each file the certificate blocks are replaced where the first one was
(leaf alone when the file held one certificate; leaf + intermediates when it
held more, + the root when the old chain ended in a self-signed one), the key
block where the key was, in the same format (PKCS#8 or traditional) and
encryption state (encrypted keys are encrypted again with the store
password; without one the write is refused). Other PEM blocks (DH
parameters...) are kept; text between blocks (openssl's "Bag Attributes",
"subject=" lines) describes the old certificate and is dropped.
"""
from __future__ import annotations

import binascii
import logging
import re
import warnings
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding

from agent.errors import StoreWriteError
from agent.inventory import MATCHES, MISMATCH, NO_KEY, UNKNOWN, FoundCert
from agent.keys import pem_key_style, private_key_pem
from agent.stores.base import (NewEntry, ReadContext, StoreReader, StoreReadError, StoreWriter, WriteTarget,
                               der_length_check, split_chain, tlv_header)
from agent.stores.keys import cert_spki, pem_key_spki
from agent.stores.pemblocks import Block, BlockProblem, scan_pem, well_formed
from agent.stores.sniff import hint

__all__ = ["PemReader", "PemWriter", "pem_blocks", "PemBlock", "rewrite_pem", "rewrite_chain_file"]

log = logging.getLogger(__name__)

# label -> whether the DER may carry data after the certificate (OpenSSL's
# TRUSTED CERTIFICATE appends its trust settings)
_CERT_LABELS = {b"CERTIFICATE": False, b"X509 CERTIFICATE": False, b"TRUSTED CERTIFICATE": True}
_PKCS7_LABELS = {b"PKCS7", b"PKCS #7 SIGNED DATA", b"CMS"}
# blocks that are not certificates and are known not to be: skipped without a problem
_OTHER_LABELS = {
    b"DH PARAMETERS", b"X9.42 DH PARAMETERS", b"EC PARAMETERS", b"DSA PARAMETERS", b"PARAMETERS",
    b"PUBLIC KEY", b"RSA PUBLIC KEY", b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST", b"X509 CRL",
    b"SSL SESSION PARAMETERS", b"ENCRYPTED PRIVATE KEY INFO", b"ATTRIBUTE CERTIFICATE",
}
_ENCRYPTED_KEY = b"ENCRYPTED PRIVATE KEY"
_LEGACY_ENCRYPTED = b"Proc-Type: 4,ENCRYPTED"
_a2b = binascii.a2b_base64


class PemReader(StoreReader):
    """Reads PEM files (``store_type`` "pem").

    Every block is accounted for (agent/stores/pemblocks.py): a certificate, a key, a PKCS#7
    bundle, a known non-certificate block (DH parameters, a CSR, a CRL, a public key), or a
    problem naming the block's number and byte offset (a damaged BEGIN or END line, an unknown
    label, bad base64, a cut DER). One bad block never costs the file its good ones.
    """

    store_type = "pem"

    def read(self, path: str, data: bytes, ctx: ReadContext) -> list[FoundCert]:
        """Certificates in the PEM ``data``; keys are matched to certificates."""
        keys: list[tuple[bytes, bytes, int]] = []       # (label, whole block, block number)
        others: list[bytes] = []
        seen = [0]
        certs = list(self._ders(path, ((0, data),), ctx, keys, others, seen))
        self._check_found(data, seen[0], bool(certs), keys, others, ctx)
        if not certs:
            if keys and not ctx.problems:
                log.debug("%s holds only private keys; nothing to report", path)
            return []
        if not keys:
            found = ctx.found
            return [found("pem", path, "", i, der) for i, der in enumerate(certs)]
        return self._with_keys(path, certs, keys, ctx)

    def read_parts(self, path: str, parts: Iterable[tuple[int, bytes]], ctx: ReadContext) -> Iterator[FoundCert]:
        """The certificates of a large PEM file given in parts, one by one (memory stays bounded).

        ``parts`` are ``(offset in the file, bytes)``, each starting outside a block (just after
        an END line). For files without private keys: the caller checks (a key's match is not
        known until the whole file is read); a key found anyway is reported as a problem.
        """
        keys: list[tuple[bytes, bytes, int]] = []
        others: list[bytes] = []
        seen = [0]
        n = 0
        for der in self._ders(path, parts, ctx, keys, others, seen):
            yield ctx.found("pem", path, "", n, der)
            n += 1
        if keys:
            ctx.report("pem", path, "unsupported", f"block {keys[0][2]}, a private key, appeared in a file read in "
                       "parts; its certificate's key match is not checked")
        self._check_found(b"", seen[0], n > 0, keys, others, ctx)

    @staticmethod
    def _check_found(data: bytes, seen: int, any_cert: bool, keys: list, others: list[bytes], ctx: ReadContext) -> None:
        if not seen:
            raise StoreReadError("corrupt", "no PEM block (-----BEGIN ...) found" + hint(bytes(data[:4096]), "pem"),
                                 "pem")
        if not any_cert and not ctx.problems and not keys:
            kinds = ", ".join(sorted({_text(x) for x in others}))
            raise StoreReadError("no_certificates", f"the file holds no certificates (only {kinds})", "pem")

    def _ders(self, path: str, parts: Iterable[tuple[int, bytes]], ctx: ReadContext,
              keys: list[tuple[bytes, bytes, int]], others: list[bytes], seen: list[int]) -> Iterator[bytes]:
        """The DER of every good certificate block (and of PKCS#7 blocks' certificates), in order.

        Problems go to ``ctx``, key blocks to ``keys``, known non-certificate labels to ``others``;
        ``seen[0]`` counts blocks and damaged blocks.
        """
        index = 0
        certs: list[bytes] = []
        for base, data in parts:
            fast = well_formed(data)
            if fast is not None and all(label in _CERT_LABELS for label, *_ in fast):
                # the hot path: certificate blocks only, all whole (a bundle, a chain, one certificate)
                cert = self._cert
                for label, start, body_start, body_end, _ in fast:
                    index += 1
                    der = cert(path, data[body_start:body_end], label, index, base + start, ctx)
                    if der is not None:
                        yield der
                seen[0] += len(fast)
                continue
            for item in scan_pem(data, base, index):
                seen[0] += 1
                index = item.index
                if item.__class__ is BlockProblem:
                    ctx.report("pem", path, item.reason, item.message)     # type: ignore[union-attr]
                    continue
                label = item.label                                         # type: ignore[union-attr]
                if label in _CERT_LABELS:
                    der = self._cert(path, data[item.body_start:item.body_end], label, item.index,  # type: ignore[union-attr]
                                     item.at, ctx)  # type: ignore[union-attr]
                    if der is not None:
                        certs.append(der)
                elif label.endswith(b"PRIVATE KEY"):
                    keys.append((label, bytes(data[item.offset:item.end]), item.index))  # type: ignore[union-attr]
                elif label in _PKCS7_LABELS:
                    self._pkcs7(path, bytes(data[item.offset:item.end]), item, certs, ctx)  # type: ignore[union-attr]
                elif label in _OTHER_LABELS:
                    others.append(label)
                else:
                    ctx.report("pem", path, "unsupported",
                               f"block {item.index} (at byte {item.at}) is labelled {_text(label)!r}, "  # type: ignore[union-attr]
                               "which is neither a certificate nor a key; it is skipped")
                if certs:
                    yield from certs
                    certs.clear()

    @staticmethod
    def _cert(path: str, b64: bytes, label: bytes, index: int, at: int, ctx: ReadContext) -> bytes | None:
        """The DER of certificate block ``index`` (at byte ``at``), or None and a problem."""
        try:
            der = _a2b(b64)
        except binascii.Error:
            ctx.report("pem", path, "corrupt", f"certificate block {index} (at byte {at}) is not valid base64")
            return None
        trailing = _CERT_LABELS[label]
        problem = der_length_check(der, allow_trailing=trailing)
        if problem is not None:
            detail = "is cut short" if problem == "truncated" else "is not a DER certificate"
            ctx.report("pem", path, problem, f"certificate block {index} (at byte {at}) {detail}")
            return None
        if trailing:
            _, hl, length = tlv_header(der)  # type: ignore[misc]
            der = der[:hl + length]
        return der

    @staticmethod
    def _pkcs7(path: str, block: bytes, where: Block, certs: list[bytes], ctx: ReadContext) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.serialization import pkcs7

        try:
            with warnings.catch_warnings():
                # openssl writes the certificate SET unsorted (BER); cryptography warns and copes
                warnings.simplefilter("ignore", UserWarning)
                for c in pkcs7.load_pem_pkcs7_certificates(block):
                    certs.append(c.public_bytes(serialization.Encoding.DER))
        except Exception:  # noqa: BLE001 - untrusted input: any parser error is this block's problem
            ctx.report("pem", path, "corrupt",
                       f"PKCS#7 block {where.index} (at byte {where.at}) cannot be parsed")

    @staticmethod
    def _with_keys(path: str, certs: list[bytes], keys: list[tuple[bytes, bytes, int]],
                   ctx: ReadContext) -> list[FoundCert]:
        plain: list[bytes] = []          # SPKIs of keys we could load
        encrypted = unknown = 0
        for label, block, n in keys:
            if label == _ENCRYPTED_KEY or _LEGACY_ENCRYPTED in block:
                encrypted += 1
                continue
            try:
                plain.append(pem_key_spki(block))
            except Exception as e:  # noqa: BLE001 - untrusted input: any loader error means "cannot be loaded"
                unknown += 1
                unsupported = isinstance(e, UnsupportedAlgorithm) or label.startswith(b"OPENSSH")
                reason = "unsupported" if unsupported else "corrupt"
                ctx.report("pem", path, reason, f"block {n}, a private key ({_text(label)}), cannot be loaded")
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


# --------------------------------------------------------------------------- writing

_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----\r?\n.*?-----END \1-----\r?\n?", re.S)


@dataclass(frozen=True)
class PemBlock:
    label: bytes
    raw: bytes

    @property
    def is_cert(self) -> bool:
        return self.label in _CERT_LABELS

    @property
    def is_key(self) -> bool:
        return self.label.endswith(b"PRIVATE KEY")

    @property
    def encrypted(self) -> bool:
        return self.is_key and pem_key_style(self.raw)[1]


def pem_blocks(data: bytes) -> list[PemBlock]:
    """The complete PEM blocks of ``data``, in order."""
    return [PemBlock(m.group(1), m.group(0)) for m in _BLOCK.finditer(data)]


def _pem_cert(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)


def _password(target: WriteTarget) -> str | None:
    return target.password.reveal() if target.password is not None else None


def _key_block(old: PemBlock, entry: NewEntry, target: WriteTarget, path: str) -> bytes:
    style, encrypted = pem_key_style(old.raw)
    password = None
    if encrypted:
        password = _password(target)
        if not password:
            raise StoreWriteError(
                f"{path}: the private key there is encrypted and its store has no password configured; "
                "certfleet will not write the new key unencrypted: set password_file or password_env for the store"
            )
    return private_key_pem(entry.key, style, password)  # type: ignore[arg-type]


def _certs_for(old_certs: list[bytes], entry: NewEntry) -> list[bytes]:
    """The certificate blocks that replace ``old_certs`` (PEM bytes)."""
    if not old_certs:
        return []
    if len(old_certs) == 1:
        ders = [entry.cert_der]
    else:
        inter, roots = split_chain(entry.chain_ders)
        ders = [entry.cert_der, *inter]
        last = x509.load_pem_x509_certificate(old_certs[-1])
        if last.subject == last.issuer and roots:
            ders.append(roots[0])
    return [_pem_cert(d) for d in ders]


def rewrite_pem(data: bytes, entry: NewEntry, target: WriteTarget, path: str, replace_certs: bool = True,
                replace_key: bool = True) -> bytes:
    """``data`` (a PEM file) with its certificates and key replaced by ``entry``'s (see module doc)."""
    blocks = pem_blocks(data)
    if not blocks:
        raise StoreWriteError(f"{path}: no PEM block found; the file is not as it was when it was scanned")
    keys = [b for b in blocks if b.is_key]
    if len(keys) > 1 and replace_key:
        raise StoreWriteError(f"{path}: the file holds {len(keys)} private keys; certfleet does not know which "
                              "one to replace")
    old_certs = [b.raw for b in blocks if b.is_cert]
    new_certs = _certs_for(old_certs, entry) if replace_certs else []
    out: list[bytes] = []
    certs_done = False
    for b in blocks:
        if b.is_cert and replace_certs:
            if not certs_done:
                out.extend(new_certs)
                certs_done = True
        elif b.is_key and replace_key:
            out.append(_key_block(b, entry, target, path))
        else:
            raw = b.raw if b.raw.endswith(b"\n") else b.raw + b"\n"
            out.append(raw)
    return b"".join(out)


def rewrite_chain_file(data: bytes, entry: NewEntry, path: str) -> bytes:
    """A chain-only file (certbot's chain.pem): the new intermediates (+ root when the old one had it)."""
    blocks = [b for b in pem_blocks(data) if b.is_cert]
    inter, roots = split_chain(entry.chain_ders)
    ders = list(inter)
    if blocks:
        last = x509.load_pem_x509_certificate(blocks[-1].raw)
        if last.subject == last.issuer and roots:
            ders.append(roots[0])
    if not ders:
        ders = list(entry.chain_ders)
    if not ders:
        raise StoreWriteError(f"{path}: a chain file is configured but the new certificate came without a chain")
    return b"".join(_pem_cert(d) for d in ders)


class PemWriter(StoreWriter):
    """PEM files: separate, fullchain or combined layouts (see module doc)."""

    store_types = ("pem",)

    def files(self, target: WriteTarget) -> list[str]:
        out = [target.location.path]
        for extra in (target.key_file, target.chain_file):
            if extra and extra not in out:
                out.append(extra)
        return out

    def render(self, target: WriteTarget, current: Mapping[str, bytes], entry: NewEntry) -> dict[str, bytes]:
        loc = target.location
        if loc.chain_index != 0:
            raise StoreWriteError(
                f"{loc.path}: the location is certificate {loc.chain_index} of a chain, not a leaf; "
                "install at the leaf's location"
            )
        cert_data = current[loc.path]
        has_key_here = any(b.is_key for b in pem_blocks(cert_data))
        key_file = target.key_file if target.key_file and target.key_file != loc.path else None
        if key_file is None and not has_key_here:
            raise StoreWriteError(
                f"{loc.path}: no private key in this file and no key file named; the new key would be lost "
                "(find it with find_key_file, or name it in the install request)"
            )
        out = {loc.path: rewrite_pem(cert_data, entry, target, loc.path, replace_key=key_file is None)}
        if key_file is not None:
            key_data = current[key_file]
            if not any(b.is_key for b in pem_blocks(key_data)):
                raise StoreWriteError(f"{key_file}: the key file holds no private key")
            out[key_file] = rewrite_pem(key_data, entry, target, key_file, replace_certs=False)
        if target.chain_file and target.chain_file != loc.path:
            out[target.chain_file] = rewrite_chain_file(current[target.chain_file], entry, target.chain_file)
        return out
