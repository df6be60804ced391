"""Plain records that cross the registry's boundary.

The gRPC servicers turn wire messages into these and back; the stores take and
return only these (and the records of ``collector.domain``), never ORM objects,
so that callers hold no sessions. Imports only the pure ``collector.domain``.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from collector.domain.jobstates import is_final
from collector.domain.scope import selects
from collector.domain.serving import ReloadSuggestion


def location_label(store_type: str, path: str, alias: str, chain_index: int) -> str:
    """``store_type:path [alias] #chain_index``: how messages and the audit trail name a location."""
    where = f"{store_type}:{path}"
    if alias:
        where += f" [{alias}]"
    return f"{where} #{chain_index}"


@dataclass(frozen=True, slots=True)
class HostFacts:
    hostname: str
    os: str = ""
    os_version: str = ""
    agent_version: str = ""
    addresses: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LocationIn:
    """One location as an agent reported it."""

    store_type: str
    path: str
    alias: str
    chain_index: int
    der: bytes
    fingerprint: str            # lower-case hex SHA-256 of der; the registry checks it
    has_private_key: bool
    key_encrypted: bool
    key_match: str              # no_key, matches, mismatch, unknown
    entry_type: str
    file_owner: str
    file_group: str
    file_mode: int
    file_mtime: dt.datetime | None
    labels: dict[str, str] = field(default_factory=dict)
    # discovery beyond files (JSON-safe dicts with the proto's field names)
    role: str = "service"                               # service, trust_anchor
    endpoint: dict[str, Any] | None = None              # EndpointInfo
    processes: list[dict[str, Any]] | None = None       # [ProcessLink, ...]
    windows: dict[str, Any] | None = None               # {"entry": WindowsStoreEntry, "iis_bindings": [...]}
    stale_served_fingerprint: str | None = None
    stale_endpoint: str | None = None
    stale_detail: dict[str, Any] | None = None          # {"pid": .., "process_name": ..}
    stale_since: dt.datetime | None = None              # the agent's first sighting


@dataclass(frozen=True, slots=True)
class LocationKeyIn:
    store_type: str
    path: str
    alias: str
    chain_index: int


@dataclass(frozen=True, slots=True)
class ScanErrorIn:
    store_type: str
    path: str
    alias: str
    reason: str
    message: str
    observed_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class ReportHeaderIn:
    report_id: str
    full: bool
    sequence: int
    base_sequence: int
    host: HostFacts
    scanned_at: dt.datetime | None = None
    stores_scanned: int = 0
    files_scanned: int = 0


@dataclass(frozen=True, slots=True)
class ReportResult:
    stored: bool
    sequence: int               # the sequence the registry now holds for the agent
    resync_required: bool
    message: str = ""
    locations_upserted: int = 0
    locations_removed: int = 0
    certificates_new: int = 0


@dataclass(frozen=True, slots=True)
class SanView:
    type: str                   # dns, ip, email, uri
    value: str


@dataclass(frozen=True, slots=True)
class LocationView:
    agent_id: str
    hostname: str
    store_type: str
    path: str
    alias: str
    chain_index: int
    has_private_key: bool
    key_encrypted: bool
    key_match: str
    entry_type: str
    status: str                 # present, removed
    first_seen: dt.datetime
    last_seen: dt.datetime
    removed_at: dt.datetime | None
    file_owner: str
    file_group: str
    file_mode: int
    file_mtime: dt.datetime | None
    labels: dict[str, str]
    # discovery beyond files. role and the stale scalars always; the JSON facts (endpoint,
    # processes, windows, stale_detail) only where asked for (GetCertificate), to keep lists light
    role: str = "service"                               # service, trust_anchor
    stale_served_fingerprint: str | None = None
    stale_endpoint: str | None = None
    stale_since: dt.datetime | None = None
    endpoint: dict[str, Any] | None = None              # EndpointInfo fields
    processes: tuple[dict[str, Any], ...] = ()          # ProcessLink fields
    windows: dict[str, Any] | None = None               # {"entry": WindowsStoreEntry, "iis_bindings": [...]}
    stale_detail: dict[str, Any] | None = None          # {"pid": .., "process_name": ..}
    details: bool = False                               # whether the JSON facts were read


