"""Agents in the registry: enrollment tokens, enrollment, the agents' identities and what
they last told about their host.

``AgentStore`` takes and returns the records of ``collector.registry.types``. Every method is
one transaction and takes the current time as ``now`` where it writes; every change is
audited in the transaction that makes it. Tokens are kept by the SHA-256 of the token and
audited by a prefix of that hash, never the token.

An agent's identity is the serial of its client certificate; after a renewal the previous
one stays valid for ``IDENTITY_OVERLAP`` (at most until it expires), so that connections
made just before the renewal keep working.

``lock_agent`` and ``host_values`` are also what storing a report uses (collector/registry/ingest.py).
Use it as ``Registry.agents`` (the Registry's agent methods forward here) or ``AgentStore(engine)``.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any, Iterator

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from collector.errors import InvalidInput, NotFound, PermissionDenied, TokenExpired, TokenInvalid, TokenUsed
from collector.registry import audit, db
from collector.registry.lookup import normalize_serial
from collector.registry.models.agents import agents, enrollment_tokens
from collector.registry.models.inventory import locations, scan_errors
from collector.registry.types import AgentView, HostFacts, ScanErrorView

UTC = dt.timezone.utc
#: hex digits of a token's hash named in the audit trail
TOKEN_PREFIX = 12


def _utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


def host_values(host: HostFacts) -> dict[str, Any]:
    """The agents row's columns for what the host reported (the hostname only when it gave one).

    The name goes to ``reported_hostname``: the recorded ``hostname`` (the one authorization, auto-renew
    and owner rules use) is set at enrollment and changed only by an admin (``rename_agent``)."""
    values: dict[str, Any] = {
        "os": host.os,
        "os_version": host.os_version,
        "agent_version": host.agent_version,
        "addresses": list(host.addresses),
        "labels": dict(host.labels),
    }
    if host.hostname:
        values["reported_hostname"] = host.hostname
    return values


def lock_agent(conn: Connection, agent_id: str) -> Any:
    """The agent's row, locked for this transaction (FOR UPDATE on PostgreSQL; SQLite writers are
    serialised by BEGIN IMMEDIATE); None when there is no such agent."""
    stmt = select(agents).where(agents.c.agent_id == agent_id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return conn.execute(stmt).first()


class AgentStore(db.Connections):
    """Enrollment tokens and agents on the registry's database (SQLite or PostgreSQL)."""

    #: how long an agent's previous identity stays valid after a renewal
    IDENTITY_OVERLAP = dt.timedelta(hours=24)
    #: rows per page when streaming agents
    PAGE_SIZE = 500

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- enrollment tokens ---------------------------------------------------------

    def create_token(self, token_hash: str, expires_at: dt.datetime, note: str, now: dt.datetime,
                     actor: str = "collector", bound_host: str = "") -> None:
        """Record a single-use enrollment token by the SHA-256 hex of the token (audited by a
        prefix of that hash, never the token); ``bound_host``: the host name the agent it enrolls
        is recorded under, whatever the agent says."""
        h = token_hash.lower()
        bound = bound_host.strip().rstrip(".").lower()
        try:
            with self._write() as conn:
                conn.execute(insert(enrollment_tokens).values(
                    token_hash=h, created_at=now, expires_at=expires_at, used_at=None,
                    used_by_agent=None, note=note, bound_host=bound,
                ))
                audit.record(conn, now, actor, "token.create", f"token:{h[:TOKEN_PREFIX]}", note,
                             {"token_hash_prefix": h[:TOKEN_PREFIX], "expires_at": audit.at_text(expires_at),
                              "bound_host": bound})
        except IntegrityError:
            raise InvalidInput("that enrollment token already exists") from None

    def consume_token(self, token_hash: str, agent_id: str, now: dt.datetime) -> None:
        """Mark the token used by ``agent_id``; TokenInvalid/TokenUsed/TokenExpired if it cannot be."""
        with self._write() as conn:
            self._consume(conn, token_hash, agent_id, now)
            h = token_hash.lower()
            audit.record(conn, now, f"agent:{agent_id}", "token.use", f"token:{h[:TOKEN_PREFIX]}", "",
                         {"token_hash_prefix": h[:TOKEN_PREFIX], "agent_id": agent_id})

    def check_token(self, token_hash: str, now: dt.datetime) -> None:
        """TokenInvalid/TokenUsed/TokenExpired unless the token could be consumed now; a read, taking no
        write lock (enrollment checks this before it signs or writes anything)."""
        t = enrollment_tokens.c
        with self._read() as conn:
            row = conn.execute(select(t.used_at, t.expires_at).where(t.token_hash == token_hash.lower())).first()
        if row is None:
            raise TokenInvalid("unknown enrollment token")
        if row.used_at is not None:
            raise TokenUsed("enrollment token already used")
        expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=dt.timezone.utc)
        if expires <= now:
            raise TokenExpired(f"enrollment token expired at {expires.isoformat(timespec='seconds')}")

    def _consume(self, conn: Connection, token_hash: str, agent_id: str, now: dt.datetime) -> str:
        """Mark the token used; returns the host name it is bound to ("" when none)."""
        t = enrollment_tokens.c
        h = token_hash.lower()
        res = conn.execute(
            update(enrollment_tokens)
            .where(t.token_hash == h, t.used_at.is_(None), t.expires_at > now)
            .values(used_at=now, used_by_agent=agent_id)
        )
        if res.rowcount == 1:
            return conn.execute(select(t.bound_host).where(t.token_hash == h)).scalar_one() or ""
        row = conn.execute(select(t.used_at, t.expires_at).where(t.token_hash == h)).first()
        if row is None:
            raise TokenInvalid("unknown enrollment token")
        if row.used_at is not None:
            raise TokenUsed("enrollment token already used")
        raise TokenExpired(f"enrollment token expired at {row.expires_at.isoformat(timespec='seconds')}")

    def enroll_agent(
        self, token_hash: str, agent_id: str, host: HostFacts, identity_serial: str,
        identity_not_after: dt.datetime | None, now: dt.datetime,
    ) -> None:
        """Consume the token and record the new agent, in one transaction."""
        try:
            with self._write() as conn:
                bound = self._consume(conn, token_hash, agent_id, now)
                values = host_values(host)
                values.setdefault("reported_hostname", "")
                # the name recorded at enrollment: the token's, else what the host said then
                values["hostname"] = bound or values["reported_hostname"]
                conn.execute(insert(agents).values(
                    agent_id=agent_id, first_seen=now, last_seen=now, status="active", revoked_at=None,
                    revoke_reason="", identity_serial=normalize_serial(identity_serial),
                    identity_not_after=identity_not_after, previous_identity_serial="",
                    previous_identity_valid_until=None, last_sequence=0, last_report_id="", last_report_at=None,
                    report_generation=0, resync_requested=False, **values,
                ))
                h = token_hash.lower()
                audit.record(conn, now, f"agent:{agent_id}", "enroll", f"agent:{agent_id}",
                             f"enrolled {values['hostname'] or 'a host'} with token {h[:TOKEN_PREFIX]}",
                             {"hostname": values["hostname"], "reported_hostname": values["reported_hostname"],
                              "os": host.os, "agent_version": host.agent_version,
                              "token_hash_prefix": h[:TOKEN_PREFIX],
                              "identity_serial": normalize_serial(identity_serial)})
        except IntegrityError:
            raise InvalidInput(f"agent {agent_id} is already enrolled") from None

    # -- agents ----------------------------------------------------------------------

    def get_agent(self, agent_id: str) -> AgentView:
        with self._read() as conn:
            row = conn.execute(select(agents).where(agents.c.agent_id == agent_id)).first()
            if row is None:
                raise NotFound(f"no agent {agent_id}")
            return self._agent_views(conn, [row])[0]

    def list_agents(self) -> Iterator[AgentView]:
        """All agents by agent id, streamed a page at a time."""
        last = ""
        while True:
            with self._read() as conn:
                rows = conn.execute(
                    select(agents).where(agents.c.agent_id > last).order_by(agents.c.agent_id).limit(self.PAGE_SIZE)
                ).all()
                views = self._agent_views(conn, rows) if rows else []
            yield from views
            if len(rows) < self.PAGE_SIZE:
                return
            last = rows[-1].agent_id

    def _agent_views(self, conn: Connection, rows: list[Any]) -> list[AgentView]:
        ids = [r.agent_id for r in rows]
        counts = dict(conn.execute(
            select(locations.c.agent_id, func.count())
            .where(locations.c.agent_id.in_(ids), locations.c.status == "present")
            .group_by(locations.c.agent_id)
        ).all())
        errors: dict[str, list[ScanErrorView]] = defaultdict(list)
        for e in conn.execute(
            select(scan_errors).where(scan_errors.c.agent_id.in_(ids)).order_by(scan_errors.c.id)
        ):
            errors[e.agent_id].append(_error_view(e))
        return [
            AgentView(
                agent_id=r.agent_id, hostname=r.hostname, os=r.os, os_version=r.os_version,
                agent_version=r.agent_version, addresses=tuple(r.addresses or ()), labels=dict(r.labels or {}),
                first_seen=r.first_seen, last_seen=r.last_seen, status=r.status,
                identity_serial=r.identity_serial, identity_not_after=r.identity_not_after,
                last_sequence=r.last_sequence, location_count=counts.get(r.agent_id, 0),
                errors=tuple(errors.get(r.agent_id, ())), reported_hostname=r.reported_hostname or "",
                admin_labels=dict(r.admin_labels or {}),
            )
            for r in rows
        ]

    def agent_identity_valid(self, agent_id: str, serial: str, now: dt.datetime | None = None) -> bool:
        """True if the agent is active and ``serial`` is its current identity, or the previous
        one within the overlap after a renewal."""
        now = now or _utcnow()
        with self._read() as conn:
            row = conn.execute(
                select(agents.c.status, agents.c.identity_serial, agents.c.previous_identity_serial,
                       agents.c.previous_identity_valid_until)
                .where(agents.c.agent_id == agent_id)
            ).first()
        if row is None or row.status != "active":
            return False
        s = normalize_serial(serial)
        if s == row.identity_serial:
            return True
        return bool(
            row.previous_identity_serial and s == row.previous_identity_serial
            and row.previous_identity_valid_until is not None and now < row.previous_identity_valid_until
        )

    def update_agent_identity(self, agent_id: str, serial: str, not_after: dt.datetime, now: dt.datetime) -> None:
        """Record a renewed identity; the previous one stays valid for IDENTITY_OVERLAP (at most to its expiry)."""
        s = normalize_serial(serial)
        with self._write() as conn:
            row = lock_agent(conn, agent_id)
            if row is None:
                raise NotFound(f"no agent {agent_id}")
            if row.status != "active":
                raise PermissionDenied(f"agent {agent_id} is revoked")
            values: dict[str, Any] = {"identity_serial": s, "identity_not_after": not_after}
            if s != row.identity_serial:
                until = now + self.IDENTITY_OVERLAP
                if row.identity_not_after is not None:
                    until = min(until, row.identity_not_after)
                values.update(previous_identity_serial=row.identity_serial, previous_identity_valid_until=until)
            conn.execute(update(agents).where(agents.c.agent_id == agent_id).values(**values))
            if s != row.identity_serial:
                audit.record(conn, now, f"agent:{agent_id}", "agent.identity.renew", f"agent:{agent_id}", "",
                             {"serial": s, "previous_serial": row.identity_serial,
                              "not_after": audit.at_text(not_after)})

    def revoke_agent(self, agent_id: str, reason: str, now: dt.datetime, actor: str = "collector") -> bool:
        """Revoke an active agent; False if there is no such active agent."""
        with self._write() as conn:
            res = conn.execute(
                update(agents)
                .where(agents.c.agent_id == agent_id, agents.c.status == "active")
                .values(status="revoked", revoked_at=now, revoke_reason=reason, resync_requested=False)
            )
            if res.rowcount != 1:
                return False
            audit.record(conn, now, actor, "agent.revoke", f"agent:{agent_id}", reason, {})
            return True

    def request_resync(self, agent_id: str | None, now: dt.datetime | None = None, actor: str = "collector") -> int:
        """Ask one active agent (or all) for a full report; returns how many were flagged."""
        with self._write() as conn:
            stmt = update(agents).where(agents.c.status == "active")
            if agent_id is not None:
                stmt = stmt.where(agents.c.agent_id == agent_id)
            n = conn.execute(stmt.values(resync_requested=True)).rowcount
            if n:
                audit.record(conn, now or _utcnow(), actor, "agent.resync",
                             f"agent:{agent_id}" if agent_id is not None else "agents:all",
                             "full report requested", {"agents_flagged": n})
            return n

    def touch_agent(self, agent_id: str, host: HostFacts, now: dt.datetime) -> None:
        """The agent was heard from: update last_seen and its host facts."""
        with self._write() as conn:
            res = conn.execute(
                update(agents).where(agents.c.agent_id == agent_id).values(last_seen=now, **host_values(host))
            )
            if res.rowcount == 0:
                raise NotFound(f"no agent {agent_id}")

    def list_scan_errors(self, agent_id: str) -> list[ScanErrorView]:
        with self._read() as conn:
            if conn.execute(select(agents.c.agent_id).where(agents.c.agent_id == agent_id)).first() is None:
                raise NotFound(f"no agent {agent_id}")
            return [
                _error_view(e)
                for e in conn.execute(
                    select(scan_errors).where(scan_errors.c.agent_id == agent_id).order_by(scan_errors.c.id)
                )
            ]


def _error_view(e: Any) -> ScanErrorView:
    return ScanErrorView(
        store_type=e.store_type, path=e.path, alias=e.alias, reason=e.reason, message=e.message,
        observed_at=e.observed_at,
    )


__all__ = ["AgentStore", "host_values", "lock_agent", "TOKEN_PREFIX"]
