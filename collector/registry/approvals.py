"""Approvals in the registry: the jobs that wait for a human, and the humans' answers (issue 11).

A renewal that is not authorized (collector/domain/authority.py) or that the approval policy calls
atypical (collector/domain/approvals.py) is created in ``awaiting_approval`` with one approval
(``open_approval``, in the request's transaction). An approver's ``decide`` moves the job on
(approved: ``requested``, with a fresh deadline; denied: ``denied``), ``expire`` ends the ones past
their expiry (``expired``). The requester can never decide its own request (four eyes): the refusal
is audited and raises PermissionDenied. Every decision is one transaction with its audit event
(``approval.request``, ``approval.approve``, ``approval.deny``, ``approval.expire``,
``approval.refused``) and the job's own event.
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from sqlalchemy import Connection, Engine, insert, select, update

from collector.domain import jobstates as model
from collector.errors import Ambiguous, InvalidInput, NotFound, PermissionDenied
from collector.registry import audit, db
from collector.registry.job_rows import lock_job
from collector.registry.models.authority import approvals

__all__ = ["ApprovalStore", "ApprovalView", "open_approval"]

PENDING, APPROVED, DENIED, EXPIRED = "pending", "approved", "denied", "expired"
STATES = (PENDING, APPROVED, DENIED, EXPIRED)


@dataclass(frozen=True)
class ApprovalView:
    approval_id: str
    job_id: str
    state: str
    requested_by: str
    owner: str
    agent_id: str
    fingerprint: str
    names: tuple[str, ...]
    reasons: tuple[str, ...]
    created_at: dt.datetime
    expires_at: dt.datetime
    decided_by: str
    decided_at: dt.datetime | None
    decision_reason: str


def _view(r: Any) -> ApprovalView:
    return ApprovalView(
        approval_id=r.approval_id, job_id=r.job_id, state=r.state, requested_by=r.requested_by, owner=r.owner,
        agent_id=r.agent_id, fingerprint=r.fingerprint, names=tuple(r.names or ()), reasons=tuple(r.reasons or ()),
        created_at=r.created_at, expires_at=r.expires_at, decided_by=r.decided_by, decided_at=r.decided_at,
        decision_reason=r.decision_reason)


def open_approval(conn: Connection, job_id: str, agent_id: str, fingerprint: str, requested_by: str,
                  approval: Mapping[str, Any], now: dt.datetime) -> str:
    """The approval of a job created in ``awaiting_approval`` (in the creating transaction)."""
    approval_id = str(uuid.uuid4())
    reasons = [str(x) for x in approval["reasons"]]
    conn.execute(insert(approvals).values(
        approval_id=approval_id, job_id=job_id, dedupe_key=approval.get("dedupe_key") or None, state=PENDING,
        requested_by=requested_by, owner=approval.get("owner") or "", agent_id=agent_id, fingerprint=fingerprint,
        names=list(approval.get("names") or ()), reasons=reasons, created_at=now, expires_at=approval["expires_at"],
        decided_by="", decided_at=None, decision_reason=""))
    audit.record(conn, now, requested_by, "approval.request", f"approval:{approval_id}", "; ".join(reasons)[:500], {
        "approval_id": approval_id, "job_id": job_id, "agent_id": agent_id, "fingerprint": fingerprint,
        "names": list(approval.get("names") or ()), "reasons": reasons, "owner": approval.get("owner") or "",
        "expires_at": audit.at_text(approval["expires_at"])})
    return approval_id


class ApprovalStore(db.Connections):
    def __init__(self, engine: Engine, jobs: Any) -> None:
        self.engine = engine
        self.jobs = jobs       # the JobStore: a decision moves the job with its state machine

    def list(self, state: str | None = PENDING, owner: str | None = None, limit: int = 200) -> list[ApprovalView]:
        if state is not None and state not in STATES:
            raise InvalidInput(f"unknown approval state {state!r}; known: {', '.join(STATES)}")
        stmt = select(approvals).order_by(approvals.c.created_at, approvals.c.approval_id).limit(max(1, limit))
        if state is not None:
            stmt = stmt.where(approvals.c.state == state)
        if owner is not None:
            stmt = stmt.where(approvals.c.owner == owner)
        with self._read() as conn:
            return [_view(r) for r in conn.execute(stmt)]

    def get(self, approval_id: str) -> ApprovalView:
        """By id or a unique prefix (6+ characters), or by the id of its job."""
        key = (approval_id or "").strip().lower()
        if len(key) < 6:
            raise InvalidInput("name an approval by its id (at least 6 characters)")
        with self._read() as conn:
            rows = conn.execute(select(approvals).where(approvals.c.approval_id.startswith(key, autoescape=True))
                                .limit(2)).all()
            if not rows:
                rows = conn.execute(select(approvals).where(approvals.c.job_id == key)).all()
        if not rows:
            raise NotFound(f"no approval {approval_id}")
        if len(rows) > 1:
            raise Ambiguous(f"approval id prefix {approval_id} is ambiguous")
        return _view(rows[0])

    def by_dedupe(self, dedupe_key: str) -> ApprovalView | None:
        with self._read() as conn:
            r = conn.execute(select(approvals).where(approvals.c.dedupe_key == dedupe_key)).first()
        return _view(r) if r is not None else None

    def decide(self, approval_id: str, approve: bool, actor: str, reason: str, now: dt.datetime) -> ApprovalView:
        """Approve (the job goes to ``requested``) or deny (``denied``) a pending approval.
        PermissionDenied, audited, when ``actor`` requested it; InvalidInput when it is not pending."""
        found = self.get(approval_id)
        verb = "approve" if approve else "deny"
        if actor == found.requested_by:
            audit_log_refusal(self, now, actor, found, f"four eyes: the requester may not {verb} its own request")
            raise PermissionDenied(f"{actor} requested this renewal and may not {verb} it (four eyes); "
                                   "another approver must decide")
        if not approve and not (reason or "").strip():
            raise InvalidInput("a denial needs a reason (--reason)")
        with self._write() as conn:
            row = conn.execute(select(approvals).where(approvals.c.approval_id == found.approval_id)).first()
            if row.state != PENDING:
                raise InvalidInput(f"approval {row.approval_id} is already {row.state}"
                                   + (f" by {row.decided_by}" if row.decided_by else ""))
            job = lock_job(conn, row.job_id)
            if row.expires_at <= now or job.state != model.AWAITING_APPROVAL:
                # too late, or the job was cancelled meanwhile: nothing left to decide
                why = ("nobody decided before it expired" if row.expires_at <= now
                       else f"the job ended {job.state} before a decision")
                self._expire_one(conn, row, now, why)
                return _view(conn.execute(select(approvals).where(approvals.c.approval_id == row.approval_id)).first())
            new = APPROVED if approve else DENIED
            why = (reason or "").strip() or ("approved" if approve else "denied")
            conn.execute(update(approvals).where(approvals.c.approval_id == row.approval_id).values(
                state=new, decided_by=actor, decided_at=now, decision_reason=why))
            if approve:
                # the job starts now: a fresh deadline, due at once, no attempt counted
                self.jobs._change(conn, job, model.REQUESTED, now, f"approved by {actor}: {why}", actor,
                                  {"attempts": job.attempts}, fresh_deadline=True)
            else:
                self.jobs._change(conn, job, model.DENIED, now, f"denied by {actor}: {why}", actor, {})
            audit.record(conn, now, actor, f"approval.{verb}", f"approval:{row.approval_id}", why, {
                "approval_id": row.approval_id, "job_id": row.job_id, "requested_by": row.requested_by,
                "names": list(row.names or ()), "agent_id": row.agent_id})
            return _view(conn.execute(select(approvals).where(approvals.c.approval_id == row.approval_id)).first())

    def _expire_one(self, conn: Connection, row: Any, now: dt.datetime,
                    why: str = "nobody decided before it expired") -> None:
        conn.execute(update(approvals).where(approvals.c.approval_id == row.approval_id).values(
            state=EXPIRED, decided_by="collector", decided_at=now, decision_reason=why))
        job = lock_job(conn, row.job_id)
        if job.state == model.AWAITING_APPROVAL:
            self.jobs._change(conn, job, model.EXPIRED, now,
                              f"approval expired at {audit.at_text(row.expires_at)} without a decision", "collector", {})
        audit.record(conn, now, "collector", "approval.expire", f"approval:{row.approval_id}", why, {"approval_id": row.approval_id, "job_id": row.job_id,
                                                          "requested_by": row.requested_by})

    def expire(self, now: dt.datetime, limit: int = 500) -> list[ApprovalView]:
        """End every pending approval past its expiry (its job: ``expired``); returns them."""
        with self._write() as conn:
            rows = conn.execute(select(approvals).where(approvals.c.state == PENDING, approvals.c.expires_at <= now)
                                .order_by(approvals.c.expires_at).limit(limit)).all()
            for r in rows:
                self._expire_one(conn, r, now)
            ids = [r.approval_id for r in rows]
            return [_view(r) for r in conn.execute(select(approvals).where(approvals.c.approval_id.in_(ids)))]


def audit_log_refusal(store: ApprovalStore, now: dt.datetime, actor: str, found: ApprovalView, why: str) -> None:
    """A refused decision, in a transaction of its own (the refusal changes nothing else)."""
    with store._write() as conn:
        audit.record(conn, now, actor, "approval.refused", f"approval:{found.approval_id}", why, {
            "approval_id": found.approval_id, "job_id": found.job_id, "requested_by": found.requested_by})
