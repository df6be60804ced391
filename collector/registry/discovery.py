"""Network scan jobs and stale services in the registry (tables: collector/registry/models/netscans.py).

The decisions (limits, defaults, state changes, deadlines) are collector/domain/netscan.py's pure
functions; here they meet the database. Every method is one transaction; a scan's start is
audited in the transaction that stores it (``netscan.start``), and so are its end
(``netscan.finish`` by the agent) and a deadline failure (``netscan.fail``).

Commands reach the agent on its Connect stream (collector/api/agents.py): ``claim_for_agent``
moves queued scans to ``sent`` with one conditional UPDATE per scan, so of several collectors
exactly one sends a queued scan; when a stream (re)connects, the scans the agent had been
sent and not finished are sent again (the agent answers a finished scan_id with its final
progress).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import re
import uuid
from collections import Counter
from typing import Any, Iterator, Sequence

from sqlalchemy import Connection, Engine, and_, insert, or_, select, update

from collector.domain import netscan as d
from collector.domain import ownership as own
from collector.errors import Ambiguous, InvalidInput, NotFound, PermissionDenied
from collector.registry import audit, db
from collector.registry.ingest import chunked
from collector.registry.models.agents import agents
from collector.registry.models.inventory import certificates, locations
from collector.registry.models.netscans import network_scans
from collector.registry.types import NetworkScanView, SanView, StaleView

MIN_PREFIX = 6
_ID_CHARS = re.compile(r"[0-9A-Za-z._:-]+")
ENDPOINT = "endpoint"


def endpoint_host(path: str) -> str:
    """The host of an endpoint location's path ("host:port", "[v6]:port")."""
    if path.startswith("["):
        return path[1:path.find("]")] if "]" in path else path
    return path.rpartition(":")[0] or path


