"""Registry tables for audit (on the shared ``Base``: models/base.py).

``audit_events`` is the hash chain: every change writes one row in the
transaction that makes it (collector/registry/audit.py). ``audit_head`` is one
row (id 1) that writers lock to append in order; it holds the newest event's
seq and hash (so a deleted tail is noticed) and the anchor left by retention
(the seq and hash of the last purged event, from which verification starts).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from collector.registry.models.base import Base, Json

HEAD_ID = 1


class AuditEvent(Base):
    """One audited change, chained to the one before by ``prev_hash``."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime]
    actor: Mapped[str] = mapped_column(Text)       # admin:alice, operator:bob, agent:<id>, collector, auto-renew
    action: Mapped[str] = mapped_column(String(64))   # enroll, token.create, job.issued, call.refused, ...
    target: Mapped[str] = mapped_column(Text)      # agent:<id>, job:<id>, certificate:<fingerprint>, ...
    reason: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(Json)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_audit_events_at", "at"),
        Index("ix_audit_events_actor", "actor"),
        Index("ix_audit_events_action", "action"),
        Index("ix_audit_events_target", "target"),
    )


class AuditHead(Base):
    """The chain's head (one row): locked by every writer, moved by every event."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger)      # 0 before the first event
    last_hash: Mapped[str] = mapped_column(String(64))
    anchor_seq: Mapped[int] = mapped_column(BigInteger)    # the last purged event's seq (0: none purged)
    anchor_hash: Mapped[str] = mapped_column(String(64))   # ... and its hash (collector.domain.auditchain.GENESIS_HASH: none purged)
    purged_at: Mapped[dt.datetime | None]


audit_events = AuditEvent.__table__
audit_head = AuditHead.__table__
