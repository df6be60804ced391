"""Store files on disk: replace one atomically keeping its owner, group and mode; find a certificate's key file.

Used by the install pipeline (agent/install/files.py), never by the writers: they are
pure functions of bytes (agent/stores/base.py).
"""
from __future__ import annotations

import errno
import os
import stat
from typing import Iterable

from cryptography import x509

from agent.config.values import Secret
from agent.errors import StoreWriteError
from agent.fsutil import OwnerError, TempFileError, atomic_write
from agent.keys import load_pem_private_key, same_public_key
from agent.stores.pem import pem_blocks

__all__ = ["atomic_replace", "find_key_file"]


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
