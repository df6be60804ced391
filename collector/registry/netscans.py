"""Network scan jobs in the registry (table: collector/registry/models/netscans.py).

The decisions (limits, defaults, state changes, deadlines) are collector/domain/netscan.py's pure
functions; here they meet the database. Every method is one transaction; a scan's start is
audited in the transaction that stores it (``netscan.start``), and so are its end
(``netscan.finish`` by the agent) and a deadline failure (``netscan.fail``).

Commands reach the agent on its Connect stream (collector/api/agents.py): ``claim_for_agent``
moves queued scans to ``sent`` with one conditional UPDATE per scan, so of several collectors
exactly one sends a queued scan; when a stream (re)connects, the scans the agent had been
sent and not finished are sent again (the agent answers a finished scan_id with its final
progress).

The endpoints a scan finds arrive as locations of store type ``endpoint`` in the agent's
inventory reports: ``endpoint.scan_id`` when the scan recorded the location first,
``endpoint.scan_ids`` for every scan that found it (an endpoint the agent already probes as a
local listener or a configured target keeps that source). A scan's result (:meth:`get_scan`)
lists every present endpoint location of its agent that names the scan in either (:func:`found_by`).
Use it as ``Registry.netscans`` or ``NetscanStore(engine)``.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections import Counter
from typing import Any, Sequence

from sqlalchemy import Connection, Engine, insert, select, update

from collector.domain import netscan as d
from collector.errors import InvalidInput, NotFound, PermissionDenied
from collector.registry import audit, db
from collector.registry.lookup import resolve_id
from collector.registry.models.agents import agents
from collector.registry.models.inventory import certificates, locations
from collector.registry.models.netscans import network_scans
from collector.registry.sql import chunked
from collector.registry.types import NetworkScanView, ScanEndpointView

#: the store type of the locations a network scan finds (one per endpoint and chain position)
ENDPOINT = "endpoint"


#: scan ids read from one endpoint location (the agent keeps 16 scans' results; the rest is noise)
MAX_SCAN_IDS = 64


def found_by(endpoint: Any) -> set[str]:
    """The scans an endpoint location's facts (agent-reported JSON: untrusted) say found it."""
    if not isinstance(endpoint, dict):
        return set()
    out = set()
    first = endpoint.get("scan_id")
    if isinstance(first, str) and first:
        out.add(first)
    more = endpoint.get("scan_ids")
    if isinstance(more, list):
        out.update(s for s in more[:MAX_SCAN_IDS] if isinstance(s, str) and s)
    return out


def endpoint_host(path: str) -> str:
    """The host of an endpoint location's path ("host:port", "[v6]:port")."""
    if path.startswith("["):
        return path[1:path.find("]")] if "]" in path else path
    return path.rpartition(":")[0] or path


class NetscanStore(db.Connections):
    """Network scans on the registry's database (SQLite or PostgreSQL)."""

    MAX_LIMIT = 1000

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- plumbing ------------------------------------------------------------------------

    @staticmethod
    def _select() -> Any:
        return select(network_scans, agents.c.hostname).join(agents, agents.c.agent_id == network_scans.c.agent_id)

    def _views(self, conn: Connection, rows: Sequence[Any]) -> list[NetworkScanView]:
        counts = self._endpoint_counts(conn, sorted({r.agent_id for r in rows}))
        return [_view(r, counts.get((r.agent_id, r.scan_id), 0)) for r in rows]

    @staticmethod
    def _endpoint_counts(conn: Connection, agent_ids: Sequence[str]) -> Counter[tuple[str, str]]:
        """Present endpoint locations (the leaf of each) per (agent, scan_id) that found them, for these
        agents: an agent's locations count only for its own scans."""
        lc = locations.c
        out: Counter[tuple[str, str]] = Counter()
        for part in chunked(list(agent_ids)):
            for agent_id, ep in conn.execute(
                select(lc.agent_id, lc.endpoint).where(lc.agent_id.in_(list(part)), lc.store_type == ENDPOINT,
                                                       lc.status == "present", lc.chain_index == 0)
            ):
                for sid in found_by(ep):
                    out[(agent_id, sid)] += 1
        return out

    @staticmethod
    def _scan_endpoints(conn: Connection, agent_id: str, scan_id: str) -> tuple[ScanEndpointView, ...]:
        """Every present endpoint location (the leaf) of the scan's agent that the scan found, by
        endpoint, then server name."""
        lc, cc = locations.c, certificates.c
        out = []
        for path, alias, ep, fp, subject, not_after in conn.execute(
            select(lc.path, lc.alias, lc.endpoint, lc.fingerprint, cc.subject, cc.not_after)
            .join(certificates, cc.fingerprint == lc.fingerprint)
            .where(lc.agent_id == agent_id, lc.store_type == ENDPOINT, lc.status == "present", lc.chain_index == 0)
        ):
            if scan_id not in found_by(ep):
                continue
            out.append(ScanEndpointView(
                endpoint=path, sni=alias, starttls=str(ep.get("starttls") or ""), protocol=str(ep.get("protocol") or ""),
                fingerprint=fp, subject=subject, not_after=not_after,
                chain_valid=bool(ep.get("chain_valid")), source=str(ep.get("source") or "")))
        return tuple(sorted(out, key=lambda e: (e.endpoint, e.sni)))

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
            agent_id = resolve_id(conn, agents.c.agent_id, agent_ref, "agent")
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
        """One scan, with the TLS endpoints it found (:func:`found_by`) as the registry holds them."""
        with self._read() as conn:
            scan_id = resolve_id(conn, network_scans.c.scan_id, scan_ref, "network scan")
            v = self._views(conn, conn.execute(self._select().where(network_scans.c.scan_id == scan_id)).all())[0]
            return dataclasses.replace(v, endpoints=self._scan_endpoints(conn, v.agent_id, v.scan_id))

    def list_scans(self, agent_ref: str = "", limit: int = 100) -> list[NetworkScanView]:
        """Newest first."""
        if limit < 1:
            raise InvalidInput(f"limit must be at least 1, not {limit}")
        s = network_scans.c
        with self._read() as conn:
            stmt = self._select()
            if agent_ref:
                stmt = stmt.where(s.agent_id == resolve_id(conn, agents.c.agent_id, agent_ref, "agent"))
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


__all__ = ["NetscanStore", "ENDPOINT", "endpoint_host", "found_by"]