@dataclass(frozen=True, slots=True)
class CertificateView:
    fingerprint: str
    subject: str
    issuer: str
    serial: str                 # hex, lower-case, no separators
    sans: tuple[SanView, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    key_type: str               # RSA, EC, Ed25519, Ed448, DSA
    key_size: int
    key_curve: str
    signature_algorithm: str
    is_ca: bool
    self_signed: bool
    key_usage: tuple[str, ...]
    extended_key_usage: tuple[str, ...]
    issuer_fingerprint: str     # "" when the issuer is not in the registry
    der: bytes                  # b"" unless asked for
    locations: tuple[LocationView, ...]


@dataclass(frozen=True, slots=True)
class CertFilter:
    expiring_before: dt.datetime | None = None   # not_after < this
    hostname: str | None = None
    issuer_contains: str | None = None           # case-insensitive substring of the issuer DN
    include_removed: bool = False                # include certificates seen only at removed locations


class AdminIdentityView(NamedTuple):
    """A known admin identity (Registry.admin_identity)."""

    name: str
    role: str                   # admin, operator, owner, auditor
    team: str | None = None     # role owner: the owner (team) it acts for


@dataclass(frozen=True, slots=True)
class ScanErrorView:
    store_type: str
    path: str
    alias: str
    reason: str
    message: str
    observed_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class AgentView:
    agent_id: str
    hostname: str
    os: str
    os_version: str
    agent_version: str
    addresses: tuple[str, ...]
    labels: dict[str, str]
    first_seen: dt.datetime
    last_seen: dt.datetime
    status: str                 # active, revoked
    identity_serial: str
    identity_not_after: dt.datetime | None
    last_sequence: int
    location_count: int         # present locations
    errors: tuple[ScanErrorView, ...]
    #: what the agent last reported as its name; differs from ``hostname`` (recorded at enrollment,
    #: the one authorization uses) when the host drifted
    reported_hostname: str = ""
    #: labels that decide rights, set on the collector (``labels`` are the agent's display hints)
    admin_labels: dict[str, str] = field(default_factory=dict)

    @property
    def drift(self) -> str:
        """The reported name when it differs from the recorded one, else ""."""
        r = self.reported_hostname
        return r if r and r.lower() != (self.hostname or "").lower() else ""


# -- renewal jobs ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LocationSelector:
    """Which locations of a certificate to renew. Empty fields (and a None chain index)
    match anything; ``hostname`` compares case-insensitively."""

    agent_id: str = ""
    hostname: str = ""
    store_type: str = ""
    path: str = ""
    alias: str = ""
    chain_index: int | None = None

    @classmethod
    def of(cls, flt: Any) -> LocationSelector | None:
        """``flt`` as a selector: None and selectors as they are; anything shaped like a location
        key or filter (e.g. LocationKeyIn) field by field, a missing or empty field matching anything."""
        if flt is None or isinstance(flt, LocationSelector):
            return flt
        return cls(
            agent_id=getattr(flt, "agent_id", "") or "", hostname=getattr(flt, "hostname", "") or "",
            store_type=getattr(flt, "store_type", "") or "", path=getattr(flt, "path", "") or "",
            alias=getattr(flt, "alias", "") or "", chain_index=getattr(flt, "chain_index", None),
        )

    def matches(self, loc: Any) -> bool:
        """Whether the location (a LocationView, a row: anything with the location's fields) is selected
        (the pure rule, collector/domain/scope.py selects)."""
        return selects(self, loc)

    def describe(self) -> str:
        """The selector in words, for messages ("agent a1 file:/etc/x.pem #0", "any location")."""
        parts = []
        if self.agent_id:
            parts.append(f"agent {self.agent_id}")
        if self.hostname:
            parts.append(f"host {self.hostname}")
        where = ":".join(p for p in (self.store_type, self.path) if p)
        if where:
            parts.append(where)
        if self.alias:
            parts.append(f"[{self.alias}]")
        if self.chain_index is not None:
            parts.append(f"#{self.chain_index}")
        return " ".join(parts) or "any location"


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One change of a job's state, recorded in the transaction that made it."""

    at: dt.datetime
    from_state: str             # "" for the job's creation
    to_state: str
    reason: str
    actor: str


@dataclass(frozen=True, slots=True)
class JobView:
    job_id: str
    kind: str                   # renew
    agent_id: str
    hostname: str
    store_type: str
    path: str
    alias: str
    chain_index: int
    old_fingerprint: str
    template: str
    requested_by: str
    reason: str
    state: str                  # see collector.domain.jobstates.STATES
    attempts: int               # transient failures so far (each went back to requested)
    timeout: dt.timedelta       # the deadline's distance from the start (or from an operator's retry)
    deadline: dt.datetime
    next_attempt_at: dt.datetime
    command_sent_at: dt.datetime | None
    csr_der: bytes              # b"" until the agent sent its CSR
    new_fingerprint: str        # "" until issued
    certificate_der: bytes      # b"" until issued
    chain_ders: tuple[bytes, ...]
    served_fingerprint: str     # what the TLS probe saw after install; "" until then
    result_detail: object       # JSON from the agent (install steps), None until reported
    idempotency_key: str        # "" when the request carried none
    created_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None
    events: tuple[JobEvent, ...] = ()    # filled by JobStore.get only

    @property
    def final(self) -> bool:
        return is_final(self.state)

    @property
    def suggested_reload(self) -> ReloadSuggestion | None:
        """The reload action the agent found for this location's service when the job was made."""
        detail = self.result_detail if isinstance(self.result_detail, dict) else {}
        return ReloadSuggestion.from_json(detail.get("suggested_reload"))

    @property
    def location_label(self) -> str:
        return location_label(self.store_type, self.path, self.alias, self.chain_index)


# -- network scans (netscans.py), stale services (serving.py) ---------------------------------


@dataclass(frozen=True, slots=True)
class NetworkScanView:
    scan_id: str
    agent_id: str
    hostname: str
    targets: tuple[str, ...]
    ports: tuple[int, ...]
    rate_per_second: float
    timeout_seconds: float
    concurrency: int
    starttls: dict[int, str]
    sni_names: tuple[str, ...]
    state: str                  # queued, sent, running, done, failed
    targets_total: int
    probed: int
    tls_found: int
    errors: int
    reason: str
    requested_by: str
    created_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None
    endpoints_in_registry: int = 0
    endpoints: tuple[ScanEndpointView, ...] = ()    # get_scan only: the TLS endpoints the scan found


@dataclass(frozen=True, slots=True)
class ScanEndpointView:
    """One TLS endpoint a network scan found, as the registry holds it (the leaf it serves)."""

    endpoint: str               # host:port
    sni: str
    starttls: str
    protocol: str
    fingerprint: str
    subject: str
    not_after: dt.datetime
    chain_valid: bool
    source: str                 # what recorded it first: local_listener, configured, network_scan


@dataclass(frozen=True, slots=True)
class StaleView:
    """A present location whose process serves another certificate than the file holds."""

    agent_id: str
    hostname: str
    store_type: str
    path: str
    alias: str
    chain_index: int
    labels: dict[str, str]
    file_fingerprint: str
    served_fingerprint: str
    endpoint: str
    process_name: str
    pid: int
    since: dt.datetime | None
    processes: tuple[dict[str, Any], ...]
    # the file's certificate, for ownership (collector.domain.ownership.resolve)
    subject: str = ""
    issuer: str = ""
    sans: tuple[SanView, ...] = ()
    owner: str = ""             # filled by the caller that resolves ownership
    service: str = ""
    status: str = "present"
    location_id: int = 0        # the registry's row: with served_fingerprint and since, one stale episode

    @property
    def fingerprint(self) -> str:
        return self.file_fingerprint

    @property
    def suggested_reload(self) -> str:
        return next((p.get("suggested_reload") or "" for p in self.processes if p.get("suggested_reload")), "")
