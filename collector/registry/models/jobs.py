"""Registry tables for renewal jobs: ``jobs`` (one certificate at one location, from request
to verified or not) and ``job_events`` (every change of a job's state)."""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from collector.registry.models.base import BigId, Base, Blob, Json


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
    state: Mapped[str] = mapped_column(String(24))   # 24 since 0011 (awaiting_approval)
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
    from_state: Mapped[str] = mapped_column(String(24))     # "" for the creation
    to_state: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(Text)


jobs = Job.__table__
job_events = JobEventRow.__table__
