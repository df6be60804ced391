"""Registry tables for agents: the enrolled hosts and the single-use tokens that enroll them.

- ``agents``: one row per enrolled host, with the facts it last reported, its identity
  (client certificate serial, and the previous one during the overlap after a renewal) and
  where its reports stand (sequence, report id, generation).
- ``enrollment_tokens``: by SHA-256 of the token, never the token.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import BigInteger, Boolean, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from collector.registry.models.base import Base, Json


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
    # issue 11: ``hostname`` is the name recorded at enrollment (changed only by an admin's rename);
    # what the agent reports is kept here and shown as drift when it differs
    reported_hostname: Mapped[str] = mapped_column(Text, server_default="")
    # labels that decide rights, set on the collector (``labels`` are the agent's display hints)
    admin_labels: Mapped[Optional[dict[str, Any]]] = mapped_column(Json)


class EnrollmentToken(Base):
    """Single-use enrollment tokens, by SHA-256 of the token (never the token)."""

    __tablename__ = "enrollment_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[Optional[dt.datetime]]
    used_by_agent: Mapped[Optional[str]] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text)
    bound_host: Mapped[str] = mapped_column(Text, server_default="")   # "" = any host may use it


agents = Agent.__table__
enrollment_tokens = EnrollmentToken.__table__
