"""The audit key: the secret that keys the audit chain's hashes, kept outside the database.

A file of 64 hex characters (32 random bytes), mode 0600, owned by the collector's user:
``[audit] key_file`` (default ``<data_dir>/audit.key``), made on first start. A file readable by
group or others is refused, as a private key would be. Whoever holds the database but not this
file cannot rewrite the audit trail unnoticed (collector/domain/auditchain.py).
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from collector.domain.auditchain import parse_audit_key
from collector.errors import PKIError
from collector.pki.files import check_private_mode

KEY_BYTES = 32


def load_or_create_audit_key(path: Path) -> bytes:
    """The key in ``path``, made (0600, exclusively) when there is no file yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:   # another collector made it meanwhile
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(KEY_BYTES) + "\n")
    return read_audit_key(path)


def read_audit_key(path: Path) -> bytes:
    try:
        check_private_mode(path, what="the audit key")
        text = path.read_text(encoding="ascii").strip()
    except OSError as e:
        raise PKIError(f"cannot read the audit key {path}: {e.strerror}") from None
    except UnicodeError:
        raise PKIError(f"{path}: the audit key must be hex text") from None
    try:
        return parse_audit_key(text)
    except ValueError as e:
        raise PKIError(f"{path}: not an audit key (hex text of at least 16 bytes): {e}") from None
