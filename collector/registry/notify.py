"""Notices claimed and deliveries queued, on SQLite and PostgreSQL (tables: models/notify.py).

Exactly-once: a digest's notices are claimed by INSERT into ``notices_sent``
(unique on fingerprint, threshold, kind, owner), each in a savepoint, in one
transaction that also queues the digest's deliveries and ends with the audit
event ``notification.sent`` (``notification.undelivered`` when no channel had a recipient). The INSERT that wins sends; a collector that loses
the race (or a restart that finds the row) skips the notice. Deliveries are then
claimed one at a time by a conditional UPDATE (a lease on ``next_attempt_at``),
so two collectors never send the same delivery at once either.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy import Engine, and_, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from collector.domain import jobstates as jobmodel
from collector.errors import InvalidInput
from collector.domain.notices import Digest, Key, Notice
from collector.registry import audit, db
from collector.registry.models.agents import agents
from collector.registry.models.jobs import job_events, jobs
from collector.registry.models.notify import deliveries, notices_sent
from collector.registry.sql import chunked, dialect_insert

PENDING, SENT, FAILED = "pending", "sent", "failed"
DELIVERY_STATES = (PENDING, SENT, FAILED)
MAX_LIMIT = 1000
UNSENT_CHUNK = 20_000      # keys per anti-join statement


@dataclass(frozen=True)
class DeliveryIn:
    channel: str
    target: str
    subject: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class DeliveryView:
    id: int
    digest_id: str
    owner: str
    channel: str
    target: str
    subject: str
    payload: dict[str, Any]
    state: str
    attempts: int
    last_error: str
    next_attempt_at: dt.datetime
    created_at: dt.datetime
    updated_at: dt.datetime
    sent_at: dt.datetime | None


def _view(r: Any) -> DeliveryView:
    return DeliveryView(
        id=r.id, digest_id=r.digest_id, owner=r.owner, channel=r.channel, target=r.target, subject=r.subject,
        payload=dict(r.payload or {}), state=r.state, attempts=r.attempts, last_error=r.last_error,
        next_attempt_at=r.next_attempt_at, created_at=r.created_at, updated_at=r.updated_at, sent_at=r.sent_at,
    )


#: the audit target of a digest for certificates without an owner
UNOWNED_TARGET = "unowned"


def digest_audit(owner: str, notices: int, deliveries: int) -> tuple[str, str, str]:
    """(action, target, reason) of the audit event of a claimed digest: ``notification.sent`` when
    deliveries were queued; ``notification.undelivered`` when no channel had a recipient (an unowned
    certificate and no channel default, or an owner without a contact on any configured channel).
    The target is ``owner:<name>``, or ``unowned`` for certificates that have no owner."""
    target = f"owner:{owner}" if owner else UNOWNED_TARGET
    if deliveries:
        return "notification.sent", target, f"{notices} notice(s) in one digest, {deliveries} delivery(ies) queued"
    if owner:
        why = f"owner {owner} has no contact for any configured channel and no channel has a default recipient"
    else:
        why = "no owner, and no channel has a default recipient (smtp to, webhook url, slack, ticket kinds)"
    return "notification.undelivered", target, f"{notices} notice(s) not delivered: {why}"


class NotifyStore(db.Connections):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- notices ---------------------------------------------------------------------------

    def sent_keys(self, keys: Iterable[str]) -> set[Key]:
        """The claimed (fingerprint-or-event-key, threshold, kind, owner) keys among these keys."""
        ks = sorted(set(keys))
        n = notices_sent.c
        out: set[Key] = set()
        with self._read() as conn:
            for part in chunked(ks):
                for r in conn.execute(select(n.fingerprint, n.threshold, n.kind, n.owner).where(n.fingerprint.in_(part))):
                    out.add((r.fingerprint, r.threshold, r.kind, r.owner))
        return out

    def unsent(self, keys: Iterable[Key]) -> set[Key]:
        """The keys among ``keys`` that no notice has claimed: an anti-join of the given keys
        against ``notices_sent`` (its unique key serves each probe), so only what is still to
        decide comes back -- nothing at all on a run with nothing new. The keys travel as one
        parameter: four arrays (``unnest``) on PostgreSQL, a JSON array (``json_each``) on SQLite."""
        ks = sorted(set(keys))
        if not ks:
            return set()
        out: set[Key] = set()
        with self._read() as conn:
            for part in chunked(ks, UNSENT_CHUNK):
                if conn.dialect.name == "postgresql":
                    rows = conn.execute(text(
                        "SELECT k.fp, k.t AS th, k.kind, k.ow FROM unnest("
                        "CAST(:fps AS text[]), CAST(:ts AS integer[]), CAST(:kinds AS text[]), CAST(:owners AS text[])"
                        ") AS k(fp, t, kind, ow) WHERE NOT EXISTS (SELECT 1 FROM notices_sent n "
                        "WHERE n.fingerprint = k.fp AND n.threshold = k.t AND n.kind = k.kind AND n.owner = k.ow "
                        "OFFSET 0)"),   # a probe of the unique key per key, not a hash of every notice sent
                        {"fps": [k[0] for k in part], "ts": [k[1] for k in part], "kinds": [k[2] for k in part],
                         "owners": [k[3] for k in part]})
                else:
                    rows = conn.execute(text(
                        "SELECT k.fp, k.t AS th, k.kind, k.ow FROM (SELECT json_extract(j.value, '$[0]') AS fp, "
                        "json_extract(j.value, '$[1]') AS t, json_extract(j.value, '$[2]') AS kind, "
                        "json_extract(j.value, '$[3]') AS ow FROM json_each(:keys) AS j) AS k "
                        "WHERE NOT EXISTS (SELECT 1 FROM notices_sent n WHERE n.fingerprint = k.fp "
                        "AND n.threshold = k.t AND n.kind = k.kind AND n.owner = k.ow)"),
                        {"keys": json.dumps(part)})
                out.update((r.fp, int(r.th), r.kind, r.ow) for r in rows)
        return out

    def claim_digest(self, digest: Digest, now: dt.datetime,
                     deliveries_for: Callable[[str, Sequence[Notice]], Sequence[DeliveryIn]],
                     actor: str = "collector") -> tuple[str, list[Notice]]:
        """Claim the digest's notices (those another collector or an earlier run has not), queue
        ``deliveries_for(digest_id, claimed)`` and audit what happened (:func:`digest_audit`), in one
        transaction. Returns the digest id and the notices this call won (empty: nothing to send)."""
        digest_id = str(uuid.uuid4())
        won: list[Notice] = []
        with self._write() as conn:
            for notice in sorted(digest.notices, key=lambda x: (x.key, x.threshold, x.kind)):
                try:
                    with conn.begin_nested():
                        conn.execute(insert(notices_sent).values(
                            fingerprint=notice.key, threshold=notice.threshold, kind=notice.kind, owner=notice.owner,
                            target=notice.target, digest_id=digest_id, suppressed=False, sent_at=now))
                except IntegrityError:
                    continue   # claimed by another collector, or by an earlier run
                won.append(notice)
                for t in sorted(notice.marks):
                    conn.execute(dialect_insert(conn, notices_sent).values(
                        fingerprint=notice.key, threshold=t, kind=notice.kind, owner=notice.owner,
                        target=notice.target, digest_id=digest_id, suppressed=True, sent_at=now,
                    ).on_conflict_do_nothing())
            if not won:
                return digest_id, []
            queued = list(deliveries_for(digest_id, won))
            for d in queued:
                conn.execute(insert(deliveries).values(
                    digest_id=digest_id, owner=digest.owner, channel=d.channel, target=d.target, subject=d.subject,
                    payload=d.payload, state=PENDING, attempts=0, last_error="", next_attempt_at=now,
                    created_at=now, updated_at=now, sent_at=None))
            action, target, reason = digest_audit(digest.owner, len(won), len(queued))
            audit.record(conn, now, actor, action, target, reason,
                         {"digest_id": digest_id, "owner": digest.owner,
                          "notices": [{"kind": x.kind, "target": x.target, "threshold": x.threshold} for x in won],
                          "deliveries": [{"channel": d.channel, "target": d.target} for d in queued]})
        return digest_id, won

    # -- deliveries ------------------------------------------------------------------------

    def due_deliveries(self, now: dt.datetime, limit: int = 200) -> list[DeliveryView]:
        d = deliveries.c
        with self._read() as conn:
            rows = conn.execute(select(deliveries).where(d.state == PENDING, d.next_attempt_at <= now)
                                .order_by(d.next_attempt_at, d.id).limit(limit)).all()
        return [_view(r) for r in rows]

    def claim_delivery(self, delivery_id: int, now: dt.datetime, lease: dt.timedelta) -> bool:
        """Take a due delivery for one attempt (attempts + 1; due again after ``lease`` if this
        collector dies mid-send). True for the one caller that should send it."""
        d = deliveries.c
        with self._write() as conn:
            res = conn.execute(update(deliveries).where(d.id == delivery_id, d.state == PENDING,
                                                        d.next_attempt_at <= now)
                               .values(attempts=d.attempts + 1, next_attempt_at=now + lease, updated_at=now))
            return res.rowcount == 1

    def finish_delivery(self, delivery_id: int, now: dt.datetime, error: str | None,
                        retry_at: dt.datetime | None, actor: str = "collector") -> None:
        """Record an attempt: sent (``error`` None), retry at ``retry_at``, or failed for good
        (``retry_at`` None; audited as ``notification.failed``)."""
        d = deliveries.c
        with self._write() as conn:
            if error is None:
                conn.execute(update(deliveries).where(d.id == delivery_id)
                             .values(state=SENT, last_error="", sent_at=now, updated_at=now))
                return
            if retry_at is not None:
                conn.execute(update(deliveries).where(d.id == delivery_id)
                             .values(last_error=error[:2000], next_attempt_at=retry_at, updated_at=now))
                return
            conn.execute(update(deliveries).where(d.id == delivery_id)
                         .values(state=FAILED, last_error=error[:2000], updated_at=now))
            row = conn.execute(select(deliveries).where(d.id == delivery_id)).first()
            audit.record(conn, now, actor, "notification.failed", f"delivery:{delivery_id}",
                         error[:500], {"digest_id": row.digest_id if row else "", "channel": row.channel if row else "",
                                       "attempts": row.attempts if row else 0})

    def list_deliveries(self, state: str | None = None, limit: int = 100,
                        digest_id: str | None = None) -> list[DeliveryView]:
        """Deliveries newest first, optionally only in ``state`` (pending, sent, failed)."""
        if state is not None and state not in DELIVERY_STATES:
            raise InvalidInput(f"unknown delivery state {state!r}; known: {', '.join(DELIVERY_STATES)}")
        if limit < 1:
            raise InvalidInput("limit must be at least 1")
        d = deliveries.c
        stmt = select(deliveries)
        if state is not None:
            stmt = stmt.where(d.state == state)
        if digest_id is not None:
            stmt = stmt.where(d.digest_id == digest_id)
        with self._read() as conn:
            rows = conn.execute(stmt.order_by(d.created_at.desc(), d.id.desc()).limit(min(limit, MAX_LIMIT))).all()
        return [_view(r) for r in rows]

    def failing_deliveries(self, limit: int = 100) -> list[DeliveryView]:
        """Failed for good, and pending ones whose last attempt failed (retrying)."""
        d = deliveries.c
        with self._read() as conn:
            rows = conn.execute(select(deliveries).where(
                (d.state == FAILED) | and_(d.state == PENDING, d.last_error != ""))
                .order_by(d.updated_at.desc(), d.id.desc()).limit(min(limit, MAX_LIMIT))).all()
        return [_view(r) for r in rows]

    # -- facts for the decisions -----------------------------------------------------------

    def active_job_locations(self) -> tuple[set[tuple[str, str, str, str, int]], set[str]]:
        """Locations with a renewal under way (not final), and the fingerprints being renewed."""
        j = jobs.c
        locs: set[tuple[str, str, str, str, int]] = set()
        fps: set[str] = set()
        with self._read() as conn:
            for r in conn.execute(select(j.agent_id, j.store_type, j.path, j.alias, j.chain_index, j.old_fingerprint)
                                  .where(j.state.in_(sorted(jobmodel.ACTIVE_STATES - {jobmodel.STUCK})))):
                locs.add((r.agent_id, r.store_type, r.path, r.alias, r.chain_index))
                fps.add(r.old_fingerprint)
        return locs, fps

    def notable_jobs(self, since: dt.datetime, limit: int = 1000) -> list[Any]:
        """Jobs that failed, were rolled back or are stuck, changed since ``since`` (with hostname)."""
        j, a = jobs.c, agents.c
        with self._read() as conn:
            return conn.execute(
                select(j.job_id, j.state, j.agent_id, j.store_type, j.path, j.alias, j.chain_index,
                       j.old_fingerprint, j.updated_at, a.hostname)
                .join(agents, a.agent_id == j.agent_id)
                .where(j.state.in_([jobmodel.FAILED, jobmodel.ROLLED_BACK, jobmodel.STUCK]), j.updated_at >= since)
                .order_by(j.updated_at, j.job_id).limit(limit)).all()

    def job_reason(self, job_id: str) -> str:
        e = job_events.c
        with self._read() as conn:
            r = conn.execute(select(e.reason).where(e.job_id == job_id).order_by(e.id.desc()).limit(1)).first()
        return r.reason if r else ""


__all__ = ["NotifyStore", "DeliveryIn", "DeliveryView", "PENDING", "SENT", "FAILED"]
