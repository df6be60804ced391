"""Requesting renewals: the transaction that makes a certificate's renewal jobs.

One job per present location of the certificate that a selector picks, in ``requested``;
a location with a running job gets that job back (the unique ``active_key`` allows one
running job per location, across collectors), and a request key returns what the same
request made before, even after those jobs ended. Creation and its audit events
(``renewal.request``) are one transaction. ``JobStore.create_renewals``
(collector/registry/jobs.py) runs it and retries a race lost on the unique keys.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Any, Mapping

from sqlalchemy import Connection, insert, select

from collector.domain import jobstates as model
from collector.errors import InvalidInput, NotFound
from collector.registry import audit
from collector.registry.approvals import open_approval
from collector.registry.job_rows import add_event, job_views, location_hash
from collector.registry.lookup import resolve_fingerprint
from collector.registry.models.agents import agents
from collector.registry.models.inventory import locations
from collector.registry.models.jobs import jobs
from collector.registry.types import JobView, LocationSelector, location_label

KIND_RENEW = "renew"


def request_renewals(conn: Connection, fingerprint: str, sel: LocationSelector | None, template: str,
                     requested_by: str, reason: str, now: dt.datetime, timeout: dt.timedelta,
                     idempotency_key: str | None, detail: Mapping[str, Any] | None = None,
                     approval: Mapping[str, Any] | None = None) -> list[JobView]:
    """Make (or find) the renewal jobs of one request in ``conn``'s transaction; see
    ``JobStore.create_renewals`` for the rules and errors. With ``approval`` (reasons, names,
    owner, expires_at, dedupe_key: collector/registry/approvals.py ``open_approval``) new jobs
    start in ``awaiting_approval`` with an approval each, their deadline the approval's expiry."""
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
            return job_views(conn, [p.job_id for p in prior])

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
        chosen = [r for r in present if sel.matches(r)]
        if not chosen:
            where = ", ".join(
                f"{r.hostname or r.agent_id} {location_label(r.store_type, r.path, r.alias, r.chain_index)}"
                for r in present[:5])
            more = f" and {len(present) - 5} more" if len(present) > 5 else ""
            raise InvalidInput(
                f"{sel.describe()} does not hold certificate {short}; it is present at {where}{more}")
    own = [r for r in chosen if r.chain_index == 0]
    if not own:
        r = chosen[0]
        example = f"{location_label(r.store_type, r.path, r.alias, r.chain_index)} on {r.hostname or r.agent_id}"
        raise InvalidInput(
            f"certificate {short} appears only inside chains (e.g. {example}), not as an entry's own "
            "certificate; renew the certificate that entry belongs to"
        )
    targets = [r for r in own if r.status == "active"]
    if not targets:
        raise InvalidInput(f"certificate {short} is present only on revoked agents; nothing can renew it")

    keys = {location_hash(r.agent_id, r.store_type, r.path, r.alias, r.chain_index): r for r in targets}
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
        state = model.AWAITING_APPROVAL if approval is not None else model.REQUESTED
        deadline = approval["expires_at"] if approval is not None else model.deadline_for(
            now, dt.timedelta(seconds=seconds))
        conn.execute(insert(jobs).values(
            job_id=job_id, kind=KIND_RENEW, agent_id=r.agent_id, store_type=r.store_type, path=r.path,
            alias=r.alias, chain_index=r.chain_index, old_fingerprint=fp, template=template,
            requested_by=requested_by, reason=reason, state=state, attempts=0,
            timeout_seconds=seconds, deadline=deadline,
            next_attempt_at=now, command_sent_at=None, csr_der=None, new_fingerprint=None,
            certificate_der=None, chain=None, served_fingerprint=None,
            result_detail=dict(detail) if detail else None, idempotency_key=(hashlib.sha256(f"{idempotency_key}\0{key}".encode()).hexdigest()
                             if idempotency_key is not None else None),
            request_key=idempotency_key, active_key=key, created_at=now, updated_at=now, finished_at=None,
        ))
        add_event(conn, job_id, now, "", state, reason or "renewal requested", requested_by)
        if approval is not None:
            open_approval(conn, job_id, r.agent_id, fp, requested_by, approval, now)
        ids.append(job_id)
        created.append((job_id, r))
    # audited after every insert: the chain's head is locked from here to the commit, and a
    # transaction that holds it must not wait on another's uncommitted job (unique keys)
    for job_id, r in created:
        audit.record(conn, now, requested_by, "renewal.request", f"job:{job_id}", reason or "renewal requested", {
            "job_id": job_id, "fingerprint": fp, "agent_id": r.agent_id, "hostname": r.hostname,
            "location": location_label(r.store_type, r.path, r.alias, r.chain_index), "template": template,
            "idempotency_key": idempotency_key,
            "awaiting_approval": list(approval["reasons"]) if approval is not None else None,
        })
    return job_views(conn, ids)


__all__ = ["request_renewals", "KIND_RENEW"]
