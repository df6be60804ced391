"""What the collector tells an agent on its command stream, as values.

The services decide which commands an agent gets (collector/services/agent_session.py gathers
them: renewal jobs, ACME challenges, network scans); the api turns each into the wire's
``CollectorCommand`` (collector/api/convert.py ``command_out``). ``command_id`` is what the agent
deduplicates on: sending a command again is harmless.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Union


@dataclass(frozen=True, slots=True)
class LocationKey:
    """Which entry of which store on the agent's host a command is about."""

    store_type: str
    path: str
    alias: str = ""
    chain_index: int = 0


@dataclass(frozen=True, slots=True)
class PrepareRenewal:
    """Make a new key for the job's location and send back a CSR for these names."""

    command_id: str
    job_id: str
    location: LocationKey
    key_spec: str                       # rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384
    common_name: str
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InstallCertificate:
    """Install the issued certificate (with the key made for the job), reload, verify it is served."""

    command_id: str
    job_id: str
    location: LocationKey
    certificate_der: bytes
    chain_der: tuple[bytes, ...] = ()   # issuer first
    expected_old_fingerprint: str = ""  # what the registry believes is there now
    trust_anchor_der: bytes = b""       # the issuer's root, when it knows it (collector.issuers.base.SupportsRoot)


@dataclass(frozen=True, slots=True)
class PlaceChallenge:
    """Serve an ACME http-01 challenge for the job's service until told to remove it."""

    command_id: str
    job_id: str
    location: LocationKey
    token: str
    key_authorization: str
    domain: str


@dataclass(frozen=True, slots=True)
class RemoveChallenge:
    command_id: str
    job_id: str
    location: LocationKey
    token: str


@dataclass(frozen=True, slots=True)
class NetworkScan:
    """Probe address x port pairs for TLS endpoints (collector/domain/netscan.py plans it)."""

    command_id: str
    scan_id: str
    targets: tuple[str, ...]
    ports: tuple[int, ...]
    rate_per_second: float
    timeout_seconds: float
    concurrency: int
    sni_names: tuple[str, ...] = ()
    starttls: Mapping[int, str] = field(default_factory=dict)
    max_addresses: int = 0              # the agent reads it as its limit of address x port pairs


Command = Union[PrepareRenewal, InstallCertificate, PlaceChallenge, RemoveChallenge, NetworkScan]

__all__ = ["Command", "InstallCertificate", "LocationKey", "NetworkScan", "PlaceChallenge", "PrepareRenewal",
           "RemoveChallenge"]
