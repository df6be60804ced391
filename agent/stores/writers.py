"""Store writers: put a renewed key and certificate where the old ones were found.

One module per store format (pem_write, pkcs12_write, jks_write) behind
:class:`StoreWriter`. A writer is a pure function of bytes: :meth:`StoreWriter.files`
names the files a write changes, :meth:`StoreWriter.render` turns their current
content into the new content. The install pipeline (agent/install.py) reads,
backs up, and writes the result with :func:`atomic_replace`, which keeps each
file's owner, group and mode.

Writers keep a store's shape: the PEM layout (separate files, fullchain,
combined), the key's format (PKCS#8 or traditional) and encryption, the
keystore's password, alias and other entries. A replaced keystore entry is
replaced in place, never left behind under another alias.
"""
from __future__ import annotations

import errno
import hashlib
import os
import stat
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from cryptography import x509

from agent.config import Secret
from agent.errors import StoreWriteError
from agent.fsutil import OwnerError, TempFileError, atomic_write, fsync_dir
from agent.inventory import LocationKey

__all__ = [
    "NewEntry", "WriteTarget", "StoreWriter", "KeystoreWriter", "writer_for", "atomic_replace", "find_key_file", "fsync_dir",
    "split_chain",
]


@dataclass(frozen=True)
class NewEntry:
    """What is installed: the new key, its certificate and the issuer chain (issuer first)."""

    key: object = field(repr=False)      # an RSA or EC private key (agent.keys.PrivateKey)
    cert_der: bytes = field(repr=False)
    chain_ders: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the new certificate, lower-case hex."""
        return hashlib.sha256(self.cert_der).hexdigest()


@dataclass(frozen=True)
class WriteTarget:
    """Where an entry goes: the location as found, plus the PEM companions and the passwords.

    ``key_file`` and ``chain_file`` apply to PEM and DER locations only: the file
    holding the certificate's key when it is not the certificate file itself,
    and a separate file holding only the chain (certbot's chain.pem).
    ``password`` is the store password (keystores, encrypted PEM keys);
    ``key_password`` a JKS/JCEKS entry's own password (default: ``password``).
    """

    location: LocationKey
    key_file: str | None = None
    chain_file: str | None = None
    password: Secret | None = field(default=None, repr=False)
    key_password: Secret | None = field(default=None, repr=False)


class StoreWriter(ABC):
    """Writes one kind of store."""

    store_types: tuple[str, ...] = ()

    @abstractmethod
    def files(self, target: WriteTarget) -> list[str]:
        """The files a write changes, the location's file first."""

    @abstractmethod
    def render(self, target: WriteTarget, current: Mapping[str, bytes], entry: NewEntry) -> dict[str, bytes]:
        """The new content of each file in :meth:`files`, made from ``current`` (their content now).

        Pure: writes nothing. Raises :class:`StoreWriteError` when the store
        cannot be rewritten without losing something (an encrypted key and no
        password, a keystore holding several private keys, a trusted entry
        at the location...).
        """


class KeystoreWriter(StoreWriter):
    """Writes a keystore (PKCS#12, JKS, JCEKS): one file whose locations are its entries."""

    def files(self, target: WriteTarget) -> list[str]:
        return [target.location.path]

    @staticmethod
    def entry_location(target: WriteTarget) -> LocationKey:
        """The target's location; refused when it is a certificate in an entry's chain, not the entry."""
        loc = target.location
        if loc.chain_index != 0:
            raise StoreWriteError(f"{loc.path}: the location is certificate {loc.chain_index} of entry "
                                  f"{loc.alias!r}'s chain; install at the entry itself")
        return loc


def writer_for(store_type: str) -> StoreWriter:
    """The writer for a location's store type (pem, der, pkcs12, jks, jceks)."""
    from agent.stores.jks_write import JksWriter
    from agent.stores.pem_write import DerWriter, PemWriter
    from agent.stores.pkcs12_write import Pkcs12Writer

    writers: dict[str, StoreWriter] = {
        "pem": PemWriter(), "der": DerWriter(), "pkcs12": Pkcs12Writer(), "jks": JksWriter(), "jceks": JksWriter(),
    }
    try:
        return writers[store_type]
    except KeyError:
        raise StoreWriteError(f"certfleet cannot write {store_type!r} stores") from None


def split_chain(chain_ders: Iterable[bytes]) -> tuple[list[bytes], list[bytes]]:
    """``(intermediates, roots)`` of a chain: roots are the self-signed certificates."""
    inter, roots = [], []
    for der in chain_ders:
        try:
            c = x509.load_der_x509_certificate(der)
            self_signed = c.subject == c.issuer
        except ValueError:
            self_signed = False
        (roots if self_signed else inter).append(der)
    return inter, roots


# --------------------------------------------------------------------------- atomic writes

def atomic_replace(path: str, data: bytes, like: os.stat_result | tuple[int, int, int] | None = None) -> None:
    """Replace ``path`` with ``data`` atomically, keeping its owner, group and mode.

    :func:`agent.fsutil.atomic_write`: a temporary file in the same directory,
    fsync, rename over ``path``, fsync the directory. ``like`` gives the
    owner, group and mode to keep (default: the current file's; a new file
    gets 0600); it is a stat result or ``(uid, gid, mode)``. A symbolic link
    is not replaced: the file it points to is. Raises :class:`StoreWriteError`.
    """
    real = os.path.realpath(path)
    if like is None:
        try:
            like = os.stat(real)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise StoreWriteError(f"{path}: cannot be examined ({e.strerror or e})") from None
    try:
        atomic_write(real, data, 0o600, like=like)
    except TempFileError as e:
        directory = os.path.dirname(real) or "."
        raise StoreWriteError(f"cannot create a temporary file in {directory} ({e.strerror or e})") from None
    except OwnerError as e:
        raise StoreWriteError(
            f"{path}: cannot keep its owner and group (uid {e.uid}, gid {e.gid}): "
            "the agent needs to run as root or as the file's owner"
        ) from None
    except OSError as e:
        why = "no space left on the device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise StoreWriteError(f"{path}: cannot be written ({why})") from None


# --------------------------------------------------------------------------- finding the key of a PEM certificate

def find_key_file(
    cert_path: str,
    old_cert_der: bytes,
    candidates: Iterable[str] | None = None,
    password: Secret | str | None = None,
    max_size: int = 1024 * 1024,
) -> str | None:
    """The file holding the private key of ``old_cert_der``, looked for beside ``cert_path``.

    ``candidates`` are the files to consider (for example the files of the
    store's scan); only those in the certificate's directory are checked
    (default: every file there). The certificate file itself comes first (a
    combined file), then names that mention "key", then the rest, in name
    order. Encrypted keys are checked when ``password`` opens them. Returns
    the matching path, or None.
    """
    from agent.keys import load_pem_private_key, same_public_key
    from agent.stores.pem_write import pem_blocks

    cert_path = os.path.abspath(cert_path)
    directory = os.path.dirname(cert_path)
    if candidates is None:
        try:
            names = [os.path.join(directory, n) for n in os.listdir(directory)]
        except OSError:
            names = []
    else:
        names = [os.path.abspath(c) for c in candidates]
    same_dir = {p for p in names if os.path.dirname(p) == directory}
    same_dir.add(cert_path)

    def order(p: str) -> tuple[int, str]:
        base = os.path.basename(p).lower()
        return (0 if p == cert_path else 1 if "key" in base else 2, base)

    try:
        cert = x509.load_der_x509_certificate(old_cert_der)
    except ValueError:
        return None
    pw = password.reveal() if isinstance(password, Secret) else password
    for p in sorted(same_dir, key=order):
        try:
            st = os.stat(p)
            if not stat.S_ISREG(st.st_mode) or st.st_size > max_size or st.st_size == 0:
                continue
            with open(p, "rb") as f:
                data = f.read(max_size + 1)
        except OSError:
            continue
        if b"PRIVATE KEY-----" not in data:
            continue
        for block in pem_blocks(data):
            if not block.is_key:
                continue
            try:
                key = load_pem_private_key(block.raw, pw if block.encrypted else None)
            except (ValueError, TypeError):
                continue
            if same_public_key(key, cert):
                return p
    return None
