"""What a scan finds: certificates at locations, and problems with items.

These records are the agent's internal currency between the store readers
(agent/stores/), the scanner (agent/scan/scanner.py), the local ``scan`` output and
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
    # TLS endpoints (agent/discovery): a configured target that gave no certificate
    "refused": "connection refused: nothing listens there",
    "timeout": "no complete TLS answer within the timeout",
    "not_tls": "something answers, but not TLS (or STARTTLS is not offered)",
    "handshake_failed": "a TLS server refused the handshake or sent no certificate",
    "unreachable": "no route to the host, or its name does not resolve",
}


@dataclass(frozen=True, slots=True)
class LocationKey:
    store_type: str   # pem, der, pkcs12, jks, jceks
    path: str         # absolute path
    alias: str        # keystore alias, "" for PEM and DER files
    chain_index: int  # 0 = the entry's own certificate, 1.. = its chain


# Location roles
SERVICE = "service"            # a certificate a service uses (the default)
TRUST_ANCHOR = "trust_anchor"  # an entry of a trust store (/etc/ssl/certs, a JVM's cacerts): inventoried, never renewed


@dataclass(frozen=True, slots=True)
class EndpointFacts:
    """One TLS handshake with one endpoint (location store_type ``endpoint``)."""

    host: str
    port: int
    sni: str = ""
    protocol: str = ""
    cipher: str = ""
    starttls: str = ""                      # "", smtp, imap, pop3
    chain_valid: bool = False
    validation_error: str = ""
    chain_fingerprints: tuple[str, ...] = ()
    source: str = "local_listener"          # local_listener, configured, network_scan
    scan_id: str = ""
    handshake_seconds: float = 0.0          # not part of the digest: it differs every time
    scan_ids: tuple[str, ...] = ()          # every kept network scan that found it (whatever the source)

    def digest_part(self) -> str:
        return repr((self.host, self.port, self.sni, self.protocol, self.cipher, self.starttls, self.chain_valid,
                     self.validation_error, self.chain_fingerprints, self.source, self.scan_id, self.scan_ids))


@dataclass(frozen=True, slots=True)
class ProcessLink:
    """A process that uses a location (see proto ProcessLink for ``evidence`` values)."""

    pid: int
    name: str
    executable: str = ""
    user: str = ""
    service: str = ""
    listen: tuple[str, ...] = ()
    evidence: str = ""
    config_path: str = ""
    suggested_reload: str = ""


@dataclass(frozen=True, slots=True)
class StaleService:
    """The file holds one certificate, the port its process listens on serves another."""

    endpoint: str                # host:port
    served_fingerprint: str
    pid: int = 0
    process_name: str = ""
    since: float = 0.0           # epoch seconds the agent first saw this mismatch


@dataclass(frozen=True, slots=True)
class WindowsEntry:
    """A certificate in a Windows certificate store."""

    store_location: str          # LocalMachine
    store_name: str              # My, WebHosting
    thumbprint: str              # SHA-1, upper-case hex
    friendly_name: str = ""
    key_exportable: bool = False
    key_provider: str = ""
    key_container: str = ""


@dataclass(frozen=True, slots=True)
class IisBinding:
    site: str
    protocol: str
    ip: str
    port: int
    host_name: str = ""
    sni: bool = False
    certificate_hash: str = ""   # thumbprint, upper-case hex
    store_name: str = ""


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
    role: str = SERVICE
    endpoint: EndpointFacts | None = None
    processes: tuple[ProcessLink, ...] = ()
    stale: StaleService | None = None
    windows: WindowsEntry | None = None
    iis_bindings: tuple[IisBinding, ...] = ()

    def digest(self) -> str:
        """A short hash of everything the collector stores about this location.

        Two scans that give the same digest for a key need not be sent again.
        """
        h = hashlib.sha256()
        for part in (
            self.fingerprint, str(self.has_private_key), str(self.key_encrypted), self.key_match,
            self.entry_type, self.file_owner, self.file_group, str(self.file_mode), repr(self.file_mtime),
            repr(sorted(self.labels.items())), self.role,
            self.endpoint.digest_part() if self.endpoint else "", repr(self.processes), repr(self.stale),
            repr(self.windows), repr(self.iis_bindings),
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
