"""Registry tables for issuance authority (issue 11, migration 0011).

- ``name_grants``: an owner (team) holds a name pattern; ``wins`` when an admin chose it over an
  overlapping grant of another owner; ``source`` says how it came (``grant``, ``adopt:<proposal>``).
- ``name_allows``: which agents may receive names covered by a pattern: a host glob (on the
  recorded host name), an agent id or a collector-side label ``key=value`` (exactly one).
- ``approvals``: one per job that waits for a human (``awaiting_approval``), with the reasons and
  the decision; ``dedupe_key`` keeps auto-renewal to one pending approval per location and threshold.

The agents' ``reported_hostname``/``admin_labels`` and the tokens' ``bound_host`` are in models/agents.py.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import Boolean, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from collector.registry.models.base import BigId, Base, Json


class NameGrant(Base):
    __tablename__ = "name_grants"
    __table_args__ = (UniqueConstraint("owner", "pattern", name="uq_name_grants_owner"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(128))
    pattern: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(8))                  # dns, ip
    wins: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime]


class NameAllow(Base):
    __tablename__ = "name_allows"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    pattern: Mapped[str] = mapped_column(String(300))
    hosts: Mapped[str] = mapped_column(Text)                      # "" unless by host glob
    agent_id: Mapped[str] = mapped_column(String(64))             # "" unless by agent
    label: Mapped[str] = mapped_column(Text)                      # "" unless by label key=value
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime]


class Approval(Base):
    __tablename__ = "approvals"

    approval_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(36), unique=True)
    dedupe_key: Mapped[Optional[str]] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(16), index=True)    # pending, approved, denied, expired
    requested_by: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(Text)                      # team holding the names, "" if none
    agent_id: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64))
    names: Mapped[list[Any]] = mapped_column(Json)
    reasons: Mapped[list[Any]] = mapped_column(Json)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    decided_by: Mapped[str] = mapped_column(Text)
    decided_at: Mapped[Optional[dt.datetime]]
    decision_reason: Mapped[str] = mapped_column(Text)


name_grants = NameGrant.__table__
name_allows = NameAllow.__table__
approvals = Approval.__table__
