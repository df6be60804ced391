"""Owners, assignment rules and explicit assignments in the registry.

``OwnerStore`` keeps the records of ``collector.domain.ownership`` (``Owner``, ``Rule``,
``Explicit``) and answers with them; the decisions (which rule applies, what is
an orphan) are the pure functions there. Every method is one transaction and
takes the current time as ``now`` where it writes; ``actor`` names who made a
change (kept with rules and explicit assignments).

Names of owners and rules are lower-case (``Web-Team`` is stored as ``web-team``).
Rule priorities are unique; a rule added without one goes last (highest + 10).
An owner still named by a rule or an explicit assignment cannot be deleted.

Resolved assignments and orphans read the certificates through a ``CertificateStore``.
Use it as ``Registry.owners`` or ``OwnerStore(engine)``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any, Iterable, Iterator, Mapping, Sequence

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from collector.domain import ownership as own
from collector.errors import InvalidInput, NotFound
from collector.registry import audit, db
from collector.registry.certificates import CertificateStore
from collector.registry.lookup import resolve_fingerprint
from collector.registry.models.agents import agents
from collector.registry.models.inventory import locations
from collector.registry.models.owners import assignment_rules, explicit_assignments, owners
from collector.registry.owner_rows import (
    explicit_select,
    explicit_view,
    owner_detail,
    owner_view,
    rule_detail,
    rule_view,
    rules_select,
)
from collector.registry.sql import chunked
from collector.registry.types import CertFilter, LocationSelector, location_label

PRIORITY_STEP = 10


def _target_key(scope: str, fingerprint: str = "", agent_id: str = "", store_type: str = "", path: str = "",
                alias: str = "") -> str:
    return hashlib.sha256("\0".join((scope, fingerprint, agent_id, store_type, path, alias)).encode()).hexdigest()


def _dedupe(values: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)


def _target_text(t: Mapping[str, str]) -> str:
    if t["scope"] == own.SCOPE_CERTIFICATE:
        return f"certificate:{t['fingerprint']}"
    where = f"{t['store_type']}:{t['path']}" + (f" [{t['alias']}]" if t["alias"] else "")
    return f"location:{t['agent_id']}:{where}"


def _check_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (labels or {}).items():
        key = str(k).strip()
        if not key:
            raise InvalidInput("a label condition needs a name (k=v)")
        out[key] = str(v)
    return out


class OwnerStore(db.Connections):
    """Owners, assignment rules and explicit assignments on the registry's database."""

    #: rows per page when streaming explicit assignments
    PAGE_SIZE = 500

    def __init__(self, engine: Engine, certificates: CertificateStore | None = None) -> None:
        self.engine = engine
        self.certificates = certificates or CertificateStore(engine)

    # -- plumbing ----------------------------------------------------------------------

    @staticmethod
    def _owner_id(conn: Connection, name: str, context: str = "") -> int:
        n = (name or "").strip().lower()
        oid = conn.execute(select(owners.c.id).where(owners.c.name == n)).scalar()
        if oid is None:
            raise NotFound(f"{context}no owner {n!r}; add it first with: certfleet owners add {n or 'NAME'} --email ...")
        return int(oid)

    # -- owners ----------------------------------------------------------------------------

    def create_owner(
        self, name: str, now: dt.datetime, *, contacts: Sequence[str] = (), webhook: str = "", escalation: str = "",
        description: str = "", actor: str = "collector", reason: str = "",
    ) -> own.Owner:
        """A new owner. InvalidInput for a taken name or a malformed contact."""
        n = own.check_name(name, "owner name")
        values = dict(
            name=n, contacts=_dedupe(own.check_email(c, "contact") for c in contacts),
            webhook=own.check_webhook(webhook),
            escalation=own.check_email(escalation, "escalation contact") if escalation.strip() else "",
            description=description.strip(), created_at=now, updated_at=now,
        )
        try:
            with self._write() as conn:
                if conn.execute(select(owners.c.id).where(owners.c.name == n)).first() is not None:
                    raise InvalidInput(f"owner {n!r} already exists; change it with: certfleet owners update {n}")
                conn.execute(insert(owners).values(**values))
                view = owner_view(conn.execute(select(owners).where(owners.c.name == n)).one())
                audit.record(conn, now, actor, "owner.create", f"owner:{n}", reason, owner_detail(view))
                return view
        except IntegrityError:   # a concurrent create of the same name
            raise InvalidInput(f"owner {n!r} already exists") from None

    def update_owner(
        self, name: str, now: dt.datetime, *, new_name: str | None = None, contacts: Sequence[str] | None = None,
        add_contacts: Sequence[str] = (), remove_contacts: Sequence[str] = (), webhook: str | None = None,
        escalation: str | None = None, description: str | None = None, actor: str = "collector",
        reason: str = "",
    ) -> own.Owner:
        """Change what is given (None keeps a field; "" clears webhook, escalation, description).

        ``contacts`` replaces the list; ``add_contacts``/``remove_contacts`` change it.
        """
        n = (name or "").strip().lower()
        try:
            with self._write() as conn:
                stmt = select(owners).where(owners.c.name == n)
                if conn.dialect.name == "postgresql":
                    stmt = stmt.with_for_update()
                row = conn.execute(stmt).first()
                if row is None:
                    raise NotFound(f"no owner {n!r}")
                values: dict[str, Any] = {"updated_at": now}
                if new_name is not None and new_name.strip().lower() != n:
                    nn = own.check_name(new_name, "owner name")
                    if conn.execute(select(owners.c.id).where(owners.c.name == nn)).first() is not None:
                        raise InvalidInput(f"owner {nn!r} already exists")
                    values["name"] = nn
                current = list(row.contacts or ())
                if contacts is not None:
                    current = [own.check_email(c, "contact") for c in contacts]
                for c in remove_contacts:
                    c = c.strip()
                    if c not in current:
                        raise InvalidInput(f"owner {n!r} has no contact {c!r} (it has: {', '.join(current) or 'none'})")
                    current.remove(c)
                current.extend(own.check_email(c, "contact") for c in add_contacts)
                values["contacts"] = _dedupe(current)
                if webhook is not None:
                    values["webhook"] = own.check_webhook(webhook)
                if escalation is not None:
                    values["escalation"] = own.check_email(escalation, "escalation contact") if escalation.strip() else ""
                if description is not None:
                    values["description"] = description.strip()
                conn.execute(update(owners).where(owners.c.id == row.id).values(**values))
                view = owner_view(conn.execute(select(owners).where(owners.c.id == row.id)).one())
                audit.record(conn, now, actor, "owner.update", f"owner:{n}", reason,
                             {"before": owner_detail(owner_view(row)), "after": owner_detail(view)})
                return view
        except IntegrityError:
            raise InvalidInput(f"owner {new_name!r} already exists") from None

    def get_owner(self, name: str) -> own.Owner:
        n = (name or "").strip().lower()
        with self._read() as conn:
            row = conn.execute(select(owners).where(owners.c.name == n)).first()
        if row is None:
            raise NotFound(f"no owner {n!r}")
        return owner_view(row)

    def list_owners(self) -> list[own.Owner]:
        """All owners by name (owners are teams: few)."""
        with self._read() as conn:
            return [owner_view(r) for r in conn.execute(select(owners).order_by(owners.c.name))]

    def delete_owner(self, name: str, now: dt.datetime, actor: str = "collector", reason: str = "") -> None:
        """Delete an owner that no rule or explicit assignment names (InvalidInput otherwise)."""
        with self._write() as conn:
            oid = self._owner_id(conn, name)
            rules = conn.execute(
                select(assignment_rules.c.name).where(assignment_rules.c.owner_id == oid)
                .order_by(assignment_rules.c.priority)
            ).scalars().all()
            n_exp = conn.execute(
                select(func.count()).select_from(explicit_assignments).where(explicit_assignments.c.owner_id == oid)
            ).scalar_one()
            if rules or n_exp:
                used = []
                if rules:
                    used.append(f"{len(rules)} rule(s) ({', '.join(rules[:5])}{', ...' if len(rules) > 5 else ''})")
                if n_exp:
                    used.append(f"{n_exp} explicit assignment(s)")
                raise InvalidInput(
                    f"owner {name.strip().lower()!r} is still named by {' and '.join(used)}; "
                    "remove or reassign them first")
            before = owner_view(conn.execute(select(owners).where(owners.c.id == oid)).one())
            conn.execute(delete(owners).where(owners.c.id == oid))
            audit.record(conn, now, actor, "owner.delete", f"owner:{before.name}", reason, owner_detail(before))

    # -- rules -------------------------------------------------------------------------------

    def add_rule(
        self, name: str, now: dt.datetime, *, owner: str = "", environment: str = "", criticality: str = "",
        service: str = "", host: str = "", path: str = "", san: str = "", issuer: str = "",
        labels: Mapping[str, str] | None = None, priority: int | None = None, description: str = "",
        actor: str = "collector", reason: str = "",
    ) -> own.Rule:
        """A new rule. NotFound for an unknown owner; InvalidInput for a taken name or priority,
        a malformed pattern, or a rule that sets nothing."""
        n = own.check_name(name, "rule name")
        env = own.check_environment(environment)
        crit = own.check_criticality(criticality)
        svc = own.check_service(service)
        if not (owner.strip() or env or crit or svc):
            raise InvalidInput(f"rule {n!r} sets nothing: give an owner, environment, criticality or service")
        if priority is not None and not (0 <= priority < 2**31 - 1):
            raise InvalidInput(f"priority {priority} is out of range (0 .. {2**31 - 2})")
        values = dict(
            name=n, environment=env, criticality=crit, service=svc,
            host_glob=own.check_glob(host, "host"), path_glob=own.check_glob(path, "path"),
            san_glob=own.check_glob(san, "san"), issuer_contains=issuer.strip(), labels=_check_labels(labels),
            description=description.strip(), created_by=actor, created_at=now, updated_at=now,
        )
        r = assignment_rules.c
        try:
            with self._write() as conn:
                values["owner_id"] = self._owner_id(conn, owner, f"rule {n!r}: ") if owner.strip() else None
                if conn.execute(select(r.id).where(r.name == n)).first() is not None:
                    raise InvalidInput(f"rule {n!r} already exists; remove it first or pick another name")
                if priority is None:
                    top = conn.execute(select(func.max(r.priority))).scalar()
                    priority = PRIORITY_STEP if top is None else top + PRIORITY_STEP
                else:
                    taken = conn.execute(select(r.name).where(r.priority == priority)).scalar()
                    if taken is not None:
                        raise InvalidInput(
                            f"priority {priority} is taken by rule {taken!r}; pick another or reorder the rules")
                conn.execute(insert(assignment_rules).values(priority=priority, **values))
                view = rule_view(conn.execute(rules_select().where(r.name == n)).one())
                audit.record(conn, now, actor, "rule.add", f"rule:{n}", reason, rule_detail(view))
                return view
        except IntegrityError:   # a concurrent add with the same name or priority
            raise InvalidInput(f"rule {n!r} or priority {priority} was taken at the same time; try again") from None

    def list_rules(self) -> list[own.Rule]:
        """All rules, lowest priority number (applied first) first."""
        with self._read() as conn:
            return [rule_view(r) for r in conn.execute(
                rules_select().order_by(assignment_rules.c.priority))]

    def remove_rule(self, name: str, now: dt.datetime, actor: str = "collector", reason: str = "") -> own.Rule:
        n = (name or "").strip().lower()
        with self._write() as conn:
            row = conn.execute(rules_select().where(assignment_rules.c.name == n)).first()
            if row is None:
                raise NotFound(f"no rule {n!r}")
            conn.execute(delete(assignment_rules).where(assignment_rules.c.id == row.id))
            view = rule_view(row)
            audit.record(conn, now, actor, "rule.remove", f"rule:{n}", reason, rule_detail(view))
            return view

    def reorder_rules(self, names: Sequence[str], now: dt.datetime, actor: str = "collector",
                      reason: str = "") -> list[own.Rule]:
        """Put the named rules first, in this order; the others follow in their order. Priorities
        are renumbered 10, 20, 30, ..."""
        wanted = [(x or "").strip().lower() for x in names]
        if not wanted:
            raise InvalidInput("name the rules to put first")
        dupes = sorted({x for x in wanted if wanted.count(x) > 1})
        if dupes:
            raise InvalidInput(f"rule(s) named twice: {', '.join(dupes)}")
        r = assignment_rules.c
        with self._write() as conn:
            rows = conn.execute(select(r.id, r.name).order_by(r.priority)).all()
            by_name = {row.name: row.id for row in rows}
            unknown = [x for x in wanted if x not in by_name]
            if unknown:
                raise NotFound(f"no rule(s) {', '.join(repr(x) for x in unknown)}")
            order = [by_name[x] for x in wanted] + [row.id for row in rows if row.name not in set(wanted)]
            # two steps, so that no intermediate state breaks the unique priorities
            for i, rid in enumerate(order):
                conn.execute(update(assignment_rules).where(r.id == rid).values(priority=-(i + 1)))
            for i, rid in enumerate(order):
                conn.execute(update(assignment_rules).where(r.id == rid)
                             .values(priority=(i + 1) * PRIORITY_STEP, updated_at=now))
            names_by_id = {row.id: row.name for row in rows}
            audit.record(conn, now, actor, "rule.reorder", "rules", reason,
                         {"order": [names_by_id[rid] for rid in order]})
        return self.list_rules()

    # -- explicit assignments ----------------------------------------------------------------------

    def assign(
        self, fingerprint: str, now: dt.datetime, *, owner: str | None = None, environment: str | None = None,
        criticality: str | None = None, service: str | None = None, where: LocationSelector | None = None,
        reason: str = "", actor: str = "collector",
    ) -> list[own.Explicit]:
        """Assign the certificate (no ``where``), or each of its locations that ``where`` selects
        (agent, host, store type, path, alias; the chain index is ignored: a location is a store
        entry, whatever certificate it holds later).

        Attributes given (not None) are set, "" clears one; the others of an existing explicit
        assignment of the same target stay. An assignment left with nothing set is removed.
        Returns the explicit assignments as they now are.
        """
        changes: dict[str, str] = {}
        if owner is not None:
            changes["owner"] = owner.strip().lower()
        if environment is not None:
            changes["environment"] = own.check_environment(environment)
        if criticality is not None:
            changes["criticality"] = own.check_criticality(criticality)
        if service is not None:
            changes["service"] = own.check_service(service)
        if not changes:
            raise InvalidInput("give at least one of owner, environment, criticality, service to assign")
        e = explicit_assignments.c
        with self._write() as conn:
            owner_id = self._owner_id(conn, changes["owner"]) if changes.get("owner") else None
            fp = resolve_fingerprint(conn, fingerprint)
            kept: list[str] = []
            events: list[tuple[str, str, dict[str, Any]]] = []
            for t in self._targets(conn, fp, where):
                key = _target_key(**t)
                row = conn.execute(explicit_select().where(e.target_key == key)).first()
                before = explicit_view(row).sets() if row is not None else {}
                after = {**before, **changes}
                after = {k: v for k, v in after.items() if v}
                target = _target_text(t)
                attrs = {
                    "owner_id": owner_id if "owner" in changes else (row.owner_id if row is not None else None),
                    **{a: after.get(a, "") for a in ("environment", "criticality", "service")},
                }
                if not after:
                    if row is not None:
                        conn.execute(delete(explicit_assignments).where(e.id == row.id))
                        events.append(("assignment.remove", target, {"before": before}))
                    continue
                if row is not None:
                    conn.execute(update(explicit_assignments).where(e.id == row.id).values(
                        **attrs, reason=reason or row.reason, assigned_by=actor, updated_at=now))
                else:
                    conn.execute(insert(explicit_assignments).values(
                        target_key=key, scope=t["scope"], fingerprint=t.get("fingerprint") or None,
                        agent_id=t.get("agent_id") or None, store_type=t.get("store_type", ""),
                        path=t.get("path", ""), alias=t.get("alias", ""),
                        **attrs, reason=reason, assigned_by=actor, created_at=now, updated_at=now,
                    ))
                kept.append(key)
                events.append(("assignment.set", target, {"fingerprint": fp, "before": before, "after": after}))
            views = [explicit_view(r) for r in conn.execute(
                explicit_select().where(e.target_key.in_(kept)).order_by(e.id))] if kept else []
            for action, target, detail in events:
                audit.record(conn, now, actor, action, target, reason, detail)
            return views

    def unassign(self, fingerprint: str, now: dt.datetime, *, where: LocationSelector | None = None,
                 actor: str = "collector", reason: str = "") -> int:
        """Remove the explicit assignment of the certificate (no ``where``) or of the locations
        ``where`` selects; returns how many were removed. NotFound if there was none."""
        e = explicit_assignments.c
        with self._write() as conn:
            fp = resolve_fingerprint(conn, fingerprint)
            targets = {_target_key(**t): t for t in self._targets(conn, fp, where)}
            rows = conn.execute(explicit_select().where(e.target_key.in_(list(targets)))).all()
            if not rows:
                what = f"certificate {fp[:16]}..." if where is None else f"{where.describe()} (certificate {fp[:16]}...)"
                raise NotFound(f"no explicit assignment of {what}")
            conn.execute(delete(explicit_assignments).where(e.id.in_([r.id for r in rows])))
            for r in rows:
                audit.record(conn, now, actor, "assignment.remove", _target_text(targets[r.target_key]), reason,
                             {"fingerprint": fp, "before": explicit_view(r).sets()})
            return len(rows)

    def _targets(self, conn: Connection, fp: str, where: LocationSelector | None) -> list[dict[str, str]]:
        if where is None or where == LocationSelector():
            return [dict(scope=own.SCOPE_CERTIFICATE, fingerprint=fp)]
        lc, a = locations.c, agents.c
        rows = conn.execute(
            select(lc.agent_id, lc.store_type, lc.path, lc.alias, lc.chain_index, lc.status, a.hostname)
            .join(agents, a.agent_id == lc.agent_id).where(lc.fingerprint == fp)
            .order_by(lc.status, a.hostname, lc.agent_id, lc.store_type, lc.path, lc.alias, lc.chain_index)
        ).all()   # present before removed (alphabetically too)
        sel = LocationSelector(agent_id=where.agent_id, hostname=where.hostname, store_type=where.store_type,
                               path=where.path, alias=where.alias, chain_index=None)
        chosen = [r for r in rows if sel.matches(r)]
        if not chosen:
            seen = ", ".join(f"{r.hostname or r.agent_id} {location_label(r.store_type, r.path, r.alias, r.chain_index)}"
                             for r in rows[:5]) or "nowhere"
            more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
            raise NotFound(f"{sel.describe()} does not hold certificate {fp[:16]}...; it is at {seen}{more}")
        out: dict[tuple[str, str, str, str], dict[str, str]] = {}
        for r in chosen:
            out.setdefault((r.agent_id, r.store_type, r.path, r.alias), dict(
                scope=own.SCOPE_LOCATION, agent_id=r.agent_id, store_type=r.store_type, path=r.path, alias=r.alias))
        return list(out.values())

    def list_explicit(self) -> Iterator[own.Explicit]:
        """Every explicit assignment, oldest first, streamed a page at a time."""
        e = explicit_assignments.c
        last = 0
        while True:
            with self._read() as conn:
                rows = conn.execute(
                    explicit_select().where(e.id > last).order_by(e.id).limit(self.PAGE_SIZE)).all()
            yield from (explicit_view(r) for r in rows)
            if len(rows) < self.PAGE_SIZE:
                return
            last = rows[-1].id

    def explicit_for(self, certs: Sequence[Any]) -> list[own.Explicit]:
        """The explicit assignments that may apply to these certificates (CertificateView) and their locations."""
        fps = sorted({c.fingerprint for c in certs})
        locs = {(loc.agent_id, loc.store_type, loc.path, loc.alias) for c in certs for loc in c.locations}
        agent_ids = sorted({k[0] for k in locs})
        e = explicit_assignments.c
        out: list[own.Explicit] = []
        with self._read() as conn:
            for part in chunked(fps):
                out.extend(explicit_view(r) for r in conn.execute(
                    explicit_select().where(e.scope == own.SCOPE_CERTIFICATE, e.fingerprint.in_(list(part)))))
            for part in chunked(agent_ids):
                for r in conn.execute(
                        explicit_select().where(e.scope == own.SCOPE_LOCATION, e.agent_id.in_(list(part)))):
                    if (r.agent_id, r.store_type, r.path, r.alias) in locs:
                        out.append(explicit_view(r))
        return out

    # -- resolved ------------------------------------------------------------------------------------

    def assignment_for(self, fingerprint: str) -> own.CertificateAssignment:
        """The certificate's assignment at each location (present and removed), and the explicit
        assignments that apply. ``fingerprint`` may be a unique prefix (6+ hex digits)."""
        cert = self.certificates.get_certificate(fingerprint, with_der=False)
        rules = self.list_rules()
        explicit = self.explicit_for([cert])
        return own.CertificateAssignment(
            certificate=cert,
            certificate_assignment=own.resolve(cert, None, rules, explicit),
            locations=tuple(own.LocatedAssignment(loc, own.resolve(cert, loc, rules, explicit))
                            for loc in cert.locations),
            explicit=tuple(explicit),
        )

    def orphans(self, now: dt.datetime | None = None) -> Iterator[own.Orphan]:
        """Certificates present somewhere with a location that has no reachable owner (see
        collector.domain.ownership), soonest expiry first, streamed page by page."""
        owners = {o.name: o for o in self.list_owners()}
        rules = self.list_rules()
        certs = self.certificates.list_certificates(CertFilter(), now)
        yield from own.orphans_in(certs, rules, owners, self.explicit_for, self.certificates.PAGE_SIZE)


__all__ = ["OwnerStore"]
