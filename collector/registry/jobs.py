"""Renewal jobs in the registry: creation, state changes with their events, commands to agents.

``JobStore`` takes and returns the plain records of ``collector.registry.types``
(``JobView``, ``JobEvent``) and holds no session between calls. Every method is
one transaction and takes the current time as ``now``. The decisions (which
state may follow which, backoff, deadlines) are ``collector.domain.jobstates``; this module
only applies them, atomically:

- every state change writes its ``job_events`` row in the same transaction;
- a job's row is locked while it changes (``SELECT ... FOR UPDATE`` on PostgreSQL;
  SQLite writers are serialised by ``BEGIN IMMEDIATE``), so two collectors cannot
  both advance one job;
- one running job per location, enforced by a unique key that is cleared when the
  job ends, so repeating a renew command (or two collectors deciding to renew at
  once) returns the running job instead of making another;
- ``claim_command`` is a compare-and-set, so only one collector sends a command;
- every creation and state change is also an audit event (collector/registry/audit.py),
  in the same transaction: ``renewal.request`` and ``job.<state>`` (``install.verified``,
  ``install.rolled_back`` for the installs' outcomes), by the ``actor`` given.

The creation transaction is collector/registry/job_requests.py; reading jobs and writing
their events, collector/registry/job_rows.py. Use it as ``Registry.jobs`` or ``JobStore(engine)``.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from typing import Any, Mapping, Sequence

from sqlalchemy import Connection, Engine, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from collector.domain import jobstates as model
from collector.errors import Ambiguous, InvalidInput, NotFound
from collector.registry import audit, db
from collector.registry.job_requests import request_renewals
from collector.registry.job_rows import add_event, audit_action, check_fingerprint, job_views, lock_job
from collector.registry.models.jobs import jobs
from collector.registry.types import JobView, LocationSelector, location_label

_UUID_CHARS = re.compile(r"[0-9a-f-]+")
MIN_PREFIX = 6
#: attempts at a create that lost a race on the one-running-job-per-location key
_CREATE_TRIES = 3


class JobStore(db.Connections):
    """Renewal jobs on the registry's database (SQLite or PostgreSQL)."""

    #: rows at most per list / due_for_agent / mark_stuck call
    MAX_LIMIT = 1000

    def __init__(self, engine: Engine, resend_after: dt.timedelta = model.COMMAND_RESEND_AFTER) -> None:
        self.engine = engine
        self.resend_after = resend_after

    # -- creating -------------------------------------------------------------------

    def create_renewals(
        self,
        fingerprint: str,
        location_filter: LocationSelector | Any | None,
        template: str,
        requested_by: str,
        reason: str,
        now: dt.datetime,
        timeout: dt.timedelta = model.DEFAULT_TIMEOUT,
        *,
        idempotency_key: str | None = None,
        detail: Mapping[str, Any] | None = None,
        approval: Mapping[str, Any] | None = None,
    ) -> list[JobView]:
        """One renewal job per present location of the certificate (or per location matching
        ``location_filter``), each in ``requested``.

        A location that already has a running (not final) job gets that job back instead of a
        new one, so repeating the command is harmless. With ``idempotency_key``, a repeat of
        the same request returns the jobs it made, even after they ended.

        ``fingerprint`` may be a unique prefix (6+ hex digits). Only locations that hold the
        certificate as an entry's own certificate (chain index 0) on active agents are renewed.
        Raises NotFound (unknown certificate, no present location), Ambiguous (prefix) or
        InvalidInput (the named location does not hold the certificate, ...).
        """
        if timeout.total_seconds() < 1:
            raise InvalidInput(f"a job timeout must be at least one second, not {timeout}")
        sel = LocationSelector.of(location_filter)
        if idempotency_key is not None and not idempotency_key:
            raise InvalidInput("an idempotency key must not be empty")
        for attempt in range(_CREATE_TRIES):
            try:
                with self._write() as conn:
                    return request_renewals(conn, fingerprint, sel, template, requested_by, reason, now, timeout,
                                            idempotency_key, detail, approval)
            except IntegrityError:
                # Another collector made a job for one of these locations (or this request)
                # at the same time; the next try finds and returns it.
                if attempt == _CREATE_TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    # -- reading --------------------------------------------------------------------------

    def get(self, job_id: str) -> JobView:
        """A job with its events, by its id or a unique prefix of at least 6 characters."""
        ref = job_id.strip().lower()
        if not ref or not _UUID_CHARS.fullmatch(ref) or len(ref) > 36:
            raise NotFound(f"no job {job_id.strip()[:80]!r}")
        j = jobs.c
        with self._read() as conn:
            if len(ref) == 36:
                found = conn.execute(select(j.job_id).where(j.job_id == ref)).scalars().all()
            elif len(ref) < MIN_PREFIX:
                raise InvalidInput(f"give at least {MIN_PREFIX} characters of the job id")
            else:
                found = conn.execute(
                    select(j.job_id).where(j.job_id >= ref, j.job_id < ref + "g").order_by(j.job_id).limit(2)
                ).scalars().all()
                found = [f for f in found if f.startswith(ref)]
            if not found:
                raise NotFound(f"no job {ref}")
            if len(found) > 1:
                raise Ambiguous(f"job id prefix {ref!r} matches several jobs; give more characters")
            return job_views(conn, found, with_events=True)[0]

    # -- state changes -----------------------------------------------------------------------

    def advance(
        self,
        job_id: str,
        new_state: str,
        now: dt.datetime,
        reason: str = "",
        actor: str = "collector",
        *,
        csr_der: bytes | None = None,
        new_fingerprint: str | None = None,
        certificate_der: bytes | None = None,
        chain_ders: Sequence[bytes] | None = None,
        served_fingerprint: str | None = None,
        result_detail: Any = None,
        next_attempt_at: dt.datetime | None = None,
    ) -> JobView:
        """Move a job to ``new_state`` (checked by ``collector.domain.jobstates.transition``), store the given
        facts (None or empty means "leave as it is"), and record the change as an event, in one
        transaction with the job's row locked.

        Asking for the state the job is already in changes nothing and returns the job (a
        repeated report is harmless). Going back to ``requested`` counts an attempt and waits
        ``collector.domain.jobstates.retry_delay`` (unless ``next_attempt_at`` is given); a final state sets
        ``finished_at``. InvalidTransition if the move is not allowed: nothing is written.
        """
        # None and empty values (as protobuf gives for unset fields) leave a field as it is
        values: dict[str, Any] = {}
        if csr_der:
            values["csr_der"] = bytes(csr_der)
        if certificate_der:
            values["certificate_der"] = bytes(certificate_der)
            computed = hashlib.sha256(certificate_der).hexdigest()
            if new_fingerprint and check_fingerprint(new_fingerprint, "new_fingerprint") != computed:
                raise InvalidInput("new_fingerprint is not the SHA-256 of certificate_der")
            values["new_fingerprint"] = computed
        elif new_fingerprint:
            values["new_fingerprint"] = check_fingerprint(new_fingerprint, "new_fingerprint")
        if chain_ders is not None:
            values["chain"] = [base64.b64encode(bytes(d)).decode("ascii") for d in chain_ders]
        if served_fingerprint:
            values["served_fingerprint"] = check_fingerprint(served_fingerprint, "served_fingerprint")
        if result_detail is not None:
            values["result_detail"] = result_detail
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        with self._write() as conn:
            row = lock_job(conn, job_id)
            self._change(conn, row, new_state, now, reason, actor, values)
            return job_views(conn, [job_id], with_events=True)[0]

    def _change(self, conn: Connection, row: Any, new_state: str, now: dt.datetime, reason: str, actor: str,
                values: dict[str, Any], fresh_deadline: bool = False) -> bool:
        """Apply one state change to a locked row; False (nothing written) for a repeat."""
        model.transition(row.state, new_state)
        if row.state == new_state:
            return False
        vals: dict[str, Any] = {"state": new_state, "updated_at": now}
        if new_state == model.REQUESTED:
            attempts = row.attempts + 1
            vals.update(attempts=attempts, command_sent_at=None, csr_der=None, new_fingerprint=None,
                        certificate_der=None, chain=None, served_fingerprint=None)
            if fresh_deadline or row.state == model.STUCK:
                # an operator's retry: a new deadline, and no waiting
                vals.update(deadline=now + dt.timedelta(seconds=row.timeout_seconds), next_attempt_at=now)
            else:
                vals["next_attempt_at"] = now + model.retry_delay(attempts)
        elif new_state == model.ISSUED:
            vals.update(command_sent_at=None, next_attempt_at=now)
        if new_state in model.FINAL_STATES:
            vals.update(finished_at=now, active_key=None)
        vals.update(values)
        if not reason and new_state in (model.FAILED, model.ROLLED_BACK, model.STUCK, model.CANCELLED,
                                        model.DENIED, model.EXPIRED):
            reason = "no reason given"
        conn.execute(update(jobs).where(jobs.c.job_id == row.job_id).values(**vals))
        add_event(conn, row.job_id, now, row.state, new_state, reason, actor)
        detail: dict[str, Any] = {
            "job_id": row.job_id, "from": row.state, "to": new_state, "agent_id": row.agent_id,
            "fingerprint": row.old_fingerprint,
            "location": location_label(row.store_type, row.path, row.alias, row.chain_index),
            "attempts": vals.get("attempts", row.attempts),
        }
        for k in ("new_fingerprint", "served_fingerprint"):
            if vals.get(k):
                detail[k] = vals[k]
        audit.record(conn, now, actor, audit_action(new_state), f"job:{row.job_id}", reason, detail)
        return True

    def retry(self, job_id: str, now: dt.datetime, actor: str, reason: str = "retried by an operator") -> JobView:
        """An operator's retry: back to ``requested`` with a new deadline, due at once.

        Allowed from ``stuck`` and the states before installing; a job already in
        ``requested`` is made due now. A final job cannot be retried: request a new renewal.
        """
        with self._write() as conn:
            row = lock_job(conn, job_id)
            if row.state == model.AWAITING_APPROVAL:   # a retry must not stand in for an approval
                raise model.InvalidTransition(f"cannot retry job {job_id}: it awaits approval "
                                              "(certfleet approvals approve|deny)", row.state, model.REQUESTED)
            if row.state == model.REQUESTED:
                if row.next_attempt_at > now:
                    conn.execute(update(jobs).where(jobs.c.job_id == job_id).values(
                        next_attempt_at=now, deadline=now + dt.timedelta(seconds=row.timeout_seconds),
                        updated_at=now))
                    audit.record(conn, now, actor, "job.retry", f"job:{job_id}", reason, {
                        "job_id": job_id, "from": row.state, "to": row.state, "agent_id": row.agent_id,
                        "fingerprint": row.old_fingerprint, "attempts": row.attempts,
                        "location": location_label(row.store_type, row.path, row.alias, row.chain_index),
                    })
            else:
                try:
                    self._change(conn, row, model.REQUESTED, now, reason, actor, {}, fresh_deadline=True)
                except model.InvalidTransition as e:
                    hint = "; request a new renewal instead" if row.state in model.FINAL_STATES else ""
                    raise model.InvalidTransition(f"cannot retry job {job_id}: {e}{hint}", e.current, e.new) from None
            return job_views(conn, [job_id], with_events=True)[0]

    def cancel(self, job_id: str, now: dt.datetime, actor: str, reason: str = "cancelled by an operator") -> JobView:
        """Cancel a job that has not ended (a repeat is harmless); InvalidTransition for a final job."""
        return self.advance(job_id, model.CANCELLED, now, reason or "cancelled by an operator", actor)

    def mark_stuck(self, now: dt.datetime, limit: int = MAX_LIMIT) -> list[JobView]:
        """Move every running job past its deadline to ``stuck``, each with an event; returns them."""
        j = jobs.c
        running = sorted(model.ACTIVE_STATES - {model.STUCK, model.AWAITING_APPROVAL})
        with self._write() as conn:
            stmt = (select(jobs).where(j.state.in_(running), j.deadline < now)
                    .order_by(j.deadline, j.job_id).limit(self._limit(limit)))
            if conn.dialect.name == "postgresql":
                stmt = stmt.with_for_update()
            ids = []
            for row in conn.execute(stmt).all():
                if not model.is_stuck(row.state, row.deadline, now):   # changed while we waited for the lock
                    continue
                why = (f"deadline {row.deadline.isoformat(timespec='seconds')} passed while {row.state}"
                       f" (after {row.attempts} retries)")
                self._change(conn, row, model.STUCK, now, why, "collector", {})
                ids.append(row.job_id)
            return job_views(conn, ids)

    # -- commands to agents ----------------------------------------------------------------------

    def due_for_agent(self, agent_id: str, now: dt.datetime, limit: int = 100, *,
                      connected_at: dt.datetime | None = None) -> list[JobView]:
        """Jobs whose agent must be told something now, oldest first (``collector.domain.jobstates.command_due``):

        - ``requested`` (send make-key-and-CSR, then advance to ``key_pending``) and ``issued``
          (send install, then advance to ``installing``) once ``next_attempt_at`` has come;
        - ``key_pending`` and ``installing`` whose command went out longer than the resend
          interval ago: send it again (the agent may have reconnected; it is idempotent);
        - with ``connected_at`` (when the agent's current command stream connected): also
          ``key_pending`` and ``installing`` whose command went out before then, on a stream that
          is gone: sent again at once, not after the resend interval.

        Call ``claim_command`` (with the same ``connected_at``) before sending, so that only one
        collector sends.
        """
        j = jobs.c
        unclaimed = self._unclaimed(now)
        cond = or_(
            and_(j.state.in_(sorted(model.SEND_STATES)), j.next_attempt_at <= now, unclaimed),
            and_(j.state.in_(sorted(model.RESEND_STATES)), self._unclaimed(now, connected_at)),
        )
        with self._read() as conn:
            ids = conn.execute(
                select(j.job_id).where(j.agent_id == agent_id, cond)
                .order_by(j.created_at, j.job_id).limit(self._limit(limit))
            ).scalars().all()
            return job_views(conn, ids)

    def _unclaimed(self, now: dt.datetime, connected_at: dt.datetime | None = None) -> Any:
        """The command was never sent, or went out longer than the resend interval ago, or (with
        ``connected_at``) before the agent's current stream connected."""
        j = jobs.c
        alternatives = [j.command_sent_at.is_(None), j.command_sent_at <= now - self.resend_after]
        if connected_at is not None:
            alternatives.append(j.command_sent_at < connected_at)
        return or_(*alternatives)

    def claim_command(self, job_id: str, expected_state: str, now: dt.datetime, *,
                      connected_at: dt.datetime | None = None) -> bool:
        """Stamp ``command_sent_at`` if the job is still in ``expected_state`` and its command is
        due (not sent within the resend interval, or for a job in flight, not sent on the stream
        that connected at ``connected_at``): True for the one caller that should send it."""
        if expected_state not in model.SEND_STATES | model.RESEND_STATES:
            raise InvalidInput(f"a job in state {expected_state!r} has no command to send")
        j = jobs.c
        resend = connected_at if expected_state in model.RESEND_STATES else None
        conds = [j.job_id == job_id, j.state == expected_state, self._unclaimed(now, resend)]
        if expected_state in model.SEND_STATES:
            conds.append(j.next_attempt_at <= now)
        with self._write() as conn:
            res = conn.execute(update(jobs).where(*conds).values(command_sent_at=now, updated_at=now))
            return res.rowcount == 1

    # -- listing (last: ``list`` shadows the builtin in the class body) ----------------------------

    def _limit(self, limit: int) -> int:
        if limit < 1:
            raise InvalidInput(f"limit must be at least 1, not {limit}")
        return min(limit, self.MAX_LIMIT)

    def count(self, state: str | None = None) -> int:
        j = jobs.c
        stmt = select(func.count()).select_from(jobs)
        if state is not None:
            self._check_state(state)
            stmt = stmt.where(j.state == state)
        with self._read() as conn:
            return int(conn.execute(stmt).scalar_one())

    @staticmethod
    def _check_state(state: str) -> None:
        if state not in model.STATES:
            raise InvalidInput(f"unknown job state {state!r}; known states: {', '.join(model.STATES)}")

    def list(self, state: str | None = None, agent_id: str | None = None, limit: int = 100, *,
             fingerprint: str | None = None) -> list[JobView]:  # noqa: A003
        """Jobs newest first (without events), optionally only in ``state``, on ``agent_id``, or
        renewing the certificate ``fingerprint`` (full, 64 hex digits)."""
        j = jobs.c
        stmt = select(j.job_id)
        if state is not None:
            self._check_state(state)
            stmt = stmt.where(j.state == state)
        if agent_id is not None:
            stmt = stmt.where(j.agent_id == agent_id)
        if fingerprint is not None:
            stmt = stmt.where(j.old_fingerprint == check_fingerprint(fingerprint, "fingerprint"))
        stmt = stmt.order_by(j.created_at.desc(), j.job_id.desc()).limit(self._limit(limit))
        with self._read() as conn:
            return job_views(conn, conn.execute(stmt).scalars().all())
