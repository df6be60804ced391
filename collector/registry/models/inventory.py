"""Registry tables for what agents report: ``certificates`` (one row per certificate, by the
SHA-256 of its DER), ``locations`` (where a certificate sits: one entry of one store on one
host; never deleted, marked removed) and ``scan_errors`` (an agent's current scan problems).
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from collector.registry.models.base import BigId, Base, Blob, Json


class Certificate(Base):
    """One row per certificate (SHA-256 fingerprint of its DER)."""

    __tablename__ = "certificates"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(Text)
    issuer: Mapped[str] = mapped_column(Text)
    subject_hash: Mapped[str] = mapped_column(String(32))      # collector.domain.certinfo.name_hash(subject)
    issuer_hash: Mapped[str] = mapped_column(String(32))       # ... of issuer; links issuers
    serial: Mapped[str] = mapped_column(Text)
    sans: Mapped[list[Any]] = mapped_column(Json)               # [[type, value], ...]
    not_before: Mapped[dt.datetime]
    not_after: Mapped[dt.datetime]
    key_type: Mapped[str] = mapped_column(Text)
    key_size: Mapped[int] = mapped_column(Integer)
    key_curve: Mapped[str] = mapped_column(Text)
    signature_algorithm: Mapped[str] = mapped_column(Text)
    is_ca: Mapped[bool] = mapped_column(Boolean)
    self_signed: Mapped[bool] = mapped_column(Boolean)
    key_usage: Mapped[list[Any]] = mapped_column(Json)
    extended_key_usage: Mapped[list[Any]] = mapped_column(Json)
    subject_key_id: Mapped[str] = mapped_column(Text)   # hex, "" when absent
    authority_key_id: Mapped[str] = mapped_column(Text)  # hex, "" when absent
    # The issuing certificate when the registry holds it; a self-signed
    # certificate points at itself; NULL when the issuer is unknown.
    issuer_fingerprint: Mapped[Optional[str]] = mapped_column(
        String(64), ForeignKey("certificates.fingerprint", ondelete="SET NULL"), index=True
    )
    der: Mapped[bytes] = mapped_column(Blob)
    first_seen: Mapped[dt.datetime]

    __table_args__ = (
        Index("ix_certificates_not_after_fingerprint", "not_after", "fingerprint"),
        Index("ix_certificates_subject_hash", "subject_hash"),
        Index("ix_certificates_issuer_hash", "issuer_hash"),
    )


class Location(Base):
    """Where a certificate sits: one entry of one store on one host. Never deleted."""

    __tablename__ = "locations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(String(64), ForeignKey("agents.agent_id", ondelete="CASCADE"))
    store_type: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    alias: Mapped[str] = mapped_column(Text)
    chain_index: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(64), ForeignKey("certificates.fingerprint"))
    has_private_key: Mapped[bool] = mapped_column(Boolean)
    key_encrypted: Mapped[bool] = mapped_column(Boolean)
    key_match: Mapped[str] = mapped_column(Text)
    entry_type: Mapped[str] = mapped_column(Text)
    file_owner: Mapped[str] = mapped_column(Text)
    file_group: Mapped[str] = mapped_column(Text)
    file_mode: Mapped[int] = mapped_column(Integer)
    file_mtime: Mapped[Optional[dt.datetime]]
    labels: Mapped[dict[str, Any]] = mapped_column(Json)
    first_seen: Mapped[dt.datetime]           # first seen holding its current certificate
    last_seen: Mapped[dt.datetime]
    status: Mapped[str] = mapped_column(String(16))   # present, removed
    removed_at: Mapped[Optional[dt.datetime]]
    seen_generation: Mapped[int] = mapped_column(BigInteger)
    # discovery beyond files (0009)
    role: Mapped[str] = mapped_column(String(16), server_default="service")   # service, trust_anchor
    endpoint: Mapped[Optional[dict[str, Any]]] = mapped_column(Json)           # store_type endpoint: EndpointInfo fields
    processes: Mapped[Optional[list[Any]]] = mapped_column(Json)               # [ProcessLink fields, ...]
    windows: Mapped[Optional[dict[str, Any]]] = mapped_column(Json)            # {"entry": {...}, "iis_bindings": [...]}
    stale_served_fingerprint: Mapped[Optional[str]] = mapped_column(String(64))
    stale_endpoint: Mapped[Optional[str]] = mapped_column(Text)
    stale_detail: Mapped[Optional[dict[str, Any]]] = mapped_column(Json)       # {"pid": .., "process_name": ..}
    stale_since: Mapped[Optional[dt.datetime]]                                 # first seen stale (collector or agent time)

    __table_args__ = (
        UniqueConstraint("agent_id", "store_type", "path", "alias", "chain_index"),
        Index("ix_locations_agent_id_status", "agent_id", "status"),
        Index("ix_locations_stale_since", "stale_since"),
        Index("ix_locations_fingerprint_status", "fingerprint", "status"),
    )


class ScanError(Base):
    """The agent's current scan problems, as of its last stored report."""

    __tablename__ = "scan_errors"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("agents.agent_id", ondelete="CASCADE"), index=True
    )
    store_type: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    alias: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    observed_at: Mapped[Optional[dt.datetime]]


certificates = Certificate.__table__
locations = Location.__table__
scan_errors = ScanError.__table__
