"""The audit trail: hash-chained events, written in the transaction of the change they record.

Writing::

    with registry._write() as conn:
        ...the change...
        audit.record(conn, now, "admin:alice", "agent.revoke", "agent:1234", "host retired", {...})

``record`` locks the chain's head (``SELECT ... FOR UPDATE`` on PostgreSQL, so
that concurrent writers of several collectors append one after the other;
SQLite writers are serialised already by ``BEGIN IMMEDIATE``), numbers the
event, and inserts it with (collector/domain/auditchain.py, pure)::

    hash = sha256(prev_hash || canonical JSON of [seq, at, actor, action, target, reason, detail])

A change that fails rolls back its event with it. Call ``record`` as the last
write of a transaction: the head stays locked until the commit, and a
transaction holding it must not wait for other locks.

Reading (:class:`AuditLog`, as ``Registry.audit``): ``verify`` walks the chain
from the anchor left by retention to the head, in constant memory, and names
the first event that was edited, deleted or reordered; ``export`` streams
events as dicts (one JSON line each; :func:`verify_events` checks an export
offline); ``purge`` drops events older than the retention, keeping the last
purged event's hash as the new anchor; ``list`` filters for people.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from collector.domain.auditchain import (  # noqa: F401 - re-exported for the registry's users
    CHECKPOINT,
    CUT_OVER,
    GENESIS_HASH,
    ChainCheck,
    VerifyResult,
    at_text,
    canonical,
    describe,
    event_hash,
    key_id,
    keyed_hash,
    parse_at,
    plain,
    verify_events,
)
from collector.errors import CollectorError, InvalidInput
from collector.registry import db
from collector.registry.models.audit import HEAD_ID, audit_events, audit_head
from collector.registry.sql import dialect_insert

UTC = dt.timezone.utc
#: how long events are kept by default (``[audit] retention`` in the collector config)
DEFAULT_RETENTION = dt.timedelta(days=400)
MAX_TEXT = 4000          # reason and target are cut to this many characters (before hashing)
MAX_LIMIT = 10_000


class AuditBroken(CollectorError):
    """The audit chain does not verify; the message names the first broken event."""


# -- writing -------------------------------------------------------------------------------


def _lock_head(conn: Connection) -> Any:
    stmt = select(audit_head).where(audit_head.c.id == HEAD_ID)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:   # a schema made without the migrations (create_all): start the chain
        conn.execute(dialect_insert(conn, audit_head).values(
            id=HEAD_ID, last_seq=0, last_hash=GENESIS_HASH, anchor_seq=0, anchor_hash=GENESIS_HASH, purged_at=None,
        ).on_conflict_do_nothing(index_elements=[audit_head.c.id]))
        row = conn.execute(stmt).first()
    return row


#: execution option of the registry's engine holding the audit key (Registry.use_audit_key)
KEY_OPTION = "certfleet_audit_key"


def audit_key(conn: Connection) -> bytes | None:
    """The audit key the registry was given (None: the chain is written unkeyed, as before issue 12)."""
    return conn.get_execution_options().get(KEY_OPTION)


def record(conn: Connection, at: dt.datetime, actor: str, action: str, target: str = "", reason: str = "",
           detail: Mapping[str, Any] | None = None) -> int:
    """Append an event in ``conn``'s transaction (a writer's); returns its seq."""
    if not actor or not action:
        raise InvalidInput("an audit event needs an actor and an action")
    head = _lock_head(conn)
    seq = head.last_seq + 1
    when = at_text(at)
    target, reason = (target or "")[:MAX_TEXT], (reason or "")[:MAX_TEXT]
    body = plain(detail)
    key = audit_key(conn)
    if key is not None:
        h = keyed_hash(key, head.last_hash, seq, when, actor, action, target, reason, body)
    else:
        h = event_hash(head.last_hash, seq, when, actor, action, target, reason, body)
    conn.execute(insert(audit_events).values(
        seq=seq, at=parse_at(when), actor=actor, action=action, target=target, reason=reason, detail=body,
        prev_hash=head.last_hash, hash=h,
    ))
    conn.execute(update(audit_head).where(audit_head.c.id == HEAD_ID).values(last_seq=seq, last_hash=h))
    return seq


# -- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditEventView:
    seq: int
    at: dt.datetime
    actor: str
    action: str
    target: str
    reason: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """As exported (one JSON line each): ``at`` as hashed, so an export verifies offline."""
        return {"seq": self.seq, "at": at_text(self.at), "actor": self.actor, "action": self.action,
                "target": self.target, "reason": self.reason, "detail": self.detail,
                "prev_hash": self.prev_hash, "hash": self.hash}


def _view(r: Any) -> AuditEventView:
    return AuditEventView(seq=r.seq, at=r.at, actor=r.actor, action=r.action, target=r.target, reason=r.reason,
                          detail=dict(r.detail or {}), prev_hash=r.prev_hash, hash=r.hash)


def _row_dict(r: Any) -> dict[str, Any]:
    return {"seq": r.seq, "at": r.at, "actor": r.actor, "action": r.action, "target": r.target,
            "reason": r.reason, "detail": r.detail if r.detail is not None else {}, "prev_hash": r.prev_hash,
            "hash": r.hash}


def _aware(value: dt.datetime | None, what: str) -> dt.datetime | None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise InvalidInput(f"{what} must be an aware datetime")
    return value


class AuditLog(db.Connections):
    """The audit trail on the registry's database. Use it as ``Registry.audit``."""

    PAGE_SIZE = 1000

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, at: dt.datetime, actor: str, action: str, target: str = "", reason: str = "",
               detail: Mapping[str, Any] | None = None) -> int:
        """An event in a transaction of its own (for what changes nothing else, e.g. a refused call)."""
        with self._write() as conn:
            return record(conn, at, actor, action, target, reason, detail)

    def record_certificate_revocation(self, fingerprint: str, issuer: str, reason: str, actor: str,
                                      now: dt.datetime) -> None:
        """An issuer revoked the certificate (the registry keeps no revocation state of its own)."""
        self.record(now, actor, "certificate.revoke", f"certificate:{fingerprint}", reason,
                    {"fingerprint": fingerprint, "issuer": issuer})

    def record_refused_call(self, actor: str, method: str, permission: str, why: str,
                            now: dt.datetime | None = None, detail: dict[str, Any] | None = None) -> None:
        """An admin call the caller was not allowed to make."""
        self.record(now or dt.datetime.now(UTC), actor, "call.refused", method, why,
                    {"method": method, "permission": permission, **(detail or {})})

    def head(self) -> dict[str, Any]:
        with self._read() as conn:
            row = conn.execute(select(audit_head).where(audit_head.c.id == HEAD_ID)).first()
        if row is None:
            return {"last_seq": 0, "last_hash": GENESIS_HASH, "anchor_seq": 0, "anchor_hash": GENESIS_HASH,
                    "purged_at": None}
        return {"last_seq": row.last_seq, "last_hash": row.last_hash, "anchor_seq": row.anchor_seq,
                "anchor_hash": row.anchor_hash, "purged_at": row.purged_at}

    def count(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(audit_events)).scalar_one())

    def verify(self) -> VerifyResult:
        """Walk the chain from the anchor to the head in one consistent read, streaming.

        Names the first event whose own hash is wrong (edited, or moved to another seq),
        that follows a gap (deleted), or that does not link to the one before it; and a
        head that knows of events that are gone (the newest deleted).
        """
        conn = self.engine.connect()
        if conn.dialect.name == "postgresql":   # head and events from one snapshot
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn:
            head = conn.execute(select(audit_head).where(audit_head.c.id == HEAD_ID)).first()
            anchor_seq, anchor_hash = (head.anchor_seq, head.anchor_hash) if head else (0, GENESIS_HASH)
            check = ChainCheck(anchor_seq, anchor_hash, key=audit_key(conn),
                               keyed_from=self._keyed_from(conn, anchor_seq))
            result = conn.execute(
                select(audit_events).where(audit_events.c.seq > anchor_seq).order_by(audit_events.c.seq)
                .execution_options(yield_per=self.PAGE_SIZE))
            try:
                for r in result:
                    if not check.feed(_row_dict(r)):
                        break
            finally:
                result.close()
            if head is None:
                return check.finish()
            return check.finish(head.last_seq, head.last_hash)

    @staticmethod
    def _keyed_from(conn: Connection, anchor_seq: int) -> int | None:
        """The seq from which events must be keyed: the first cut-over event after the anchor; with a key
        and none left (purged with the events before it, or deleted), every event after the anchor."""
        c = audit_events.c
        first = conn.execute(select(func.min(c.seq)).where(c.seq > anchor_seq, c.action == CUT_OVER)).scalar()
        if first is not None:
            return int(first)
        if audit_key(conn) is not None:
            return anchor_seq + 1
        return None

    def cut_over(self, now: dt.datetime) -> int | None:
        """With a key: record the cut-over event unless the chain after the anchor has one (the
        collector calls this at start). Returns its seq, or None when there was nothing to do."""
        with self._write() as conn:
            key = audit_key(conn)
            if key is None:
                return None
            head = _lock_head(conn)
            c = audit_events.c
            if conn.execute(select(c.seq).where(c.seq > head.anchor_seq, c.action == CUT_OVER).limit(1)).first():
                return None
            return record(conn, now, "collector", CUT_OVER, "audit",
                          "from this event on, every event's hash is an HMAC with the audit key",
                          {"key_id": key_id(key), "unkeyed_until_seq": head.last_seq,
                           "unkeyed_last_hash": head.last_hash})

    def export(self, since: dt.datetime | None = None, until: dt.datetime | None = None) -> Iterator[dict[str, Any]]:
        """Events with ``since <= at < until`` in seq order, as dicts (``AuditEventView.to_dict``),
        streamed a page at a time (no connection is held between pages)."""
        for v in self.events(since, until):
            yield v.to_dict()

    def events(self, since: dt.datetime | None = None,
               until: dt.datetime | None = None) -> Iterator[AuditEventView]:
        """Like ``export``, as records."""
        c = audit_events.c
        conds = []
        if _aware(since, "since") is not None:
            conds.append(c.at >= since)
        if _aware(until, "until") is not None:
            conds.append(c.at < until)
        last = -1
        while True:
            with self._read() as conn:
                rows = conn.execute(
                    select(audit_events).where(c.seq > last, *conds).order_by(c.seq).limit(self.PAGE_SIZE)
                ).all()
            yield from (_view(r) for r in rows)
            if len(rows) < self.PAGE_SIZE:
                return
            last = rows[-1].seq

    def purge(self, before: dt.datetime, now: dt.datetime, actor: str = "collector") -> int:
        """Delete the events older than ``before`` (from the oldest on, up to the first one that
        is not), keep the last deleted event's hash as the anchor verification starts from, and
        audit the purge. Returns how many were deleted.

        The part to delete is verified first (in a read, without holding up writers): a broken
        chain is not purged (AuditBroken), so that retention never destroys the evidence of
        tampering. The delete then happens with the chain locked, if nobody purged meanwhile.
        """
        _aware(before, "before")
        c = audit_events.c
        conn = self.engine.connect()
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn:
            head = conn.execute(select(audit_head).where(audit_head.c.id == HEAD_ID)).first()
            if head is None:
                return 0
            first_kept = conn.execute(
                select(func.min(c.seq)).where(c.seq > head.anchor_seq, c.at >= before)).scalar()
            cutoff = head.last_seq if first_kept is None else first_kept - 1
            if cutoff <= head.anchor_seq:
                return 0
            check = ChainCheck(head.anchor_seq, head.anchor_hash, key=audit_key(conn),
                               keyed_from=self._keyed_from(conn, head.anchor_seq))
            result = conn.execute(
                select(audit_events).where(c.seq > head.anchor_seq, c.seq <= cutoff).order_by(c.seq)
                .execution_options(yield_per=self.PAGE_SIZE))
            try:
                for r in result:
                    if not check.feed(_row_dict(r)):
                        break
            finally:
                result.close()
            partial = check.finish(cutoff, head.last_hash if cutoff == head.last_seq else None)
            if not partial.ok:
                raise AuditBroken(f"the audit chain is broken, nothing purged: {partial.reason}")
            assert check.last is not None
            anchor_seq, anchor_hash = head.anchor_seq, check.last["hash"]

        with self._write() as conn:
            head = _lock_head(conn)
            if head.anchor_seq != anchor_seq:
                return 0   # another collector purged meanwhile
            still = conn.execute(select(c.hash).where(c.seq == cutoff)).scalar()
            if still != anchor_hash:
                raise AuditBroken(f"event {cutoff} changed while it was being purged; nothing purged")
            deleted = conn.execute(delete(audit_events).where(c.seq > anchor_seq, c.seq <= cutoff)).rowcount
            if deleted != cutoff - anchor_seq:
                raise AuditBroken(f"events {anchor_seq + 1}..{cutoff} changed while they were being purged; "
                                  "nothing purged")
            conn.execute(update(audit_head).where(audit_head.c.id == HEAD_ID).values(
                anchor_seq=cutoff, anchor_hash=anchor_hash, purged_at=now))
            record(conn, now, actor, "audit.purge", "audit", f"retention: events before {at_text(before)}",
                   {"deleted": deleted, "before": at_text(before), "anchor_seq": cutoff, "anchor_hash": anchor_hash})
            return deleted

    # -- listing (last: ``list`` shadows the builtin in the class body) ------------------------

    def list(self, since: dt.datetime | None = None, until: dt.datetime | None = None,  # noqa: A003
             actor: str | None = None, action: str | None = None, limit: int = 100, *,
             target: str | None = None) -> list[AuditEventView]:
        """The newest ``limit`` events that match, newest first. ``action`` matches exactly or as
        a prefix before a dot ("job" matches job.issued, job.failed, ...)."""
        if limit < 1:
            raise InvalidInput(f"limit must be at least 1, not {limit}")
        c = audit_events.c
        stmt = select(audit_events)
        if _aware(since, "since") is not None:
            stmt = stmt.where(c.at >= since)
        if _aware(until, "until") is not None:
            stmt = stmt.where(c.at < until)
        if actor:
            stmt = stmt.where(c.actor == actor)
        if target:
            stmt = stmt.where(c.target == target)
        if action:
            stmt = stmt.where((c.action == action) | c.action.startswith(action + ".", autoescape=True))
        stmt = stmt.order_by(c.seq.desc()).limit(min(limit, MAX_LIMIT))
        with self._read() as conn:
            return [_view(r) for r in conn.execute(stmt)]
