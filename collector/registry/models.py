"""The registry's tables (SQLAlchemy 2 declarative, typed).

These classes describe the schema; the migrations in ``migrations/versions``
create it, and a test checks the two agree. The repository reads and writes
with Core statements on these tables (bulk, executemany), not object by object.

Times are stored as UTC: ``UTCDateTime`` accepts only aware datetimes and
always returns aware UTC ones, on SQLite (which has no time zones) and
PostgreSQL alike.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import BYTEA, JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

UTC = dt.timezone.utc


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in and out; naive datetimes are refused on the way in."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Optional[dt.datetime], dialect: Dialect) -> Optional[dt.datetime]:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} given to the registry; use an aware UTC datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)   # stored as UTC text; sorts correctly
        return value

    def process_result_value(self, value: Optional[dt.datetime], dialect: Dialect) -> Optional[dt.datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSON: JSONB on PostgreSQL, JSON (text) on SQLite.
Json = JSON().with_variant(JSONB(), "postgresql")
Blob = LargeBinary().with_variant(BYTEA(), "postgresql")
# A 64-bit integer key that is still SQLite's rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: Json, list[Any]: Json}


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


class Agent(Base):
    __tablename__ = "agents"

    agent_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hostname: Mapped[str] = mapped_column(Text, index=True)
    os: Mapped[str] = mapped_column(Text)
    os_version: Mapped[str] = mapped_column(Text)
    agent_version: Mapped[str] = mapped_column(Text)
    addresses: Mapped[list[Any]] = mapped_column(Json)
    labels: Mapped[dict[str, Any]] = mapped_column(Json)
    first_seen: Mapped[dt.datetime]
    last_seen: Mapped[dt.datetime]
    status: Mapped[str] = mapped_column(String(16))              # active, revoked
    revoked_at: Mapped[Optional[dt.datetime]]
    revoke_reason: Mapped[str] = mapped_column(Text)
    identity_serial: Mapped[str] = mapped_column(Text)
    identity_not_after: Mapped[Optional[dt.datetime]]
    # The identity replaced by the last renewal stays valid until this time,
    # so that connections made with it just before the renewal keep working.
    previous_identity_serial: Mapped[str] = mapped_column(Text)
    previous_identity_valid_until: Mapped[Optional[dt.datetime]]
    last_sequence: Mapped[int] = mapped_column(BigInteger)
    last_report_id: Mapped[str] = mapped_column(Text)
    last_report_at: Mapped[Optional[dt.datetime]]
    # Incremented by every stored report; locations carry the generation of
    # the last report that listed them, so a full report can mark the rest removed.
    report_generation: Mapped[int] = mapped_column(BigInteger)
    resync_requested: Mapped[bool] = mapped_column(Boolean)


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


class EnrollmentToken(Base):
    """Single-use enrollment tokens, by SHA-256 of the token (never the token)."""

    __tablename__ = "enrollment_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[Optional[dt.datetime]]
    used_by_agent: Mapped[Optional[str]] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text)


class AdminIdentity(Base):
    """Client certificates issued to administrators, by serial."""

    __tablename__ = "admin_identities"

    serial: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    not_after: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime]
    revoked: Mapped[bool] = mapped_column(Boolean)
    revoked_at: Mapped[Optional[dt.datetime]]
    team: Mapped[Optional[str]] = mapped_column(Text)     # role owner: the owner (team) it acts for



class Job(Base):
    """A renewal job: one certificate at one location, from request to verified (or not).

    ``active_key`` (a hash of the location) is set while the job is not final and
    cleared when it ends: the unique constraint on it allows one running job per
    location, also across collectors.
    """

    __tablename__ = "jobs"

    job_id: Mapped[str] = mapped_column(String(36), primary_key=True)      # uuid4
    kind: Mapped[str] = mapped_column(String(16))                          # renew
    agent_id: Mapped[str] = mapped_column(String(64), ForeignKey("agents.agent_id"))
    store_type: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    alias: Mapped[str] = mapped_column(Text)
    chain_index: Mapped[int] = mapped_column(Integer)
    old_fingerprint: Mapped[str] = mapped_column(String(64))
    template: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    timeout_seconds: Mapped[int] = mapped_column(Integer)
    deadline: Mapped[dt.datetime]
    next_attempt_at: Mapped[dt.datetime]
    command_sent_at: Mapped[Optional[dt.datetime]]
    csr_der: Mapped[Optional[bytes]] = mapped_column(Blob)
    new_fingerprint: Mapped[Optional[str]] = mapped_column(String(64))
    certificate_der: Mapped[Optional[bytes]] = mapped_column(Blob)
    chain: Mapped[Optional[list[Any]]] = mapped_column(Json)              # [base64 DER, ...], issuer first
    served_fingerprint: Mapped[Optional[str]] = mapped_column(String(64))
    result_detail: Mapped[Optional[Any]] = mapped_column(Json)             # the agent's install steps
    idempotency_key: Mapped[Optional[str]] = mapped_column(String(64))     # sha256(request key, location)
    request_key: Mapped[Optional[str]] = mapped_column(Text)               # the caller's key, for repeats
    active_key: Mapped[Optional[str]] = mapped_column(String(64))          # sha256(location) while not final
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    finished_at: Mapped[Optional[dt.datetime]]

    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        UniqueConstraint("active_key"),
        Index("ix_jobs_agent_id_state", "agent_id", "state"),
        Index("ix_jobs_state_deadline", "state", "deadline"),
        Index("ix_jobs_created_at_job_id", "created_at", "job_id"),
        Index("ix_jobs_old_fingerprint", "old_fingerprint"),
        Index("ix_jobs_request_key", "request_key"),
    )


class JobEventRow(Base):
    """Every change of a job's state, written in the transaction that makes it."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(36), ForeignKey("jobs.job_id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime]
    from_state: Mapped[str] = mapped_column(String(16))     # "" for the creation
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(Text)


certificates = Certificate.__table__
agents = Agent.__table__
locations = Location.__table__
scan_errors = ScanError.__table__
enrollment_tokens = EnrollmentToken.__table__
admin_identities = AdminIdentity.__table__
jobs = Job.__table__
job_events = JobEventRow.__table__

# Tables of further areas live in their own modules on the same metadata; importing
# them here keeps Base.metadata complete for migrations checks and create_all.
from collector.registry import models_audit, models_discovery, models_leases, models_notify, models_owners, models_policy  # noqa: E402,F401
