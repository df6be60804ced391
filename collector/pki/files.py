"""Key and certificate files: written atomically (a private key is never briefly readable by
others, never half written), read with clear errors.

Every private key is written with :func:`write_private_file`: a temporary file created ``0600``
with ``O_EXCL`` in the target directory, fsynced, then renamed over the target. The collector
CA (collector/pki/ca.py) and the issuers (collector/issuers/) write their keys this way.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import Union

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from collector.errors import PKIError

PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]



def write_private_file(path: Path, data: bytes, *, replace: bool = True) -> None:
    """Write ``data`` to ``path`` atomically, readable by the owner only.

    A temporary file is created in the same directory with ``O_EXCL`` and mode
    ``0600`` (``tempfile.mkstemp``), written, fsynced and renamed over
    ``path``; the directory is fsynced too. Readers see the old content or the
    new, never a partial file, and the data is never group/world-readable.

    With ``replace=False`` the file is published with a hard link instead of a
    rename, which fails with :class:`FileExistsError` if ``path`` already
    exists (two processes creating the same key: exactly one wins).
    """
    _atomic_write(Path(path), data, 0o600, replace=replace)


def write_public_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write a non-secret file (certificate, chain, metadata) atomically."""
    _atomic_write(Path(path), data, mode, replace=True)


def _atomic_write(path: Path, data: bytes, mode: int, *, replace: bool) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            _publish_no_clobber(Path(tmp), path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _publish_no_clobber(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` unless ``path`` exists (then FileExistsError)."""
    try:
        os.link(tmp, path)  # atomic, and fails if path exists
    except FileExistsError:
        raise
    except OSError:
        # a file system without hard links: check, then rename (a tiny race remains)
        if path.exists():
            raise FileExistsError(str(path)) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_private_mode(path: Path, error: type[Exception] = PKIError, *, what: str = "a private key") -> None:
    """Raise ``error`` (:class:`PKIError`) if a key file is accessible to group or others (POSIX).

    ``what`` names the key in the message ("a CA key" for an issuer's)."""
    if os.name != "posix":
        return
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise error(
            f"{path} has mode {mode:04o}: {what} must be readable by its owner only; "
            f"check who could have read it, then run: chmod 600 {path}"
        )


def read_private_key(path: Path, error: type[Exception] = PKIError, *, what: str = "a private key") -> PrivateKey:
    """The unencrypted EC or RSA key in the PEM file ``path``, refused (``error``, :class:`PKIError`
    by default) when unreadable, not such a key, or accessible to others (see :func:`check_private_mode`)."""
    try:
        check_private_mode(path, error, what=what)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror}") from None
    except (ValueError, TypeError):
        raise error(f"{path}: not an unencrypted PEM private key") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise error(f"{path}: unsupported key type (EC or RSA expected)")
    return key


def read_certificates(path: Path, error: type[Exception] = PKIError) -> list[x509.Certificate]:
    """The certificates in the PEM file ``path`` (``error``, :class:`PKIError` by default, when unreadable)."""
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as e:
        raise error(f"{path}: cannot read: {e.strerror}") from None
    except ValueError:
        raise error(f"{path}: not a PEM certificate file") from None
    return certs


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def same_public_key(key: PrivateKey, cert: x509.Certificate) -> bool:
    """Whether ``cert`` is for ``key``."""
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt)


def utc(now: dt.datetime) -> dt.datetime:
    """``now`` as an aware UTC datetime; a naive value is taken to be UTC."""
    if now.tzinfo is None:
        return now.replace(tzinfo=dt.timezone.utc)
    return now.astimezone(dt.timezone.utc)


def random_serial() -> int:
    """A random, positive, non-zero 128-bit serial number."""
    while True:
        serial = secrets.randbits(128)
        if serial:
            return serial


def fingerprint_sha256(der: bytes) -> str:
    """Lower-case hex SHA-256 of DER bytes, without separators."""
    return hashlib.sha256(der).hexdigest()
