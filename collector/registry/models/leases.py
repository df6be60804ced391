"""Registry tables for scheduler leases (on the shared ``Base``: models/base.py).

- ``scheduler_leases``: one row per scheduled job name (``policy.evaluate``,
  ``notify.run``, ...). ``holder`` is the collector instance (host:pid:uuid) that
  holds or last held the lease; the lease is held while ``expires_at`` is in the
  future (a release sets it to the release time). ``last_slot`` is the newest
  interval slot (floor(epoch seconds / interval)) that was claimed: a slot is run
  by the one collector whose conditional UPDATE moved ``last_slot`` forward, so
  several collectors on one database run each scheduled run once. A collector
  that dies mid-run stops renewing; after ``expires_at`` another one claims the
  next slot. See collector/registry/leases.py.
"""
from __future__ import annotations

import datetime as dt
from typing import Optional

from sqlalchemy import BigInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from collector.registry.models.base import Base


class SchedulerLease(Base):
    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))          # host:pid:uuid of the (last) holder
    acquired_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]                           # held while in the future
    last_slot: Mapped[int] = mapped_column(BigInteger)        # newest slot claimed (-1: none)
    last_run_at: Mapped[Optional[dt.datetime]]                # when the last run ended
    last_result: Mapped[str] = mapped_column(Text)            # "ok: ...", "error: ...", "" before the first run
scheduler_leases = SchedulerLease.__table__
