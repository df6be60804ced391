"""Write PEM (and DER) locations as they were found.

Layouts, all driven by what the files hold now:

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

import re
from dataclasses import dataclass
from typing import Mapping

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from agent.errors import StoreWriteError
from agent.keys import pem_key_style, private_key_pem
from agent.stores.writers import NewEntry, StoreWriter, WriteTarget, split_chain

__all__ = ["PemWriter", "DerWriter", "pem_blocks", "PemBlock", "rewrite_pem", "rewrite_chain_file"]

_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----\r?\n.*?-----END \1-----\r?\n?", re.S)
_CERT_LABELS = (b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE")


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


class DerWriter(PemWriter):
    """A DER certificate file (its key, if any, in a PEM key file)."""

    store_types = ("der",)

    def render(self, target: WriteTarget, current: Mapping[str, bytes], entry: NewEntry) -> dict[str, bytes]:
        loc = target.location
        if loc.chain_index != 0 or current[loc.path][:1] != b"\x30":
            raise StoreWriteError(f"{loc.path}: only single DER certificates are rewritten (not PKCS#7 bundles)")
        if not target.key_file:
            raise StoreWriteError(f"{loc.path}: a DER certificate holds no key and no key file is named; "
                                  "the new key would be lost")
        out = {loc.path: entry.cert_der}
        key_data = current[target.key_file]
        if not any(b.is_key for b in pem_blocks(key_data)):
            raise StoreWriteError(f"{target.key_file}: the key file holds no PEM private key")
        out[target.key_file] = rewrite_pem(key_data, entry, target, target.key_file, replace_certs=False)
        if target.chain_file:
            out[target.chain_file] = rewrite_chain_file(current[target.chain_file], entry, target.chain_file)
        return out
