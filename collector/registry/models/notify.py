"""Registry tables for notify (on the shared ``Base``: models/base.py).

- ``notices_sent``: one row per notice ever claimed. The unique key
  (fingerprint, threshold, kind, owner) is what makes a notice exactly-once across
  restarts and several collectors: the INSERT that wins sends, the others skip.
  For expiry notices ``fingerprint`` is the certificate's; for other events
  (job failed/stuck, agent silent, policy violation) it is the SHA-256 of the
  event's key (job id + state, agent id + last seen, ...) and ``threshold`` is 0.
  ``suppressed`` rows are larger thresholds crossed at the same time as a
  smaller one: marked, never sent.
- ``deliveries``: the outbox. One row per (digest or ticket, channel, target),
  written in the transaction that claims the notices; sent, retried with backoff
  and finally ``failed`` independently of every other row.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from collector.registry.models.base import BigId, Base, Json


class NoticeSent(Base):
    __tablename__ = "notices_sent"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    threshold: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))          # expiry, escalation, job.failed, agent.silent, ...
    owner: Mapped[str] = mapped_column(String(128))        # "" when unowned
    target: Mapped[str] = mapped_column(Text)              # certificate:<fp>, job:<id>, agent:<id>, ...
    digest_id: Mapped[str] = mapped_column(String(36), index=True)
    suppressed: Mapped[bool] = mapped_column(Boolean)      # crossed together with a smaller threshold
    sent_at: Mapped[dt.datetime]

    __table_args__ = (UniqueConstraint("fingerprint", "threshold", "kind", "owner"),)


class Delivery(Base):
    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    digest_id: Mapped[str] = mapped_column(String(36), index=True)
    owner: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(128))       # the [[notify.channel]] name
    target: Mapped[str] = mapped_column(Text)               # e-mail addresses or URL ("" = the channel's own)
    subject: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(Json)   # the digest (or one ticket) as sent
    state: Mapped[str] = mapped_column(String(16))          # pending, sent, failed
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text)
    next_attempt_at: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    sent_at: Mapped[Optional[dt.datetime]]

    __table_args__ = (Index("ix_deliveries_state_next_attempt_at", "state", "next_attempt_at"),)


notices_sent = NoticeSent.__table__
deliveries = Delivery.__table__
