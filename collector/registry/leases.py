"""Scheduler leases: each scheduled run happens once across collectors on one database.

One row of ``scheduler_leases`` per job name. Two questions are answered there,
each with one conditional ``UPDATE`` (the row is created first, free, by an
``INSERT ... ON CONFLICT DO NOTHING``), so they are atomic on SQLite (writers
serialised by ``BEGIN IMMEDIATE``) and on PostgreSQL (READ COMMITTED re-checks the
``WHERE`` of an ``UPDATE`` on the row it waited for): the statement that changed a
row won, every other one changed nothing.

- **Who runs now** (the lease): ``holder`` holds the lease while ``expires_at`` is
  in the future. A holder renews it while it works; ``release`` ends it
  (``expires_at`` = the release time) and records ``last_run_at`` and
  ``last_result``. A collector that dies stops renewing, and after ``ttl`` the
  lease is free again: nothing is held forever.
- **Which run it is** (the slot): a job every ``interval`` seconds has one run per
  slot, the slot being the interval's start, ``floor(now / interval) * interval``,
  stored as epoch milliseconds in ``last_slot`` (times, not slot numbers, so that a
  changed interval never goes backwards). ``claim_run`` takes the lease *and*
  moves ``last_slot`` forward only when the slot is newer than the last one
  claimed and the lease is free; so of several collectors firing for the same
  slot one runs it, and none runs while another still holds the lease (a slot
  whose run is still going on elsewhere is skipped, not queued).

Use it as ``Registry.leases`` or ``LeaseStore(engine)``. Times are aware UTC
datetimes given by the caller (``now``); ``ttl`` is a ``timedelta`` or seconds.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Optional, Union

from sqlalchemy import Connection, Engine, select, update

from collector.registry import db
from collector.registry.models.leases import scheduler_leases as t
from collector.registry.sql import dialect_insert

Seconds = Union[dt.timedelta, float, int]
NO_SLOT = -1


@dataclass(frozen=True)
class LeaseView:
    name: str
    holder: str
    acquired_at: dt.datetime
    expires_at: dt.datetime
    last_slot: int
    last_run_at: Optional[dt.datetime]
    last_result: str

    def held(self, now: dt.datetime) -> bool:
        return self.expires_at > now


def slot_of(now: dt.datetime, interval: Seconds) -> int:
    """The start of the interval slot ``now`` falls in, in epoch milliseconds."""
    ms = max(1, round(_seconds(interval) * 1000))
    return math.floor(now.timestamp() * 1000 / ms) * ms


def _seconds(v: Seconds) -> float:
    return v.total_seconds() if isinstance(v, dt.timedelta) else float(v)


def _ttl(v: Seconds) -> dt.timedelta:
    return v if isinstance(v, dt.timedelta) else dt.timedelta(seconds=float(v))


class LeaseStore(db.Connections):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _ensure(self, conn: Connection, name: str, now: dt.datetime) -> None:
        """The row of ``name``, free (expired now, no slot claimed), unless it exists."""
        stmt = dialect_insert(conn, t).values(
            name=name, holder="", acquired_at=now, expires_at=now, last_slot=NO_SLOT,
            last_run_at=None, last_result="",
        ).on_conflict_do_nothing(index_elements=["name"])
        conn.execute(stmt)

    def try_acquire(self, name: str, holder: str, now: dt.datetime, ttl: Seconds) -> bool:
        """Take the lease if it is free (expired or released) or already ``holder``'s; True if held now."""
        with self._write() as conn:
            self._ensure(conn, name, now)
            r = conn.execute(
                update(t).where(t.c.name == name, (t.c.expires_at <= now) | (t.c.holder == holder))
                .values(holder=holder, acquired_at=now, expires_at=now + _ttl(ttl)))
            return r.rowcount == 1

    def claim_run(self, name: str, slot: int, holder: str, now: dt.datetime, ttl: Seconds) -> bool:
        """Take the lease for the run of ``slot`` (see :func:`slot_of`): True for exactly one claimant.

        False when that slot (or a later one) was claimed already, or the lease is held
        (by anyone: a run is going on and has not expired).
        """
        with self._write() as conn:
            self._ensure(conn, name, now)
            r = conn.execute(
                update(t).where(t.c.name == name, t.c.last_slot < slot, t.c.expires_at <= now)
                .values(holder=holder, acquired_at=now, expires_at=now + _ttl(ttl), last_slot=slot))
            return r.rowcount == 1

    def renew(self, name: str, holder: str, now: dt.datetime, ttl: Seconds) -> bool:
        """Extend ``holder``'s lease to ``now + ttl``; False when it expired or is not (any longer) theirs."""
        with self._write() as conn:
            r = conn.execute(
                update(t).where(t.c.name == name, t.c.holder == holder, t.c.expires_at > now)
                .values(expires_at=now + _ttl(ttl)))
            return r.rowcount == 1

    def release(self, name: str, holder: str, now: dt.datetime, result: str = "") -> bool:
        """End ``holder``'s lease and record the run's end and result; False when it was not theirs."""
        with self._write() as conn:
            r = conn.execute(
                update(t).where(t.c.name == name, t.c.holder == holder, t.c.expires_at > now)
                .values(expires_at=now, last_run_at=now, last_result=result[:2000]))
            return r.rowcount == 1

    def get(self, name: str) -> LeaseView | None:
        with self._read() as conn:
            row = conn.execute(select(t).where(t.c.name == name)).mappings().first()
        return LeaseView(**row) if row else None

    def list(self) -> list[LeaseView]:
        with self._read() as conn:
            return [LeaseView(**r) for r in conn.execute(select(t).order_by(t.c.name)).mappings()]
