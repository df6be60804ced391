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

Use it as ``Registry.jobs`` or ``JobStore(engine)``.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import uuid
from typing import Any, Mapping, Sequence

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from collector.domain import jobstates as model
from collector.errors import Ambiguous, InvalidInput, NotFound
from collector.registry import audit, db
from collector.registry.lookup import resolve_fingerprint
from collector.registry.models.agents import agents
from collector.registry.models.inventory import locations
from collector.registry.models.jobs import job_events, jobs
from collector.registry.types import JobEvent, JobView, LocationSelector

_HEX = re.compile(r"[0-9a-f]+")
_UUID_CHARS = re.compile(r"[0-9a-f-]+")
MIN_PREFIX = 6
KIND_RENEW = "renew"
#: attempts at a create that lost a race on the one-running-job-per-location key
_CREATE_TRIES = 3


def _location_hash(agent_id: str, store_type: str, path: str, alias: str, chain_index: int) -> str:
    return hashlib.sha256(f"{agent_id}\0{store_type}\0{path}\0{alias}\0{chain_index}".encode()).hexdigest()


def _label(store_type: str, path: str, alias: str, chain_index: int) -> str:
    where = f"{store_type}:{path}"
    if alias:
        where += f" [{alias}]"
    return f"{where} #{chain_index}"


def _fingerprint(value: str, what: str) -> str:
    fp = re.sub(r"[\s:]", "", value).lower()
    if len(fp) != 64 or not _HEX.fullmatch(fp):
        raise InvalidInput(f"{what} must be a SHA-256 fingerprint (64 hex digits), not {value.strip()[:80]!r}")
    return fp


def audit_action(state: str) -> str:
    """The audit action of a job entering ``state``."""
    if state in (model.VERIFIED, model.ROLLED_BACK):
        return f"install.{state}"
    return f"job.{state}"


def _selector(flt: Any) -> LocationSelector | None:
    if flt is None or isinstance(flt, LocationSelector):
        return flt
    # anything shaped like a location key or filter (e.g. types.LocationKeyIn); "" matches anything
    return LocationSelector(
        agent_id=getattr(flt, "agent_id", "") or "", hostname=getattr(flt, "hostname", "") or "",
        store_type=getattr(flt, "store_type", "") or "", path=getattr(flt, "path", "") or "",
        alias=getattr(flt, "alias", "") or "", chain_index=getattr(flt, "chain_index", None),
    )


def _describe(sel: LocationSelector) -> str:
    parts = []
    if sel.agent_id:
        parts.append(f"agent {sel.agent_id}")
    if sel.hostname:
        parts.append(f"host {sel.hostname}")
    where = ":".join(p for p in (sel.store_type, sel.path) if p)
    if where:
        parts.append(where)
    if sel.alias:
        parts.append(f"[{sel.alias}]")
    if sel.chain_index is not None:
        parts.append(f"#{sel.chain_index}")
    return " ".join(parts) or "any location"


def _matches(sel: LocationSelector, r: Any) -> bool:
    return (
        (not sel.agent_id or r.agent_id == sel.agent_id)
        and (not sel.hostname or (r.hostname or "").lower() == sel.hostname.lower())
        and (not sel.store_type or r.store_type == sel.store_type)
        and (not sel.path or r.path == sel.path)
        and (not sel.alias or r.alias == sel.alias)
        and (sel.chain_index is None or r.chain_index == sel.chain_index)
    )


