"""Issuance authority in the registry: name grants, host allows, agents' recorded names and
collector-side labels (issue 11; the decision itself is collector/domain/authority.py).

Every change is one transaction with its audit event (``names.grant``, ``names.allow``,
``names.revoke``, ``agent.rename``, ``agent.label``). Patterns are checked and stored in their
canonical form (A-labels, canonical networks); a grant overlapping another owner's is refused
unless the caller says it wins (an admin's choice, recorded on the grant and in the audit trail).
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Mapping, Sequence

from sqlalchemy import Engine, delete, insert, select, update

from collector.domain import authority as auth
from collector.domain.authority import Allow, Grant, Host
from collector.errors import InvalidInput, NotFound
from collector.registry import audit, db
from collector.registry.models.agents import agents
from collector.registry.models.authority import name_allows, name_grants

__all__ = ["AuthorityStore"]


def _grant(r: Any) -> Grant:
    return Grant(id=r.id, owner=r.owner, pattern=r.pattern, wins=bool(r.wins), created_by=r.created_by,
                 source=r.source)


def _allow(r: Any) -> Allow:
    return Allow(id=r.id, pattern=r.pattern, hosts=r.hosts, agent_id=r.agent_id, label=r.label,
                 created_by=r.created_by)


class AuthorityStore(db.Connections):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- grants ----------------------------------------------------------------------------

    def grants(self, owner: str | None = None) -> list[Grant]:
        with self._read() as conn:
            stmt = select(name_grants).order_by(name_grants.c.id)
            if owner is not None:
                stmt = stmt.where(name_grants.c.owner == owner)
            return [_grant(r) for r in conn.execute(stmt)]

    def grant(self, owner: str, pattern: str, actor: str, now: dt.datetime, *, wins: bool = False,
              source: str = "grant", reason: str = "") -> Grant:
        """Give ``owner`` the pattern; InvalidInput (with the reason) for a bad pattern, or for one
        that overlaps another owner's grant unless ``wins``. Granting the same again returns it."""
        owner = (owner or "").strip()
        if not owner:
            raise InvalidInput("a grant needs an owner (--owner TEAM)")
        p = auth.parse_pattern(pattern)
        with self._write() as conn:
            existing = [_grant(r) for r in conn.execute(select(name_grants).order_by(name_grants.c.id))]
            same = next((g for g in existing if g.owner == owner and g.pattern == p.text), None)
            if same is not None:
                return same
            clash = auth.conflicts(p, owner, existing)
            if clash and not wins:
                listed = "; ".join(f"#{g.id} {g.pattern} held by {g.owner}" for g in clash[:5])
                raise InvalidInput(f"{p.text} overlaps grants of other owners ({listed}); an admin may pass "
                                   "--wins to make this grant decide the names both cover")
            gid = conn.execute(insert(name_grants).values(
                owner=owner, pattern=p.text, kind=p.kind, wins=bool(wins), source=source, created_by=actor,
                created_at=now).returning(name_grants.c.id)).scalar_one()
            audit.record(conn, now, actor, "names.grant", f"grant:{gid}", reason or f"{owner} holds {p.text}", {
                "owner": owner, "pattern": p.text, "kind": p.kind, "wins": bool(wins), "source": source,
                "overrides": [g.id for g in clash]})
            return Grant(id=gid, owner=owner, pattern=p.text, wins=bool(wins), created_by=actor, source=source)

    # -- allows ----------------------------------------------------------------------------

    def allows(self) -> list[Allow]:
        with self._read() as conn:
            return [_allow(r) for r in conn.execute(select(name_allows).order_by(name_allows.c.id))]

    def allow(self, pattern: str, actor: str, now: dt.datetime, *, hosts: str = "", agent_id: str = "",
              label: str = "", reason: str = "") -> Allow:
        """Let the chosen agents (exactly one of host glob, agent id, label) receive ``pattern``."""
        auth.check_host_selector(hosts.strip(), agent_id.strip(), label.strip())
        p = auth.parse_pattern(pattern)
        hosts, agent_id, label = hosts.strip().lower(), agent_id.strip(), label.strip()
        with self._write() as conn:
            if agent_id and conn.execute(select(agents.c.agent_id).where(agents.c.agent_id == agent_id)).first() is None:
                raise NotFound(f"no agent {agent_id}")
            c = name_allows.c
            row = conn.execute(select(name_allows).where(
                c.pattern == p.text, c.hosts == hosts, c.agent_id == agent_id, c.label == label)).first()
            if row is not None:
                return _allow(row)
            aid = conn.execute(insert(name_allows).values(
                pattern=p.text, hosts=hosts, agent_id=agent_id, label=label, created_by=actor, created_at=now,
            ).returning(c.id)).scalar_one()
            made = Allow(id=aid, pattern=p.text, hosts=hosts, agent_id=agent_id, label=label, created_by=actor)
            audit.record(conn, now, actor, "names.allow", f"allow:{aid}", reason or made.describe(), {
                "pattern": p.text, "hosts": hosts, "agent_id": agent_id, "label": label})
            return made

    def revoke(self, kind: str, item_id: int, actor: str, now: dt.datetime, reason: str = "") -> None:
        """Remove grant or allow ``item_id`` (``kind``: grant, allow), audited."""
        table = {"grant": name_grants, "allow": name_allows}.get(kind)
        if table is None:
            raise InvalidInput(f"revoke a grant or an allow, not {kind!r}")
        with self._write() as conn:
            row = conn.execute(select(table).where(table.c.id == item_id)).first()
            if row is None:
                raise NotFound(f"no {kind} #{item_id}")
            conn.execute(delete(table).where(table.c.id == item_id))
            detail = dict(row._mapping)
            detail.pop("created_at", None)
            audit.record(conn, now, actor, "names.revoke", f"{kind}:{item_id}", reason or f"{kind} revoked", detail)

    # -- hosts as authorization sees them ---------------------------------------------------

    def host(self, agent_id: str) -> Host:
        """The agent's recorded name and collector-side labels (never what it reports)."""
        with self._read() as conn:
            row = conn.execute(select(agents.c.agent_id, agents.c.hostname, agents.c.admin_labels)
                               .where(agents.c.agent_id == agent_id)).first()
        if row is None:
            raise NotFound(f"no agent {agent_id}")
        return Host(agent_id=row.agent_id, name=(row.hostname or "").lower(), labels=dict(row.admin_labels or {}))

    def hosts(self, agent_ids: Sequence[str]) -> dict[str, Host]:
        with self._read() as conn:
            rows = conn.execute(select(agents.c.agent_id, agents.c.hostname, agents.c.admin_labels)
                                .where(agents.c.agent_id.in_(list(agent_ids)))).all()
        return {r.agent_id: Host(r.agent_id, (r.hostname or "").lower(), dict(r.admin_labels or {})) for r in rows}

    def find_agent(self, host_or_id: str) -> str:
        """An agent id from an id or a recorded host name (unique)."""
        with self._read() as conn:
            if conn.execute(select(agents.c.agent_id).where(agents.c.agent_id == host_or_id)).first():
                return host_or_id
            ids = [r.agent_id for r in conn.execute(
                select(agents.c.agent_id).where(agents.c.hostname == host_or_id.strip().lower()))]
        if not ids:
            raise NotFound(f"no agent with id or recorded name {host_or_id!r}")
        if len(ids) > 1:
            raise InvalidInput(f"{len(ids)} agents are recorded as {host_or_id!r}; name one by id: {', '.join(ids)}")
        return ids[0]

    def rename_agent(self, agent_id: str, new_name: str, actor: str, now: dt.datetime, reason: str = "") -> str:
        """Change the recorded name (what authorization uses); returns the old one. Audited."""
        name = auth.to_alabel(new_name)
        with self._write() as conn:
            row = conn.execute(select(agents.c.hostname, agents.c.reported_hostname)
                               .where(agents.c.agent_id == agent_id)).first()
            if row is None:
                raise NotFound(f"no agent {agent_id}")
            conn.execute(update(agents).where(agents.c.agent_id == agent_id).values(hostname=name))
            audit.record(conn, now, actor, "agent.rename", f"agent:{agent_id}", reason or f"{row.hostname} -> {name}",
                         {"from": row.hostname, "to": name, "reported_hostname": row.reported_hostname})
            return row.hostname

    def label_agent(self, agent_id: str, set_labels: Mapping[str, str], remove: Sequence[str], actor: str,
                    now: dt.datetime) -> dict[str, str]:
        """Set and remove collector-side labels (the ones that decide rights); returns them. Audited."""
        for k in list(set_labels) + list(remove):
            if not k or "=" in k:
                raise InvalidInput(f"a label key must not be empty or contain '=': {k!r}")
        with self._write() as conn:
            row = conn.execute(select(agents.c.admin_labels).where(agents.c.agent_id == agent_id)).first()
            if row is None:
                raise NotFound(f"no agent {agent_id}")
            labels = dict(row.admin_labels or {})
            before = dict(labels)
            labels.update({k: str(v) for k, v in set_labels.items()})
            for k in remove:
                labels.pop(k, None)
            conn.execute(update(agents).where(agents.c.agent_id == agent_id).values(admin_labels=labels))
            audit.record(conn, now, actor, "agent.label", f"agent:{agent_id}", "collector-side labels changed",
                         {"before": before, "after": labels})
            return labels