class DiscoveryStore(db.Connections):
    """Network scans and stale services on the registry's database (SQLite or PostgreSQL)."""

    MAX_LIMIT = 1000
    PAGE_SIZE = 500

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- plumbing ------------------------------------------------------------------------

    @staticmethod
    def _select() -> Any:
        return select(network_scans, agents.c.hostname).join(agents, agents.c.agent_id == network_scans.c.agent_id)

    def _views(self, conn: Connection, rows: Sequence[Any]) -> list[NetworkScanView]:
        counts = self._endpoint_counts(conn, sorted({r.agent_id for r in rows}))
        return [_view(r, counts.get(r.scan_id, 0)) for r in rows]

    @staticmethod
    def _endpoint_counts(conn: Connection, agent_ids: Sequence[str]) -> Counter[str]:
        """Present endpoint locations (the leaf of each) per scan_id, for these agents."""
        lc = locations.c
        out: Counter[str] = Counter()
        for part in chunked(list(agent_ids)):
            for (ep,) in conn.execute(
                select(lc.endpoint).where(lc.agent_id.in_(list(part)), lc.store_type == ENDPOINT,
                                          lc.status == "present", lc.chain_index == 0)
            ):
                sid = (ep or {}).get("scan_id") or ""
                if sid:
                    out[sid] += 1
        return out

    @staticmethod
    def _resolve(conn: Connection, column: Any, value: str, what: str) -> str:
        ref = (value or "").strip()
        if not ref:
            raise InvalidInput(f"name the {what}")
        if not _ID_CHARS.fullmatch(ref) or len(ref) > 64:
            raise NotFound(f"no {what} {ref[:80]!r}")
        exact = conn.execute(select(column).where(column == ref)).scalars().first()
        if exact is not None:
            return exact
        if len(ref) < MIN_PREFIX:
            raise InvalidInput(f"give at least {MIN_PREFIX} characters of the {what} id")
        found = [f for f in conn.execute(
            select(column).where(column >= ref, column < ref + "g").order_by(column).limit(2)).scalars()
            if f.startswith(ref)]
        if not found:
            raise NotFound(f"no {what} {ref}")
        if len(found) > 1:
            raise Ambiguous(f"{what} id prefix {ref!r} matches several; give more characters")
        return found[0]

    def _lock(self, conn: Connection, scan_id: str) -> Any:
        stmt = select(network_scans).where(network_scans.c.scan_id == scan_id)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        row = conn.execute(stmt).first()
        if row is None:
            raise NotFound(f"no network scan {scan_id}")
        return row

    # -- starting ------------------------------------------------------------------------

    def start_scan(self, agent_ref: str, plan: d.ScanPlan, requested_by: str, reason: str,
                   now: dt.datetime) -> NetworkScanView:
        """Queue a scan for an active agent (its id or a unique prefix); audited as ``netscan.start``.

        The server names sent are the plan's, then those the registry knows for endpoints in the
        targets on this agent (their certificates' DNS names and the SNI they were found with)."""
        scan_id = str(uuid.uuid4())
        with self._write() as conn:
            agent_id = self._resolve(conn, agents.c.agent_id, agent_ref, "agent")
            row = conn.execute(select(agents.c.status, agents.c.hostname).where(agents.c.agent_id == agent_id)).first()
            if row.status != "active":
                raise InvalidInput(f"agent {agent_id} is {row.status}; it cannot run a scan")
            names = d.sni_list([*plan.sni_names, *self._known_names(conn, agent_id, plan.targets)])
            conn.execute(insert(network_scans).values(
                scan_id=scan_id, agent_id=agent_id, targets=list(plan.targets), ports=list(plan.ports),
                rate_per_second=plan.rate_per_second, timeout_seconds=plan.timeout_seconds,
                concurrency=plan.concurrency, starttls={str(p): v for p, v in sorted(plan.starttls.items())},
                sni_names=list(names), state=d.QUEUED, targets_total=plan.targets_total, probed=0, tls_found=0,
                errors=0, reason=reason or "", requested_by=requested_by, created_at=now, updated_at=now,
                finished_at=None,
            ))
            audit.record(conn, now, requested_by, "netscan.start", f"agent:{agent_id}", reason or "",
                         {"scan_id": scan_id, "hostname": row.hostname, "targets": list(plan.targets),
                          "ports": list(plan.ports), "addresses": plan.addresses,
                          "targets_total": plan.targets_total, "rate_per_second": plan.rate_per_second,
                          "timeout_seconds": plan.timeout_seconds, "concurrency": plan.concurrency,
                          "starttls": {str(p): v for p, v in sorted(plan.starttls.items())},
                          "sni_names": list(names)})
            return self._views(conn, conn.execute(self._select().where(network_scans.c.scan_id == scan_id)).all())[0]

    @staticmethod
    def _known_names(conn: Connection, agent_id: str, targets: Sequence[str]) -> list[str]:
        parsed = [d.parse_target(t) for t in targets]
        lc = locations.c
        fps: set[str] = set()
        names: list[str] = []
        for path, alias, fp in conn.execute(
            select(lc.path, lc.alias, lc.fingerprint).where(
                lc.agent_id == agent_id, lc.store_type == ENDPOINT, lc.chain_index == 0, lc.status == "present")
        ):
            host = endpoint_host(path)
            if any(t.contains(host) for t in parsed):
                fps.add(fp)
                if alias:
                    names.append(alias)
        for part in chunked(sorted(fps)):
            for (sans,) in conn.execute(select(certificates.c.sans).where(certificates.c.fingerprint.in_(list(part)))):
                names.extend(v for t, v in (sans or ()) if t == "dns")
        return names

    # -- reading -------------------------------------------------------------------------

    def get_scan(self, scan_ref: str) -> NetworkScanView:
        with self._read() as conn:
            scan_id = self._resolve(conn, network_scans.c.scan_id, scan_ref, "network scan")
            return self._views(conn, conn.execute(self._select().where(network_scans.c.scan_id == scan_id)).all())[0]

    def list_scans(self, agent_ref: str = "", limit: int = 100) -> list[NetworkScanView]:
        """Newest first."""
        if limit < 1:
            raise InvalidInput(f"limit must be at least 1, not {limit}")
        s = network_scans.c
        with self._read() as conn:
            stmt = self._select()
            if agent_ref:
                stmt = stmt.where(s.agent_id == self._resolve(conn, agents.c.agent_id, agent_ref, "agent"))
            rows = conn.execute(stmt.order_by(s.created_at.desc(), s.scan_id).limit(min(limit, self.MAX_LIMIT))).all()
            return self._views(conn, rows)

    # -- the agent's stream ------------------------------------------------------------------

    def claim_for_agent(self, agent_id: str, now: dt.datetime, resend: bool = False) -> list[NetworkScanView]:
        """The scans to send this agent now: queued ones (each moved to ``sent`` by exactly one
        caller) and, with ``resend`` (a stream that just connected), those it was sent and has
        not finished (a ``sent`` one's answer deadline starts again)."""
        s = network_scans.c
        states = [d.QUEUED, d.SENT, d.RUNNING] if resend else [d.QUEUED]
        out: list[str] = []
        find = (select(s.scan_id, s.state).where(s.agent_id == agent_id, s.state.in_(states))
                .order_by(s.created_at, s.scan_id).limit(self.MAX_LIMIT))
        with self._read() as conn:     # every stream looks every few seconds: write only when there is work
            if conn.execute(find).first() is None:
                return []
        with self._write() as conn:
            rows = conn.execute(find).all()
            for scan_id, state in rows:
                if state in (d.QUEUED, d.SENT):
                    res = conn.execute(update(network_scans).where(s.scan_id == scan_id, s.state == state)
                                       .values(state=d.SENT, updated_at=now))
                    if res.rowcount != 1:
                        continue
                out.append(scan_id)
            if not out:
                return []
            return self._views(conn, conn.execute(
                self._select().where(s.scan_id.in_(out)).order_by(s.created_at, s.scan_id)).all())

    def record_progress(self, agent_id: str, scan_id: str, p: d.Progress, now: dt.datetime) -> NetworkScanView | None:
        """Apply the agent's progress report; None when it changed nothing (a finished scan)."""
        with self._write() as conn:
            row = self._lock(conn, scan_id)
            if row.agent_id != agent_id:
                raise PermissionDenied(f"network scan {scan_id} belongs to another agent")
            ch = d.progress_state(row.state, (row.targets_total, row.probed, row.tls_found, row.errors), row.reason, p)
            if ch is None:
                return None
            conn.execute(update(network_scans).where(network_scans.c.scan_id == scan_id).values(
                state=ch.state, targets_total=ch.targets_total, probed=ch.probed, tls_found=ch.tls_found,
                errors=ch.errors, reason=ch.reason[:2000], updated_at=now,
                finished_at=now if ch.finished else None))
            if ch.finished:
                audit.record(conn, now, f"agent:{agent_id}", "netscan.finish", f"agent:{agent_id}", ch.reason,
                             {"scan_id": scan_id, "state": ch.state, "targets_total": ch.targets_total,
                              "probed": ch.probed, "tls_found": ch.tls_found, "errors": ch.errors})
            return self._views(conn, conn.execute(self._select().where(network_scans.c.scan_id == scan_id)).all())[0]

    def fail_overdue(self, now: dt.datetime) -> list[NetworkScanView]:
        """Mark unfinished scans past their deadline failed (collector.domain.netscan.overdue); audited."""
        s = network_scans.c
        failed: list[str] = []
        find = (select(s.scan_id, s.agent_id, s.state, s.created_at, s.updated_at)
                .where(s.state.in_(list(d.UNFINISHED))).order_by(s.updated_at).limit(self.MAX_LIMIT))
        with self._read() as conn:
            if not any(d.overdue(r.state, r.created_at, r.updated_at, now) for r in conn.execute(find)):
                return []
        with self._write() as conn:
            rows = conn.execute(find).all()
            for r in rows:
                why = d.overdue(r.state, r.created_at, r.updated_at, now)
                if why is None:
                    continue
                res = conn.execute(update(network_scans).where(
                    s.scan_id == r.scan_id, s.state == r.state, s.updated_at == r.updated_at,
                ).values(state=d.FAILED, reason=why, updated_at=now, finished_at=now))
                if res.rowcount == 1:
                    audit.record(conn, now, "collector", "netscan.fail", f"agent:{r.agent_id}", why,
                                 {"scan_id": r.scan_id, "was": r.state})
                    failed.append(r.scan_id)
            if not failed:
                return []
            return self._views(conn, conn.execute(self._select().where(s.scan_id.in_(failed))).all())

    def stale_with_owners(self, agent_ref: str = "", team: str | None = None, page: int = 200) -> Iterator[StaleView]:
        """:meth:`list_stale` with each location's owner and service resolved (collector/domain/ownership.py:
        explicit assignments, rules, owner labels), only the team's when ``team`` is given (role owner)."""
        from collector.registry.owners import OwnerStore

        owners = OwnerStore(self.engine)
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
                if any(d.listens_on(p.get("listen") or (), endpoint) for p in (procs or ())):
                    out.add((st, path, alias))
        return sorted(out)

    # -- stale services --------------------------------------------------------------------

    def list_stale(self, agent_ref: str = "") -> Iterator[StaleView]:
        """Present locations flagged stale, oldest episode first, streamed a page at a time."""
        lc, a, c = locations.c, agents.c, certificates.c
        agent_id = ""
        if agent_ref:
            with self._read() as conn:
                agent_id = self._resolve(conn, a.agent_id, agent_ref, "agent")
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


def _view(r: Any, endpoints: int) -> NetworkScanView:
    return NetworkScanView(
        scan_id=r.scan_id, agent_id=r.agent_id, hostname=r.hostname, targets=tuple(r.targets or ()),
        ports=tuple(int(p) for p in (r.ports or ())), rate_per_second=r.rate_per_second,
        timeout_seconds=r.timeout_seconds, concurrency=r.concurrency,
        starttls={int(k): v for k, v in (r.starttls or {}).items()}, sni_names=tuple(r.sni_names or ()),
        state=r.state, targets_total=r.targets_total, probed=r.probed, tls_found=r.tls_found, errors=r.errors,
        reason=r.reason, requested_by=r.requested_by, created_at=r.created_at, updated_at=r.updated_at,
        finished_at=r.finished_at, endpoints_in_registry=endpoints,
    )

