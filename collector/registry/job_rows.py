"""A renewal job's rows, shared by the job store's modules: reading jobs as ``JobView`` records (with
their events), locking one for a change, writing an event, and the small facts about jobs
(the location's hash behind the one-running-job key, the audit action of a state).

Pure plumbing over ``jobs`` and ``job_events``: no transactions of its own (callers pass the
connection of theirs), no decisions (collector/domain/jobstates.py makes them).
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from typing import Any, Sequence

from sqlalchemy import Connection, insert, select

from collector.domain import jobstates as model
from collector.errors import InvalidInput, NotFound
from collector.registry.models.agents import agents
from collector.registry.models.jobs import job_events, jobs
from collector.registry.types import JobEvent, JobView

_HEX = re.compile(r"[0-9a-f]+")


def location_hash(agent_id: str, store_type: str, path: str, alias: str, chain_index: int) -> str:
    """The key of a location in ``jobs.active_key`` (one running job per location)."""
    return hashlib.sha256(f"{agent_id}\0{store_type}\0{path}\0{alias}\0{chain_index}".encode()).hexdigest()


def check_fingerprint(value: str, what: str) -> str:
    """``value`` as a full SHA-256 fingerprint (lower-case, no separators); InvalidInput otherwise."""
    fp = re.sub(r"[\s:]", "", value).lower()
    if len(fp) != 64 or not _HEX.fullmatch(fp):
        raise InvalidInput(f"{what} must be a SHA-256 fingerprint (64 hex digits), not {value.strip()[:80]!r}")
    return fp


def audit_action(state: str) -> str:
    """The audit action of a job entering ``state``."""
    if state in (model.VERIFIED, model.ROLLED_BACK):
        return f"install.{state}"
    return f"job.{state}"


def select_jobs() -> Any:
    """SELECT of jobs with their agent's hostname."""
    return select(jobs, agents.c.hostname).join(agents, agents.c.agent_id == jobs.c.agent_id)


def lock_job(conn: Connection, job_id: str) -> Any:
    """The job's row, locked for this transaction (FOR UPDATE on PostgreSQL; SQLite writers are
    serialised by BEGIN IMMEDIATE); NotFound when there is none."""
    stmt = select(jobs).where(jobs.c.job_id == job_id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"no job {job_id}")
    return row


def job_views(conn: Connection, job_ids: Sequence[str], with_events: bool = False) -> list[JobView]:
    """The jobs in the order of ``job_ids`` (unknown ids left out), with their events if asked."""
    if not job_ids:
        return []
    rows = {r.job_id: r for r in conn.execute(select_jobs().where(jobs.c.job_id.in_(list(job_ids))))}
    events: dict[str, list[JobEvent]] = {}
    if with_events:
        for e in conn.execute(
            select(job_events).where(job_events.c.job_id.in_(list(job_ids))).order_by(job_events.c.id)
        ):
            events.setdefault(e.job_id, []).append(JobEvent(
                at=e.at, from_state=e.from_state, to_state=e.to_state, reason=e.reason, actor=e.actor,
            ))
    return [_view(rows[j], tuple(events.get(j, ()))) for j in job_ids if j in rows]


def add_event(conn: Connection, job_id: str, now: dt.datetime, from_state: str, to_state: str,
              reason: str, actor: str) -> None:
    """Record a change of the job's state (``from_state`` "" for its creation)."""
    conn.execute(insert(job_events).values(
        job_id=job_id, at=now, from_state=from_state, to_state=to_state, reason=reason, actor=actor,
    ))


def _view(r: Any, events: tuple[JobEvent, ...] = ()) -> JobView:
    return JobView(
        job_id=r.job_id, kind=r.kind, agent_id=r.agent_id, hostname=r.hostname, store_type=r.store_type,
        path=r.path, alias=r.alias, chain_index=r.chain_index, old_fingerprint=r.old_fingerprint,
        template=r.template, requested_by=r.requested_by, reason=r.reason, state=r.state, attempts=r.attempts,
        timeout=dt.timedelta(seconds=r.timeout_seconds), deadline=r.deadline, next_attempt_at=r.next_attempt_at,
        command_sent_at=r.command_sent_at, csr_der=bytes(r.csr_der or b""), new_fingerprint=r.new_fingerprint or "",
        certificate_der=bytes(r.certificate_der or b""),
        chain_ders=tuple(base64.b64decode(c) for c in (r.chain or ())),
        served_fingerprint=r.served_fingerprint or "", result_detail=r.result_detail,
        idempotency_key=r.request_key or "", created_at=r.created_at, updated_at=r.updated_at,
        finished_at=r.finished_at, events=events,
    )
