"""The two small interfaces every store format implements, and what they share.

Reading: a :class:`StoreReader` turns the bytes of one file into
:class:`~agent.inventory.FoundCert` records. It raises :class:`StoreReadError` when
the file cannot be read at all (the scanner turns that into a ScanProblem) and calls
:meth:`ReadContext.report` for partial problems (a bundle whose last certificate is
cut off: the good certificates are still returned).

Writing: a :class:`StoreWriter` puts a renewed key and certificate where the old ones
were found. It is a pure function of bytes: :meth:`StoreWriter.files` names the files a
write changes, :meth:`StoreWriter.render` turns their current content into the new
content. The install pipeline (agent/install/files.py) reads, backs up, and writes the
result with :func:`agent.stores.files.atomic_replace`, which keeps each file's owner,
group and mode. Writers keep a store's shape: the PEM layout (separate files,
fullchain, combined), the key's format (PKCS#8 or traditional) and encryption, the
keystore's password, alias and other entries. A replaced keystore entry is replaced in
place, never left behind under another alias.

This module is a contract: it imports no format. One module per format
(``pem``, ``der``, ``pkcs12``, ``jks``) holds that format's reader and writer;
:mod:`agent.stores` (the package) is the only place that picks them.
"""
from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Optional

from cryptography import x509

from agent.config.values import Secret
from agent.errors import AgentError, PasswordUnavailable, StoreWriteError
from agent.inventory import (
    CERTIFICATE, NO_KEY, FoundCert, LocationKey, ScanProblem,
)

__all__ = [
    "StoreReader", "StoreReadError", "ReadContext", "PasswordGetter", "der_length_check",
    "tlv_header", "PasswordUnavailable", "StoreWriter", "KeystoreWriter", "NewEntry", "WriteTarget",
    "split_chain",
]

# Returns the store's password (an object with .reveal()) or None when none is
# configured; raises PasswordUnavailable when a configured source cannot be read.
PasswordGetter = Callable[[], Optional[object]]


class StoreReadError(AgentError):
    """The file cannot be read as a store. ``reason`` is a ScanProblem reason code."""

    def __init__(self, reason: str, message: str, store_type: str | None = None, alias: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.store_type = store_type
        self.alias = alias


def _no_password() -> None:
    return None


class ReadContext:
    """What a reader needs besides the bytes: file facts, labels and the password.

    One context per file. ``problems`` collects partial problems reported by
    the reader.
    """

    __slots__ = ("file_owner", "file_group", "file_mode", "file_mtime", "labels", "password", "problems")

    def __init__(
        self,
        file_owner: str = "",
        file_group: str = "",
        file_mode: int = 0,
        file_mtime: float = 0.0,
        labels: Mapping[str, str] | None = None,
        password: PasswordGetter = _no_password,
    ) -> None:
        self.file_owner = file_owner
        self.file_group = file_group
        self.file_mode = file_mode
        self.file_mtime = file_mtime
        self.labels: Mapping[str, str] = labels if labels is not None else {}
        self.password = password
        self.problems: list[ScanProblem] = []

    def password_or_why(self) -> tuple[object | None, PasswordUnavailable | None]:
        """``(password, None)`` (the password is None when none is configured), or ``(None, why)``
        when a configured password source cannot be read."""
        try:
            return self.password(), None
        except PasswordUnavailable as e:
            return None, e

    def found(
        self,
        store_type: str,
        path: str,
        alias: str,
        chain_index: int,
        der: bytes,
        has_private_key: bool = False,
        key_encrypted: bool = False,
        key_match: str = NO_KEY,
        entry_type: str = CERTIFICATE,
    ) -> FoundCert:
        """A FoundCert for ``der`` at this location, with this file's facts."""
        return FoundCert(
            LocationKey(store_type, path, alias, chain_index), der, hashlib.sha256(der).hexdigest(),
            has_private_key, key_encrypted, key_match, entry_type,
            self.file_owner, self.file_group, self.file_mode, self.file_mtime, self.labels,
        )

    def report(self, store_type: str, path: str, reason: str, message: str, alias: str = "") -> None:
        """Record a partial problem; the reader still returns what it could read."""
        self.problems.append(ScanProblem(store_type, path, alias, reason, message))


class StoreReader(ABC):
    """Reads one kind of store file."""

    #: the store type this reader reports (pem, der, pkcs12, jks)
    store_type: str = ""

    @abstractmethod
    def read(self, path: str, data: bytes, ctx: ReadContext) -> list[FoundCert]:
        """All certificates in ``data`` (the content of ``path``).

        Raises StoreReadError for input that cannot be read at all.
        """


# --------------------------------------------------------------------------- writing

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


# --------------------------------------------------------------------------- shared helpers

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


def tlv_header(data: bytes, pos: int = 0) -> tuple[int, int, int] | None:
    """``(tag, header_length, content_length)`` of the DER TLV at ``pos``.

    None when the bytes there cannot start a definite-length TLV. The content
    may extend beyond ``data`` (a truncated file): callers compare lengths.
    """
    n = len(data)
    if pos + 2 > n:
        return None
    tag = data[pos]
    first = data[pos + 1]
    if first < 0x80:
        return tag, 2, first
    count = first & 0x7F
    if count == 0 or count > 4 or pos + 2 + count > n:
        return None
    length = int.from_bytes(data[pos + 2:pos + 2 + count], "big")
    return tag, 2 + count, length


def der_length_check(der: bytes, allow_trailing: bool = False) -> str | None:
    """Cheap sanity check that ``der`` is one certificate-shaped DER SEQUENCE.

    Returns None when it looks right, else a reason code: ``truncated`` (the
    declared length runs past the data) or ``corrupt``.
    """
    h = tlv_header(der)
    if h is None:
        if der[:1] != b"\x30":
            return "corrupt"
        if len(der) < 2 or 2 + (der[1] & 0x7F) > len(der):
            return "truncated"   # the file ends inside the length field
        return "corrupt"         # indefinite (BER) or absurd length
    tag, hl, length = h
    if tag != 0x30:
        return "corrupt"
    total = hl + length
    if total > len(der):
        return "truncated"
    if total < len(der) and not allow_trailing:
        return "corrupt"
    # The first element of a certificate is the tbsCertificate SEQUENCE.
    if length < 2 or der[hl] != 0x30:
        return "corrupt"
    return None