class JobStore(db.Connections):
    """Renewal jobs on the registry's database (SQLite or PostgreSQL)."""

    #: rows at most per list / due_for_agent / mark_stuck call
    MAX_LIMIT = 1000

    def __init__(self, engine: Engine, resend_after: dt.timedelta = model.COMMAND_RESEND_AFTER) -> None:
        self.engine = engine
        self.resend_after = resend_after

    # -- plumbing ------------------------------------------------------------------

    @staticmethod
    def _select() -> Any:
        return select(jobs, agents.c.hostname).join(agents, agents.c.agent_id == jobs.c.agent_id)

    def _lock(self, conn: Connection, job_id: str) -> Any:
        stmt = select(jobs).where(jobs.c.job_id == job_id)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        row = conn.execute(stmt).first()
        if row is None:
            raise NotFound(f"no job {job_id}")
        return row

    def _views(self, conn: Connection, job_ids: Sequence[str], with_events: bool = False) -> list[JobView]:
        if not job_ids:
            return []
        rows = {r.job_id: r for r in conn.execute(self._select().where(jobs.c.job_id.in_(list(job_ids))))}
        events: dict[str, list[JobEvent]] = {}
        if with_events:
            for e in conn.execute(
                select(job_events).where(job_events.c.job_id.in_(list(job_ids))).order_by(job_events.c.id)
            ):
                events.setdefault(e.job_id, []).append(JobEvent(
                    at=e.at, from_state=e.from_state, to_state=e.to_state, reason=e.reason, actor=e.actor,
                ))
        return [_view(rows[j], tuple(events.get(j, ()))) for j in job_ids if j in rows]

    @staticmethod
    def _event(conn: Connection, job_id: str, now: dt.datetime, from_state: str, to_state: str,
               reason: str, actor: str) -> None:
        conn.execute(insert(job_events).values(
            job_id=job_id, at=now, from_state=from_state, to_state=to_state, reason=reason, actor=actor,
        ))

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
        sel = _selector(location_filter)
        if idempotency_key is not None and not idempotency_key:
            raise InvalidInput("an idempotency key must not be empty")
        for attempt in range(_CREATE_TRIES):
            try:
                with self._write() as conn:
                    return self._create(conn, fingerprint, sel, template, requested_by, reason, now, timeout,
                                        idempotency_key, detail)
            except IntegrityError:
                # Another collector made a job for one of these locations (or this request)
                # at the same time; the next try finds and returns it.
                if attempt == _CREATE_TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _create(self, conn: Connection, fingerprint: str, sel: LocationSelector | None, template: str,
                requested_by: str, reason: str, now: dt.datetime, timeout: dt.timedelta,
                idempotency_key: str | None, detail: Mapping[str, Any] | None = None) -> list[JobView]:
        fp = resolve_fingerprint(conn, fingerprint)
        short = fp[:16] + "..."
        j = jobs.c
        if idempotency_key is not None:
            prior = conn.execute(   # in the order the request returned them
                select(j.job_id, j.old_fingerprint).join(agents, agents.c.agent_id == j.agent_id)
                .where(j.request_key == idempotency_key)
                .order_by(agents.c.hostname, j.agent_id, j.store_type, j.path, j.alias, j.chain_index)
            ).all()
            if prior:
                if any(p.old_fingerprint != fp for p in prior):
                    raise InvalidInput("that idempotency key was already used for another certificate")
                return self._views(conn, [p.job_id for p in prior])

        lc, a = locations.c, agents.c
        present = conn.execute(
            select(lc.agent_id, lc.store_type, lc.path, lc.alias, lc.chain_index, a.hostname, a.status)
            .join(agents, a.agent_id == lc.agent_id)
            .where(lc.fingerprint == fp, lc.status == "present")
            .order_by(a.hostname, lc.agent_id, lc.store_type, lc.path, lc.alias, lc.chain_index)
        ).all()
        if not present:
            raise NotFound(f"certificate {short} is not present at any location; there is nothing to renew")
        chosen = present
        if sel is not None:
            chosen = [r for r in present if _matches(sel, r)]
            if not chosen:
                where = ", ".join(
                    f"{r.hostname or r.agent_id} {_label(r.store_type, r.path, r.alias, r.chain_index)}"
                    for r in present[:5])
                more = f" and {len(present) - 5} more" if len(present) > 5 else ""
                raise InvalidInput(
                    f"{_describe(sel)} does not hold certificate {short}; it is present at {where}{more}")
        own = [r for r in chosen if r.chain_index == 0]
        if not own:
            r = chosen[0]
            example = f"{_label(r.store_type, r.path, r.alias, r.chain_index)} on {r.hostname or r.agent_id}"
            raise InvalidInput(
                f"certificate {short} appears only inside chains (e.g. {example}), not as an entry's own "
                "certificate; renew the certificate that entry belongs to"
            )
        targets = [r for r in own if r.status == "active"]
        if not targets:
            raise InvalidInput(f"certificate {short} is present only on revoked agents; nothing can renew it")

        keys = {_location_hash(r.agent_id, r.store_type, r.path, r.alias, r.chain_index): r for r in targets}
        running = dict(conn.execute(
            select(j.active_key, j.job_id).where(j.active_key.in_(list(keys)))
        ).all())
        ids: list[str] = []
        created: list[tuple[str, Any]] = []
        seconds = int(timeout.total_seconds())
        for key, r in keys.items():
            if key in running:
                ids.append(running[key])
                continue
            job_id = str(uuid.uuid4())
            conn.execute(insert(jobs).values(
                job_id=job_id, kind=KIND_RENEW, agent_id=r.agent_id, store_type=r.store_type, path=r.path,
                alias=r.alias, chain_index=r.chain_index, old_fingerprint=fp, template=template,
                requested_by=requested_by, reason=reason, state=model.REQUESTED, attempts=0,
                timeout_seconds=seconds, deadline=model.deadline_for(now, dt.timedelta(seconds=seconds)),
                next_attempt_at=now, command_sent_at=None, csr_der=None, new_fingerprint=None,
                certificate_der=None, chain=None, served_fingerprint=None,
                result_detail=dict(detail) if detail else None, idempotency_key=(hashlib.sha256(f"{idempotency_key}\0{key}".encode()).hexdigest()
                                 if idempotency_key is not None else None),
                request_key=idempotency_key, active_key=key, created_at=now, updated_at=now, finished_at=None,
            ))
            self._event(conn, job_id, now, "", model.REQUESTED, reason or "renewal requested", requested_by)
            ids.append(job_id)
            created.append((job_id, r))
        # audited after every insert: the chain's head is locked from here to the commit, and a
        # transaction that holds it must not wait on another's uncommitted job (unique keys)
        for job_id, r in created:
            audit.record(conn, now, requested_by, "renewal.request", f"job:{job_id}", reason or "renewal requested", {
                "job_id": job_id, "fingerprint": fp, "agent_id": r.agent_id, "hostname": r.hostname,
                "location": _label(r.store_type, r.path, r.alias, r.chain_index), "template": template,
                "idempotency_key": idempotency_key,
            })
        return self._views(conn, ids)

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
            return self._views(conn, found, with_events=True)[0]

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
            if new_fingerprint and _fingerprint(new_fingerprint, "new_fingerprint") != computed:
                raise InvalidInput("new_fingerprint is not the SHA-256 of certificate_der")
            values["new_fingerprint"] = computed
        elif new_fingerprint:
            values["new_fingerprint"] = _fingerprint(new_fingerprint, "new_fingerprint")
        if chain_ders is not None:
            values["chain"] = [base64.b64encode(bytes(d)).decode("ascii") for d in chain_ders]
        if served_fingerprint:
            values["served_fingerprint"] = _fingerprint(served_fingerprint, "served_fingerprint")
        if result_detail is not None:
            values["result_detail"] = result_detail
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        with self._write() as conn:
            row = self._lock(conn, job_id)
            self._change(conn, row, new_state, now, reason, actor, values)
            return self._views(conn, [job_id], with_events=True)[0]

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
        if not reason and new_state in (model.FAILED, model.ROLLED_BACK, model.STUCK, model.CANCELLED):
            reason = "no reason given"
        conn.execute(update(jobs).where(jobs.c.job_id == row.job_id).values(**vals))
        self._event(conn, row.job_id, now, row.state, new_state, reason, actor)
        detail: dict[str, Any] = {
            "job_id": row.job_id, "from": row.state, "to": new_state, "agent_id": row.agent_id,
            "fingerprint": row.old_fingerprint,
            "location": _label(row.store_type, row.path, row.alias, row.chain_index),
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
            row = self._lock(conn, job_id)
            if row.state == model.REQUESTED:
                if row.next_attempt_at > now:
                    conn.execute(update(jobs).where(jobs.c.job_id == job_id).values(
                        next_attempt_at=now, deadline=now + dt.timedelta(seconds=row.timeout_seconds),
                        updated_at=now))
                    audit.record(conn, now, actor, "job.retry", f"job:{job_id}", reason, {
                        "job_id": job_id, "from": row.state, "to": row.state, "agent_id": row.agent_id,
                        "fingerprint": row.old_fingerprint, "attempts": row.attempts,
                        "location": _label(row.store_type, row.path, row.alias, row.chain_index),
                    })
            else:
                try:
                    self._change(conn, row, model.REQUESTED, now, reason, actor, {}, fresh_deadline=True)
                except model.InvalidTransition as e:
                    hint = "; request a new renewal instead" if row.state in model.FINAL_STATES else ""
                    raise model.InvalidTransition(f"cannot retry job {job_id}: {e}{hint}", e.current, e.new) from None
            return self._views(conn, [job_id], with_events=True)[0]

    def cancel(self, job_id: str, now: dt.datetime, actor: str, reason: str = "cancelled by an operator") -> JobView:
        """Cancel a job that has not ended (a repeat is harmless); InvalidTransition for a final job."""
        return self.advance(job_id, model.CANCELLED, now, reason or "cancelled by an operator", actor)

    def mark_stuck(self, now: dt.datetime, limit: int = MAX_LIMIT) -> list[JobView]:
        """Move every running job past its deadline to ``stuck``, each with an event; returns them."""
        j = jobs.c
        running = sorted(model.ACTIVE_STATES - {model.STUCK})
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
            return self._views(conn, ids)

    # -- commands to agents ----------------------------------------------------------------------

    def due_for_agent(self, agent_id: str, now: dt.datetime, limit: int = 100) -> list[JobView]:
        """Jobs whose agent must be told something now, oldest first (``collector.domain.jobstates.command_due``):

        - ``requested`` (send make-key-and-CSR, then advance to ``key_pending``) and ``issued``
          (send install, then advance to ``installing``) once ``next_attempt_at`` has come;
        - ``key_pending`` and ``installing`` whose command went out longer than the resend
          interval ago: send it again (the agent may have reconnected; it is idempotent).

        Call ``claim_command`` before sending, so that only one collector sends.
        """
        j = jobs.c
        cutoff = now - self.resend_after
        unclaimed = or_(j.command_sent_at.is_(None), j.command_sent_at <= cutoff)
        cond = or_(
            and_(j.state.in_(sorted(model.SEND_STATES)), j.next_attempt_at <= now, unclaimed),
            and_(j.state.in_(sorted(model.RESEND_STATES)), unclaimed),
        )
        with self._read() as conn:
            ids = conn.execute(
                select(j.job_id).where(j.agent_id == agent_id, cond)
                .order_by(j.created_at, j.job_id).limit(self._limit(limit))
            ).scalars().all()
            return self._views(conn, ids)

    def claim_command(self, job_id: str, expected_state: str, now: dt.datetime) -> bool:
        """Stamp ``command_sent_at`` if the job is still in ``expected_state`` and its command is
        due (not sent within the resend interval): True for the one caller that should send it."""
        if expected_state not in model.SEND_STATES | model.RESEND_STATES:
            raise InvalidInput(f"a job in state {expected_state!r} has no command to send")
        j = jobs.c
        conds = [j.job_id == job_id, j.state == expected_state,
                 or_(j.command_sent_at.is_(None), j.command_sent_at <= now - self.resend_after)]
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
            stmt = stmt.where(j.old_fingerprint == _fingerprint(fingerprint, "fingerprint"))
        stmt = stmt.order_by(j.created_at.desc(), j.job_id.desc()).limit(self._limit(limit))
        with self._read() as conn:
            return self._views(conn, conn.execute(stmt).scalars().all())


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
