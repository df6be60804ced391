"""What the agents found about serving: which locations' processes listen where, and stale
services (a process that serves another certificate than its file holds, e.g. not reloaded
after a renewal), from the locations of their inventory reports.

``ServingStore`` only reads. Stale services are listed along ``ix_locations_stale_since``,
oldest episode first, a page at a time; ``stale_with_owners`` resolves each one's owner and
service through an ``OwnerStore`` (collector/domain/ownership.py decides).

Use it as ``Registry.serving`` or ``ServingStore(engine)``.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from typing import Any, Iterator

from sqlalchemy import Engine, and_, or_, select

from collector.domain import serving as srv
from collector.domain import ownership as own
from collector.registry import db
from collector.registry.lookup import resolve_id
from collector.registry.models.agents import agents
from collector.registry.models.inventory import certificates, locations
from collector.registry.netscans import ENDPOINT
from collector.registry.owners import OwnerStore
from collector.registry.types import SanView, StaleView


class ServingStore(db.Connections):
    """Serving facts and stale services on the registry's database (SQLite or PostgreSQL)."""

    #: rows per page when streaming stale services
    PAGE_SIZE = 500

    def __init__(self, engine: Engine, owners: OwnerStore | None = None) -> None:
        self.engine = engine
        self.owners = owners or OwnerStore(engine)

    def stale_with_owners(self, agent_ref: str = "", team: str | None = None, page: int = 200) -> Iterator[StaleView]:
        """:meth:`list_stale` with each location's owner and service resolved (collector/domain/ownership.py:
        explicit assignments, rules, owner labels), only the team's when ``team`` is given (role owner)."""
        owners = self.owners
        resolver = own.Resolver(owners.list_rules())
        it = self.list_stale(agent_ref)
        while True:
            chunk = list(itertools.islice(it, page))
            if not chunk:
                return
            explicit = owners.explicit_for([_AsCert(v) for v in chunk])
            for v in chunk:
                a = resolver(own.facts_of(v), v, explicit)
                if team is not None and a.owner != team:
                    continue
                yield dataclasses.replace(v, owner=a.owner or "", service=a.service or "")

    def serving_locations(self, agent_id: str, endpoint: str) -> list[tuple[str, str, str]]:
        """(store_type, path, alias) of the agent's present file or store locations whose process
        listens on ``endpoint`` ("host:port"), as the agent linked them (ProcessLink.listen)."""
        lc = locations.c
        out: set[tuple[str, str, str]] = set()
        with self._read() as conn:
            for st, path, alias, procs in conn.execute(
                select(lc.store_type, lc.path, lc.alias, lc.processes).where(
                    lc.agent_id == agent_id, lc.status == "present", lc.store_type != ENDPOINT,
                    lc.processes.is_not(None))
            ):
                if any(srv.listens_on(p.get("listen") or (), endpoint) for p in (procs or ())):
                    out.add((st, path, alias))
        return sorted(out)

    # -- stale services --------------------------------------------------------------------

    def list_stale(self, agent_ref: str = "") -> Iterator[StaleView]:
        """Present locations flagged stale, oldest episode first, streamed a page at a time."""
        lc, a, c = locations.c, agents.c, certificates.c
        agent_id = ""
        if agent_ref:
            with self._read() as conn:
                agent_id = resolve_id(conn, a.agent_id, agent_ref, "agent")
        after: tuple[dt.datetime, int] | None = None
        while True:
            # stale_since is set exactly while a location is stale: its index finds the few stale ones
            stmt = (
                select(lc.id, lc.agent_id, a.hostname, lc.store_type, lc.path, lc.alias, lc.chain_index, lc.labels,
                       lc.fingerprint, lc.stale_served_fingerprint, lc.stale_endpoint, lc.stale_detail,
                       lc.stale_since, lc.processes, c.subject, c.issuer, c.sans)
                .join(agents, a.agent_id == lc.agent_id).join(certificates, c.fingerprint == lc.fingerprint)
                .where(lc.stale_since.is_not(None), lc.stale_served_fingerprint.is_not(None), lc.status == "present")
                .order_by(lc.stale_since, lc.id).limit(self.PAGE_SIZE)
            )
            if after is not None:
                stmt = stmt.where(or_(lc.stale_since > after[0], and_(lc.stale_since == after[0], lc.id > after[1])))
            if agent_id:
                stmt = stmt.where(lc.agent_id == agent_id)
            with self._read() as conn:
                rows = conn.execute(stmt).all()
            yield from (stale_view(r) for r in rows)
            if len(rows) < self.PAGE_SIZE:
                return
            after = (rows[-1].stale_since, rows[-1].id)


class _AsCert:
    """A stale location as the one-location certificate OwnerStore.explicit_for looks at."""

    def __init__(self, v: StaleView) -> None:
        self.fingerprint = v.file_fingerprint
        self.locations = (v,)


def stale_view(r: Any) -> StaleView:
    detail = r.stale_detail or {}
    return StaleView(
        agent_id=r.agent_id, hostname=r.hostname, store_type=r.store_type, path=r.path, alias=r.alias,
        chain_index=r.chain_index, labels=dict(r.labels or {}), file_fingerprint=r.fingerprint,
        served_fingerprint=r.stale_served_fingerprint, endpoint=r.stale_endpoint or "",
        process_name=str(detail.get("process_name") or ""), pid=int(detail.get("pid") or 0), since=r.stale_since,
        processes=tuple(r.processes or ()), subject=r.subject, issuer=r.issuer,
        sans=tuple(SanView(type=t, value=v) for t, v in (r.sans or ())), location_id=r.id,
    )


__all__ = ["ServingStore", "stale_view"]
