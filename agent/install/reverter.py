"""Checkpoint and rollback of the files an install changes (certbot's reverter, for store files).

:func:`save_backup` copies each file into ``<data_dir>/backups/<job id>/`` (directory 0700,
files 0600: they hold private keys) with ``backup.json`` (paths, owner, group, mode,
SHA-256, the old and new fingerprints); :func:`restore` puts the files back as they were,
keeping owner, group and mode; :func:`load_backup` finds this job's backup from an earlier
attempt (a repeated command, a retry after a crash) when it matches the files involved.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from agent.inventory import LocationKey
from agent.stores.files import atomic_replace

__all__ = ["FileState", "BACKUP_META", "save_backup", "restore", "load_backup"]

BACKUP_META = "backup.json"


@dataclass
class FileState:
    """One file an install changes, as it was before."""

    path: str                 # as named (may be a symbolic link)
    real: str                 # what is written
    data: bytes = field(repr=False)
    uid: int = 0
    gid: int = 0
    mode: int = 0o600


def _private() -> tuple[int, int, int] | None:
    return (os.getuid(), os.getgid(), 0o600) if hasattr(os, "getuid") else None


def save_backup(directory: Path, job_id: str, location: LocationKey, old_fp: str, new_fp: str,
                files: Sequence[FileState]) -> None:
    """Copy ``files`` and their facts into ``directory``. Raises OSError or StoreWriteError."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    meta: dict[str, Any] = {
        "job_id": job_id,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "location": {"store_type": location.store_type, "path": location.path,
                     "alias": location.alias, "chain_index": location.chain_index},
        "old_fingerprint": old_fp, "new_fingerprint": new_fp, "files": [],
    }
    for i, f in enumerate(files):
        name = f"{i}-{os.path.basename(f.real)}"
        atomic_replace(str(directory / name), f.data, _private())
        meta["files"].append({
            "path": f.path, "real_path": f.real, "backup": name, "size": len(f.data),
            "sha256": hashlib.sha256(f.data).hexdigest(), "uid": f.uid, "gid": f.gid,
            "mode": f"{f.mode:04o}",
        })
    atomic_replace(str(directory / BACKUP_META), (json.dumps(meta, indent=2) + "\n").encode(), _private())


def restore(files: Sequence[FileState]) -> None:
    """Put every file back as it was (owner, group, mode). Raises StoreWriteError."""
    for f in files:
        atomic_replace(f.real, f.data, (f.uid, f.gid, f.mode))


def load_backup(directory: Path, files: Sequence[FileState], old_fp: str, new_fp: str) -> list[FileState] | None:
    """The files as the backup in ``directory`` holds them, when it is whole and is a backup of this very change."""
    try:
        meta = json.loads((directory / BACKUP_META).read_text("utf-8"))
        by_real = {m["real_path"]: m for m in meta["files"]}
        restored = []
        for f in files:
            m = by_real[f.real]
            data = (directory / m["backup"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != m["sha256"]:
                return None
            restored.append(FileState(f.path, f.real, data, int(m["uid"]), int(m["gid"]), int(m["mode"], 8)))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if meta.get("old_fingerprint") != old_fp or meta.get("new_fingerprint") != new_fp:
        return None
    return restored
