"""The key-encryption key (KEK): how CA private keys are kept in the shared database.

Every collector of one registry reads the same KEK -- 32 random bytes, base64 -- from a file
(``[keys] kek_file``, which must not be readable by group or others: mode 0600 or 0400, else
the collector refuses to start) or from an environment variable (``[keys] kek_env``, e.g.
``CERTFLEET_KEK``). A private key goes to the database only as
``cfkw1 | kek id (8 bytes) | nonce (12) | AES-256-GCM(PKCS#8 DER)``, the issuer name and the
key's role bound in as associated data (a wrapped key cannot be moved to another issuer's row).

Rotation: put the new KEK in ``kek_file`` and the old one in ``previous_kek_files``; at start
each collector unwraps with whichever KEK the row names and rewraps with the current one
(collector/issuers/ca_registry.py); once ``certfleet-collector ca status`` shows every key under
the new KEK id, drop the old file. ``generate_kek_file`` writes a new KEK (``certfleet-collector
ca new-kek``).

Without ``[keys]`` a collector makes ``<data_dir>/kek`` on first start (0600): a single collector
then needs nothing else; a second collector on the same database needs a copy of that file (the
only file copied between collectors; see packaging/DEPLOYMENT.md).
"""
from __future__ import annotations

import base64
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from collector.errors import IssuerError

MAGIC = b"cfkw1"
#: the settings of ``[keys]`` (``pkcs11`` is a table: collector/issuers/pkcs11_signer.py)
KEYS = frozenset({"kek_file", "kek_env", "previous_kek_files", "pkcs11"})
KEK_BYTES = 32


def kek_id_of(kek: bytes) -> str:
    return hashlib.sha256(b"certfleet-kek" + kek).hexdigest()[:16]


def _parse(raw: bytes, where: str) -> bytes:
    try:
        kek = base64.b64decode(raw.strip(), validate=True)
    except ValueError:
        raise IssuerError(f"{where}: the key-encryption key must be {KEK_BYTES} bytes in base64") from None
    if len(kek) != KEK_BYTES:
        raise IssuerError(f"{where}: the key-encryption key must be {KEK_BYTES} bytes in base64, not {len(kek)}")
    return kek


def read_kek_file(path: Path) -> bytes:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise IssuerError(f"{path}: the key-encryption key file does not exist") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IssuerError(f"{path}: the key-encryption key file is mode {stat.S_IMODE(st.st_mode):04o}; "
                          "make it 0600 (readable by the collector's user only)")
    return _parse(path.read_bytes(), str(path))


def generate_kek_file(path: Path) -> str:
    """Write a new KEK to ``path`` (0600, never replacing a file); its id."""
    kek = secrets.token_bytes(KEK_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(base64.b64encode(kek) + b"\n")
    return kek_id_of(kek)


@dataclass(frozen=True)
class KeyWrapper:
    """The current KEK and the previous ones (still accepted for unwrapping)."""

    current: bytes
    previous: tuple[bytes, ...] = ()
    source: str = ""                          # where the current KEK came from (for status; not the key)
    _by_id: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for k in (self.current, *self.previous):
            self._by_id[kek_id_of(k)] = k

    @property
    def kek_id(self) -> str:
        return kek_id_of(self.current)

    def __repr__(self) -> str:   # never the key
        return f"KeyWrapper(kek_id={self.kek_id!r}, source={self.source!r}, previous={len(self.previous)})"

    def wrap(self, key_der: bytes, aad: str) -> bytes:
        nonce = secrets.token_bytes(12)
        ct = AESGCM(self.current).encrypt(nonce, key_der, aad.encode())
        return MAGIC + bytes.fromhex(self.kek_id) + nonce + ct

    def unwrap(self, blob: bytes, aad: str) -> bytes:
        blob = bytes(blob)
        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 8 + 12 + 16:
            raise IssuerError(f"{aad}: the stored key is not a wrapped key")
        kid = blob[len(MAGIC):len(MAGIC) + 8].hex()
        kek = self._by_id.get(kid)
        if kek is None:
            raise IssuerError(f"{aad}: the key is wrapped with KEK {kid}, which this collector does not have "
                              f"(it has {', '.join(self._by_id)}): give it the same [keys] kek_file as the others")
        nonce, ct = blob[len(MAGIC) + 8:len(MAGIC) + 20], blob[len(MAGIC) + 20:]
        try:
            return AESGCM(kek).decrypt(nonce, ct, aad.encode())
        except Exception:  # noqa: BLE001 - InvalidTag: wrong key or tampered row
            raise IssuerError(f"{aad}: the wrapped key does not decrypt with KEK {kid} (altered row?)") from None

    @staticmethod
    def wrapped_kek_id(blob: bytes) -> str:
        return bytes(blob)[len(MAGIC):len(MAGIC) + 8].hex()

    def wrap_private_key(self, key: object, aad: str) -> bytes:
        der = key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        return self.wrap(der, aad)

    def unwrap_private_key(self, blob: bytes, aad: str) -> object:
        return serialization.load_der_private_key(self.unwrap(blob, aad), password=None)


def load_key_wrapper(keys: Mapping[str, object] | None, data_dir: Path, base_dir: Path | None = None,
                     environ: Mapping[str, str] | None = None) -> KeyWrapper:
    """The KEK of the ``[keys]`` table (``kek_file``, ``kek_env``, ``previous_kek_files``); without
    either source, ``<data_dir>/kek`` (made on first use)."""
    keys = dict(keys or {})
    unknown = set(keys) - KEYS
    if unknown:
        raise IssuerError(f"[keys]: unknown setting(s) {', '.join(sorted(unknown))}")
    env = os.environ if environ is None else environ
    base = Path(base_dir) if base_dir is not None else Path(data_dir)

    def path_of(v: object) -> Path:
        p = Path(str(v))
        return p if p.is_absolute() else base / p

    previous = tuple(read_kek_file(path_of(p)) for p in keys.get("previous_kek_files") or [])  # type: ignore[union-attr]
    if keys.get("kek_env"):
        name = str(keys["kek_env"])
        if name not in env:
            raise IssuerError(f"[keys] kek_env: the environment variable {name} is not set")
        return KeyWrapper(_parse(env[name].encode(), f"${name}"), previous, source=f"env:{name}")
    if keys.get("kek_file"):
        p = path_of(keys["kek_file"])
        return KeyWrapper(read_kek_file(p), previous, source=f"file:{p}")
    p = Path(data_dir) / "kek"
    if not p.exists():
        Path(data_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            generate_kek_file(p)
        except FileExistsError:
            pass
    return KeyWrapper(read_kek_file(p), previous, source=f"file:{p}")
