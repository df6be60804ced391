"""What a scan finds: certificates at locations, and problems with items.

These records are the agent's internal currency between the store readers
(agent/stores/), the scanner (agent/scanner.py), the local ``scan`` output and
the sync with the collector (agent/sync.py).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Mapping

# key_match values
NO_KEY = "no_key"
MATCHES = "matches"
MISMATCH = "mismatch"
UNKNOWN = "unknown"

# entry_type values
CERTIFICATE = "certificate"              # a bare certificate (PEM/DER file, or PEM next to a key)
PRIVATE_KEY_ENTRY = "private_key_entry"  # a keystore entry with a key and its chain
TRUSTED_CERTIFICATE = "trusted_certificate"  # a keystore trusted-certificate entry

# ScanProblem.reason codes (stable; shown to users and stored by the collector)
REASONS = {
    "unreadable": "the file cannot be read (permissions or I/O error)",
    "empty": "the file is empty",
    "truncated": "the file ends in the middle of an object",
    "corrupt": "the content is not a valid certificate store",
    "wrong_password": "the store password is wrong",
    "no_password": "the store needs a password and none is configured",
    "too_large": "the file is larger than the configured limit",
    "symlink_loop": "a symbolic link points back into itself",
    "vanished": "the file disappeared during the scan",
    "unsupported": "the file's format or algorithm is not supported",
    "no_certificates": "the file holds no certificates",
}


@dataclass(frozen=True, slots=True)
class LocationKey:
    store_type: str   # pem, der, pkcs12, jks, jceks
    path: str         # absolute path
    alias: str        # keystore alias, "" for PEM and DER files
    chain_index: int  # 0 = the entry's own certificate, 1.. = its chain


@dataclass(frozen=True, slots=True)
class FoundCert:
    """One certificate at one location, as read from disk."""

    key: LocationKey
    der: bytes
    fingerprint: str             # lower-case hex SHA-256 of der
    has_private_key: bool
    key_encrypted: bool
    key_match: str               # NO_KEY, MATCHES, MISMATCH, UNKNOWN
    entry_type: str              # CERTIFICATE, PRIVATE_KEY_ENTRY, TRUSTED_CERTIFICATE
    file_owner: str
    file_group: str
    file_mode: int               # permission bits only (st_mode & 0o7777)
    file_mtime: float            # seconds since the epoch
    labels: Mapping[str, str] = field(default_factory=dict)

    def digest(self) -> str:
        """A short hash of everything the collector stores about this location.

        Two scans that give the same digest for a key need not be sent again.
        """
        h = hashlib.sha256()
        for part in (
            self.fingerprint, str(self.has_private_key), str(self.key_encrypted), self.key_match,
            self.entry_type, self.file_owner, self.file_group, str(self.file_mode), repr(self.file_mtime),
            repr(sorted(self.labels.items())),
        ):
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class ScanProblem:
    """An item the agent could not read. ``message`` must never hold a secret."""

    store_type: str
    path: str
    alias: str
    reason: str      # one of REASONS
    message: str
