"""The registry: the collector's only state, as one ``Registry`` that composes the stores.

``Registry.open(url)`` connects (SQLite or PostgreSQL), migrates the schema to the newest
revision and builds one store per concern on the same engine:

    registry.certificates   certificates and their locations (collector/registry/certificates.py)
    registry.agents         enrollment tokens, agents, their identities (agents.py)
    registry.admins         admin identities (admins.py)
    registry.jobs           renewal jobs (jobs.py)
    registry.owners         owners, assignment rules, explicit assignments (owners.py)
    registry.policies       the policy, exceptions, violations (policies.py)
    registry.netscans       network scans (netscans.py)
    registry.serving        serving facts and stale services (serving.py)
    registry.leases         scheduler leases (leases.py)
    registry.audit          the hash-chained audit trail (audit.py)
    registry.authority      name grants, host allows, agents' recorded names and labels (authority.py)
    registry.approvals      jobs waiting for an approver, and the decisions (approvals.py)
    registry.issuer_state   the internal CAs' hierarchies, serial logs, revocations, CRLs (issuer_state.py)

``registry.discovery`` is the name callers knew for network scans and stale services
together: one object with the methods of both stores.

The methods below forward to the store that holds them, so that callers keep saying
``registry.get_certificate(...)``; storing an agent's report is ``begin_report`` (one
transaction over several calls: collector/registry/ingest.py). Every store takes and
returns the plain records of ``collector.registry.types``, never ORM objects, holds no
session between calls, and takes the current time as ``now`` where time matters, so that a
test or a replica can inject its clock. Methods are synchronous (callers run them in a thread).

This module only composes: no store imports it.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterator

from sqlalchemy import Engine

from collector.errors import DatabaseUnavailable
from collector.registry import audit, db
from collector.registry.admins import AdminStore
from collector.registry.agents import AgentStore
from collector.registry.approvals import ApprovalStore
from collector.registry.authority import AuthorityStore
from collector.registry.audit import AuditLog
from collector.registry.certificates import CertificateStore
from collector.registry.ingest import ReportTxn, begin_report, record_install
from collector.registry.issuer_state import IssuerStateStore
from collector.registry.jobs import JobStore
from collector.registry.leases import LeaseStore
from collector.registry.netscans import NetscanStore
from collector.registry.owners import OwnerStore
from collector.registry.policies import PolicyStore
from collector.registry.serving import ServingStore
from collector.registry.types import (
    AdminIdentityView,
    AgentView,
    CertFilter,
    CertificateView,
    HostFacts,
    LocationKeyIn,
    ReportHeaderIn,
    ScanErrorView,
)


class DiscoveryStore(NetscanStore, ServingStore):
    """``registry.discovery``: network scans (NetscanStore) and serving facts (ServingStore) in
    one object, as callers knew them. New code says ``registry.netscans`` or ``registry.serving``."""

    def __init__(self, engine: Engine, owners: OwnerStore | None = None) -> None:
        ServingStore.__init__(self, engine, owners)


class Registry:
    """The certificate registry on SQLite or PostgreSQL: the stores on one engine."""

    #: how long an agent's previous identity stays valid after a renewal
    IDENTITY_OVERLAP = AgentStore.IDENTITY_OVERLAP
    #: rows per page for callers that stream the registry in pages (the stores page on their own)
    PAGE_SIZE = 500

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.certificates = CertificateStore(engine)
        self.agents = AgentStore(engine)
        self.admins = AdminStore(engine)
        self.jobs = JobStore(engine)
        self.owners = OwnerStore(engine, self.certificates)
        self.policies = PolicyStore(engine, self.certificates, self.owners, self.agents)
        self.netscans = NetscanStore(engine)
        self.serving = ServingStore(engine, self.owners)
        self.discovery = DiscoveryStore(engine, self.owners)
        self.leases = LeaseStore(engine)
        self.audit = AuditLog(engine)
        self.authority = AuthorityStore(engine)
        self.approvals = ApprovalStore(engine, self.jobs)
        self.issuer_state = IssuerStateStore(engine)

    @classmethod
    def open(cls, url: str, **engine_kwargs: Any) -> Registry:
        """Connect to ``url`` (sqlite:///path or postgresql+psycopg://...) and migrate to the newest schema."""
        engine = db.create_registry_engine(url, **engine_kwargs)
        try:
            db.upgrade(engine)
        except DatabaseUnavailable as e:   # at start-up: say which database and why
            engine.dispose()
            cause = str(e.__cause__ or "").strip().splitlines()[0][:200] if e.__cause__ else ""
            where = engine.url.render_as_string(hide_password=True)
            raise DatabaseUnavailable(f"cannot open the registry database {where}" + (f": {cause}" if cause else "")) from None
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def use_audit_key(self, key: bytes, now: dt.datetime, cut_over: bool = True) -> int | None:
        """From now on, audit events are keyed with ``key`` (kept outside the database). With
        ``cut_over`` (the first time this collector has the key), records the cut-over event unless
        the chain has one (collector/registry/audit.py); its seq, or None."""
        self.engine.update_execution_options(**{audit.KEY_OPTION: key})
        return self.audit.cut_over(now) if cut_over else None

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # -- reports (collector/registry/ingest.py) ------------------------------------------------

    def begin_report(self, agent_id: str, header: ReportHeaderIn, now: dt.datetime) -> ReportTxn:
        """Start storing a report; the returned transaction must be finished or aborted."""
        return begin_report(self.engine, agent_id, header, now)

    def record_install(self, agent_id: str, key: LocationKeyIn, certificate_der: bytes, now: dt.datetime) -> bool:
        """A verified install: the new certificate at its location now (collector/registry/ingest.py)."""
        return record_install(self.engine, agent_id, key, certificate_der, now)

    # -- certificates (CertificateStore) -------------------------------------------------------

    def get_certificate(self, fingerprint_prefix: str, with_der: bool = True) -> CertificateView:
        return self.certificates.get_certificate(fingerprint_prefix, with_der)

    def list_certificates(self, flt: CertFilter, now: dt.datetime | None = None) -> Iterator[CertificateView]:
        return self.certificates.list_certificates(flt, now)

    # -- enrollment and agents (AgentStore) ----------------------------------------------------

    def create_token(self, token_hash: str, expires_at: dt.datetime, note: str, now: dt.datetime,
                     actor: str = "collector", bound_host: str = "") -> None:
        self.agents.create_token(token_hash, expires_at, note, now, actor, bound_host)

    def consume_token(self, token_hash: str, agent_id: str, now: dt.datetime) -> None:
        self.agents.consume_token(token_hash, agent_id, now)

    def enroll_agent(self, token_hash: str, agent_id: str, host: HostFacts, identity_serial: str,
                     identity_not_after: dt.datetime | None, now: dt.datetime) -> None:
        self.agents.enroll_agent(token_hash, agent_id, host, identity_serial, identity_not_after, now)

    def get_agent(self, agent_id: str) -> AgentView:
        return self.agents.get_agent(agent_id)

    def list_agents(self) -> Iterator[AgentView]:
        return self.agents.list_agents()

    def agent_identity_valid(self, agent_id: str, serial: str, now: dt.datetime | None = None) -> bool:
        return self.agents.agent_identity_valid(agent_id, serial, now)

    def update_agent_identity(self, agent_id: str, serial: str, not_after: dt.datetime, now: dt.datetime) -> None:
        self.agents.update_agent_identity(agent_id, serial, not_after, now)

    def revoke_agent(self, agent_id: str, reason: str, now: dt.datetime, actor: str = "collector") -> bool:
        return self.agents.revoke_agent(agent_id, reason, now, actor)

    def request_resync(self, agent_id: str | None, now: dt.datetime | None = None, actor: str = "collector") -> int:
        return self.agents.request_resync(agent_id, now, actor)

    def touch_agent(self, agent_id: str, host: HostFacts, now: dt.datetime) -> None:
        self.agents.touch_agent(agent_id, host, now)

    def list_scan_errors(self, agent_id: str) -> list[ScanErrorView]:
        return self.agents.list_scan_errors(agent_id)

    # -- admin identities (AdminStore) ---------------------------------------------------------

    def record_admin_identity(self, serial: str, name: str, role: str, not_after: dt.datetime,
                              now: dt.datetime, actor: str = "collector", team: str | None = None) -> None:
        self.admins.record_admin_identity(serial, name, role, not_after, now, actor, team)

    def admin_identity(self, serial: str, now: dt.datetime | None = None) -> AdminIdentityView | None:
        return self.admins.admin_identity(serial, now)

    def revoke_admin_identity(self, serial: str, now: dt.datetime, actor: str = "collector") -> bool:
        return self.admins.revoke_admin_identity(serial, now, actor)

    # -- audit of things that change nothing else (AuditLog) ----------------------------------

    def record_certificate_revocation(self, fingerprint: str, issuer: str, reason: str, actor: str,
                                      now: dt.datetime) -> None:
        self.audit.record_certificate_revocation(fingerprint, issuer, reason, actor, now)

    def record_refused_call(self, actor: str, method: str, permission: str, why: str,
                            now: dt.datetime | None = None, detail: dict[str, Any] | None = None) -> None:
        self.audit.record_refused_call(actor, method, permission, why, now, detail)


__all__ = ["Registry", "DiscoveryStore"]
