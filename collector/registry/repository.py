"""The registry: the collector's only state, behind one small repository.

``Registry`` takes and returns the plain records of ``collector.registry.types``,
never ORM objects, and holds no session between calls. Methods are synchronous
(callers run them in a thread) and take the current time as ``now`` where time
matters, so that a test or a replica can inject its clock.

Each method is one transaction. Storing a report is a transaction that spans
several calls: see :class:`collector.registry.ingest.ReportTxn`.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Iterator

from sqlalchemy import Connection, Engine, func, insert, literal, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from collector.errors import (
    InvalidInput,
    NotFound,
    PermissionDenied,
    TokenExpired,
    TokenInvalid,
    TokenUsed,
)
from collector.registry import audit, db
from collector.registry.lookup import resolve_fingerprint
from collector.registry.ingest import ReportTxn, chunked, dialect_insert, host_values
from collector.registry.jobs import JobStore
from collector.registry.owners import OwnerStore
from collector.registry.models.admins import admin_identities
from collector.registry.models.agents import agents, enrollment_tokens
from collector.registry.models.inventory import certificates, locations, scan_errors
from collector.registry.types import (
    AdminIdentityView,
    AgentView,
    CertFilter,
    CertificateView,
    HostFacts,
    LocationView,
    ReportHeaderIn,
    SanView,
    ScanErrorView,
)

if TYPE_CHECKING:
    from collector.registry.discovery import DiscoveryStore
    from collector.registry.leases import LeaseStore
    from collector.registry.policies import PolicyStore

UTC = dt.timezone.utc
#: hex digits of a token's hash named in the audit trail
TOKEN_PREFIX = 12


def _utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


def normalize_serial(serial: str) -> str:
    """Serials compare as lower-case hex without separators or leading zeros."""
    s = serial.strip().lower().replace(":", "")
    if s.startswith("0x"):
        s = s[2:]
    return s.lstrip("0") or "0"


class Registry(db.Connections):
    """The certificate registry on SQLite or PostgreSQL."""

    #: how long an agent's previous identity stays valid after a renewal
    IDENTITY_OVERLAP = dt.timedelta(hours=24)
    #: rows per page when streaming certificates or agents
    PAGE_SIZE = 500

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, **engine_kwargs: Any) -> Registry:
        """Connect to ``url`` (sqlite:///path or postgresql+psycopg://...) and migrate to the newest schema."""
        engine = db.create_registry_engine(url, **engine_kwargs)
        try:
            db.upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def jobs(self) -> JobStore:
        """Renewal jobs on this registry's database (see collector.registry.jobs)."""
        return JobStore(self.engine)

    @property
    def leases(self) -> "LeaseStore":
        """Scheduler leases: each scheduled run once across collectors (see collector.registry.leases)."""
        from collector.registry.leases import LeaseStore

        return LeaseStore(self.engine)

    @property
    def owners(self) -> OwnerStore:
        """Owners, assignment rules and explicit assignments (see collector.registry.owners)."""
        return OwnerStore(self.engine)

    @property
    def policies(self) -> "PolicyStore":
        """Policy document, violations and exceptions (see collector.registry.policies)."""
        from collector.registry.policies import PolicyStore

        return PolicyStore(self.engine)

    @property
    def discovery(self) -> "DiscoveryStore":
        """Network scan jobs and stale services (see collector.registry.discovery)."""
        from collector.registry.discovery import DiscoveryStore

        return DiscoveryStore(self.engine)

    @property
    def audit(self) -> audit.AuditLog:
        """The hash-chained audit trail (see collector.registry.audit)."""
        return audit.AuditLog(self.engine)

    def _lock_agent(self, conn: Connection, agent_id: str) -> Any:
        stmt = select(agents).where(agents.c.agent_id == agent_id)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        return conn.execute(stmt).first()

    # -- enrollment tokens ---------------------------------------------------------

    def create_token(self, token_hash: str, expires_at: dt.datetime, note: str, now: dt.datetime,
                     actor: str = "collector") -> None:
        """Record a single-use enrollment token by the SHA-256 hex of the token (audited by a
        prefix of that hash, never the token)."""
        h = token_hash.lower()
        try:
            with self._write() as conn:
                conn.execute(insert(enrollment_tokens).values(
                    token_hash=h, created_at=now, expires_at=expires_at, used_at=None,
                    used_by_agent=None, note=note,
                ))
                audit.record(conn, now, actor, "token.create", f"token:{h[:TOKEN_PREFIX]}", note,
                             {"token_hash_prefix": h[:TOKEN_PREFIX], "expires_at": audit.at_text(expires_at)})
        except IntegrityError:
            raise InvalidInput("that enrollment token already exists") from None

    def consume_token(self, token_hash: str, agent_id: str, now: dt.datetime) -> None:
        """Mark the token used by ``agent_id``; TokenInvalid/TokenUsed/TokenExpired if it cannot be."""
        with self._write() as conn:
            self._consume(conn, token_hash, agent_id, now)
            h = token_hash.lower()
            audit.record(conn, now, f"agent:{agent_id}", "token.use", f"token:{h[:TOKEN_PREFIX]}", "",
                         {"token_hash_prefix": h[:TOKEN_PREFIX], "agent_id": agent_id})

    def _consume(self, conn: Connection, token_hash: str, agent_id: str, now: dt.datetime) -> None:
        t = enrollment_tokens.c
        h = token_hash.lower()
        res = conn.execute(
            update(enrollment_tokens)
            .where(t.token_hash == h, t.used_at.is_(None), t.expires_at > now)
            .values(used_at=now, used_by_agent=agent_id)
        )
        if res.rowcount == 1:
            return
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
                self._consume(conn, token_hash, agent_id, now)
                values = host_values(host)
                values.setdefault("hostname", "")
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
                             {"hostname": values["hostname"], "os": host.os, "agent_version": host.agent_version,
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
                errors=tuple(errors.get(r.agent_id, ())),
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
            row = self._lock_agent(conn, agent_id)
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

    # -- admin identities ------------------------------------------------------------

    def record_admin_identity(self, serial: str, name: str, role: str, not_after: dt.datetime,
                              now: dt.datetime, actor: str = "collector", team: str | None = None) -> None:
        """Record an admin identity. Role ``owner`` needs ``team``, a registered owner (NotFound
        otherwise); the other roles take none (InvalidInput)."""
        from collector.registry.models.owners import owners as owners_table

        s = normalize_serial(serial)
        team = (team or "").strip().lower() or None
        if role == "owner" and team is None:
            raise InvalidInput("role owner needs a team: the owner it acts for (see: certfleet owners list)")
        if role != "owner" and team is not None:
            raise InvalidInput(f"only role owner takes a team, not role {role}")
        with self._write() as conn:
            if team is not None and conn.execute(
                    select(owners_table.c.id).where(owners_table.c.name == team)).first() is None:
                raise NotFound(f"no owner {team!r} for the team of this admin identity; "
                               f"add it first with: certfleet owners add {team} --email ...")
            ins = dialect_insert(conn, admin_identities).values(
                serial=s, name=name, role=role, not_after=not_after, created_at=now, revoked=False, revoked_at=None,
                team=team,
            )
            conn.execute(ins.on_conflict_do_update(
                index_elements=[admin_identities.c.serial],
                set_={"name": ins.excluded.name, "role": ins.excluded.role, "not_after": ins.excluded.not_after,
                      "team": ins.excluded.team},
            ))
            detail = {"name": name, "role": role, "serial": s, "not_after": audit.at_text(not_after)}
            if team is not None:
                detail["team"] = team
            audit.record(conn, now, actor, "admin.init", f"admin:{name}",
                         f"admin identity with role {role}" + (f" for team {team}" if team else ""), detail)

    def admin_identity(self, serial: str, now: dt.datetime | None = None) -> AdminIdentityView | None:
        """(name, role, team) of a known, unrevoked, unexpired admin identity; else None.
        ``team`` is the owner an identity of role ``owner`` acts for (None for other roles)."""
        now = now or _utcnow()
        with self._read() as conn:
            row = conn.execute(
                select(admin_identities).where(admin_identities.c.serial == normalize_serial(serial))
            ).first()
        if row is None or row.revoked or row.not_after <= now:
            return None
        return AdminIdentityView(row.name, row.role, row.team)

    def revoke_admin_identity(self, serial: str, now: dt.datetime, actor: str = "collector") -> bool:
        s = normalize_serial(serial)
        with self._write() as conn:
            res = conn.execute(
                update(admin_identities)
                .where(admin_identities.c.serial == s, admin_identities.c.revoked.is_(False))
                .values(revoked=True, revoked_at=now)
            )
            if res.rowcount != 1:
                return False
            audit.record(conn, now, actor, "admin.revoke", f"admin-serial:{s}", "", {"serial": s})
            return True

    # -- audit of things that change nothing else -------------------------------------------------

    def record_certificate_revocation(self, fingerprint: str, issuer: str, reason: str, actor: str,
                                      now: dt.datetime) -> None:
        """An issuer revoked the certificate (the registry keeps no revocation state of its own)."""
        with self._write() as conn:
            audit.record(conn, now, actor, "certificate.revoke", f"certificate:{fingerprint}", reason,
                         {"fingerprint": fingerprint, "issuer": issuer})

    def record_refused_call(self, actor: str, method: str, permission: str, why: str,
                            now: dt.datetime | None = None, detail: dict[str, Any] | None = None) -> None:
        """An admin call the caller was not allowed to make."""
        with self._write() as conn:
            audit.record(conn, now or _utcnow(), actor, "call.refused", method, why,
                         {"method": method, "permission": permission, **(detail or {})})

    # -- reports -------------------------------------------------------------------------

    def begin_report(self, agent_id: str, header: ReportHeaderIn, now: dt.datetime) -> ReportTxn:
        """Start storing a report; the returned transaction must be finished or aborted."""
        conn = self.engine.connect().execution_options(**db.WRITE)
        try:
            conn.begin()
            row = self._lock_agent(conn, agent_id)
            if row is None:
                raise NotFound(f"no agent {agent_id}")
            if row.status != "active":
                raise PermissionDenied(f"agent {agent_id} is revoked")
            return ReportTxn(conn, row, header, now)
        except BaseException:
            conn.rollback()
            conn.close()
            raise

    # -- certificates ------------------------------------------------------------------------

    def get_certificate(self, fingerprint_prefix: str, with_der: bool = True) -> CertificateView:
        """A certificate by its SHA-256 fingerprint or a unique prefix of at least 6 hex digits.

        Case and colons do not matter. All its locations are shown, present and removed.
        """
        with self._read() as conn:
            fp = resolve_fingerprint(conn, fingerprint_prefix)
            rows = conn.execute(self._cert_select(with_der).where(certificates.c.fingerprint == fp)).all()
            return self._cert_views(conn, rows, with_der, include_removed=True, hostname=None, details=True)[0]

    def list_certificates(self, flt: CertFilter, now: dt.datetime | None = None) -> Iterator[CertificateView]:
        """Certificates matching ``flt`` by not_after then fingerprint, streamed a page at a time.

        Without ``include_removed`` only certificates present somewhere are listed, with their
        present locations; with it, every stored certificate and all its locations. A hostname
        filter (case-insensitive) keeps certificates found on that host and shows only its locations.
        ``now`` is accepted for symmetry with the other queries; the filter carries its own times.
        """
        c = certificates.c
        conds: list[Any] = []
        if flt.expiring_before is not None:
            conds.append(c.not_after < flt.expiring_before)
        if flt.issuer_contains:
            conds.append(func.lower(c.issuer).contains(flt.issuer_contains.lower(), autoescape=True))
        lc = locations.c
        if flt.hostname:
            # Few certificates on one host: let the database start from that host's locations.
            on_host = select(lc.fingerprint).where(lc.agent_id.in_(
                select(agents.c.agent_id).where(func.lower(agents.c.hostname) == flt.hostname.lower())
            ))
            if not flt.include_removed:
                on_host = on_host.where(lc.status == "present")
            conds.append(c.fingerprint.in_(on_host))
        elif not flt.include_removed:
            # Most certificates are present somewhere: walk the (not_after, fingerprint) index and
            # check each one. A correlated scalar subquery rather than EXISTS, which PostgreSQL
            # may turn into a join over all locations when its statistics are stale (e.g. right
            # after a large first report).
            present = select(literal(1)).where(lc.fingerprint == c.fingerprint, lc.status == "present").limit(1)
            conds.append(present.scalar_subquery().is_not(None))
        after: tuple[dt.datetime, str] | None = None
        while True:
            stmt = self._cert_select(False).where(*conds)
            if after is not None:
                # a row-value comparison, so that the (not_after, fingerprint) index serves each page
                stmt = stmt.where(tuple_(c.not_after, c.fingerprint) > tuple_(
                    literal(after[0], type_=c.not_after.type), literal(after[1], type_=c.fingerprint.type)))
            stmt = stmt.order_by(c.not_after, c.fingerprint).limit(self.PAGE_SIZE)
            with self._read() as conn:
                rows = conn.execute(stmt).all()
                views = self._cert_views(conn, rows, False, flt.include_removed, flt.hostname) if rows else []
            yield from views
            if len(rows) < self.PAGE_SIZE:
                return
            after = (rows[-1].not_after, rows[-1].fingerprint)

    @staticmethod
    def _cert_select(with_der: bool) -> Any:
        cols = [col for col in certificates.c if col.name != "der"]
        if with_der:
            cols.append(certificates.c.der)
        return select(*cols)

    #: location columns read only for one certificate in full (JSON: costly over a whole fleet)
    DETAIL_COLUMNS = ("endpoint", "processes", "windows", "stale_detail")

    def _cert_views(self, conn: Connection, rows: list[Any], with_der: bool, include_removed: bool,
                    hostname: str | None, details: bool = False) -> list[CertificateView]:
        fps = [r.fingerprint for r in rows]
        lc, a = locations.c, agents.c
        locs: dict[str, list[LocationView]] = defaultdict(list)
        cols = [col for col in locations.c if details or col.name not in self.DETAIL_COLUMNS]
        for part in chunked(fps):
            stmt = (
                select(*cols, a.hostname).join(agents, a.agent_id == lc.agent_id)
                .where(lc.fingerprint.in_(part))
                .order_by(a.hostname, lc.store_type, lc.path, lc.alias, lc.chain_index)
            )
            if not include_removed:
                stmt = stmt.where(lc.status == "present")
            if hostname:
                stmt = stmt.where(func.lower(a.hostname) == hostname.lower())
            for r in conn.execute(stmt):
                locs[r.fingerprint].append(LocationView(
                    agent_id=r.agent_id, hostname=r.hostname, store_type=r.store_type, path=r.path,
                    alias=r.alias, chain_index=r.chain_index, has_private_key=r.has_private_key,
                    key_encrypted=r.key_encrypted, key_match=r.key_match, entry_type=r.entry_type,
                    status=r.status, first_seen=r.first_seen, last_seen=r.last_seen, removed_at=r.removed_at,
                    file_owner=r.file_owner, file_group=r.file_group, file_mode=r.file_mode,
                    file_mtime=r.file_mtime, labels=dict(r.labels or {}),
                    role=r.role or "service", stale_served_fingerprint=r.stale_served_fingerprint,
                    stale_endpoint=r.stale_endpoint, stale_since=r.stale_since,
                    **(_location_details(r) if details else {}),
                ))
        return [
            CertificateView(
                fingerprint=r.fingerprint, subject=r.subject, issuer=r.issuer, serial=r.serial,
                sans=tuple(SanView(type=t, value=v) for t, v in (r.sans or ())),
                not_before=r.not_before, not_after=r.not_after, key_type=r.key_type, key_size=r.key_size,
                key_curve=r.key_curve, signature_algorithm=r.signature_algorithm, is_ca=r.is_ca,
                self_signed=r.self_signed, key_usage=tuple(r.key_usage or ()),
                extended_key_usage=tuple(r.extended_key_usage or ()),
                issuer_fingerprint=r.issuer_fingerprint or "",
                der=bytes(r.der) if with_der else b"",
                locations=tuple(locs.get(r.fingerprint, ())),
            )
            for r in rows
        ]


def _location_details(r: Any) -> dict[str, Any]:
    """The JSON facts of a location row (see LocationView)."""
    return {"endpoint": r.endpoint or None, "processes": tuple(r.processes or ()), "windows": r.windows or None,
            "stale_detail": r.stale_detail or None, "details": True}


def _error_view(e: Any) -> ScanErrorView:
    return ScanErrorView(
        store_type=e.store_type, path=e.path, alias=e.alias, reason=e.reason, message=e.message,
        observed_at=e.observed_at,
    )
