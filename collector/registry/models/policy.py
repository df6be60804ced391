"""Registry tables for policy (on the shared ``Base``: models/base.py).

- ``policy_documents``: every version of the policy document (TOML text); the highest
  version is the current one. ``source`` is ``cli`` or ``file:<sha256>`` (a document
  loaded from the collector's ``[policy] file``), so that a restart re-imports the file
  only when the file changed.
- ``policy_violations``: one row per (certificate, location, rule) while the cause lasts;
  ``active_key`` (sha256 of the three) is unique while active and NULL once cleared, so
  a violation that comes back later is a new row with a new ``first_seen``.
  ``exception_id`` names the exception that waived it at the last evaluation.
- ``policy_exceptions``: a rule waived for a certificate, an owner or a DNS pattern, until
  ``expires_at``. ``expiry_reported_at`` is set when an evaluation first found it expired.
"""
from __future__ import annotations

import datetime as dt
from typing import Optional

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from collector.registry.models.base import BigId, Base


class PolicyDocument(Base):
    __tablename__ = "policy_documents"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime]


class PolicyViolation(Base):
    __tablename__ = "policy_violations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    active_key: Mapped[Optional[str]] = mapped_column(String(64), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    location_key: Mapped[str] = mapped_column(String(64))
    agent_id: Mapped[str] = mapped_column(String(64))
    store_type: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    alias: Mapped[str] = mapped_column(Text)
    chain_index: Mapped[int] = mapped_column(Integer)
    hostname: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(Text)            # as resolved at the last evaluation; "" = none
    environment: Mapped[str] = mapped_column(Text)
    rule: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    exception_id: Mapped[Optional[int]] = mapped_column(BigId)
    first_seen: Mapped[dt.datetime]
    last_seen: Mapped[dt.datetime]
    cleared_at: Mapped[Optional[dt.datetime]]

    __table_args__ = (
        Index("ix_policy_violations_agent_id_cleared_at", "agent_id", "cleared_at"),
        Index("ix_policy_violations_cleared_at_rule", "cleared_at", "rule"),
    )


class PolicyExceptionRow(Base):
    __tablename__ = "policy_exceptions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64))   # "" when not for one certificate
    owner: Mapped[str] = mapped_column(Text)
    pattern: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    granted_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    expiry_reported_at: Mapped[Optional[dt.datetime]]


policy_documents = PolicyDocument.__table__
policy_violations = PolicyViolation.__table__
policy_exceptions = PolicyExceptionRow.__table__
