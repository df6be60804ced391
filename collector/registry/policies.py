"""Policy documents, violations and exceptions in the registry.

``PolicyStore`` (as ``Registry.policies``) keeps the current policy document (versioned;
every change audited ``policy.update``), the exceptions (``exception.add``/``remove``,
and ``exception.expire`` the first time an evaluation finds one expired), and the
violations found by evaluating every certificate at every present location against the
policy (the decisions are the pure functions of collector/domain/policy.py).

Evaluation streams the registry page by page and reconciles each page's findings with
the stored violations: a new finding is inserted (``first_seen``), one still there gets
``last_seen``, and after the run every active violation the run did not see again is
cleared (``cleared_at``): its cause is gone (certificate replaced, location removed,
policy relaxed). ``now`` must advance between evaluations (the collector's clock).

It reads certificates through a ``CertificateStore``, assignments through an ``OwnerStore``
and an agent's host name through an ``AgentStore``; each is built on the same engine unless given.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from sqlalchemy import Engine, and_, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from collector.domain import ownership as own
from collector.domain import policy as pol
from collector.errors import InvalidInput, NotFound
from collector.registry import audit, db
from collector.registry.agents import AgentStore
from collector.registry.certificates import CertificateStore
from collector.registry.lookup import resolve_fingerprint
from collector.registry.models.inventory import certificates
from collector.registry.models.policy import policy_documents, policy_exceptions, policy_violations
from collector.registry.owners import OwnerStore
from collector.registry.sql import chunked, dialect_insert
from collector.registry.types import CertFilter, LocationSelector

FILE_SOURCE = "file:"
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ViolationView:
    id: int
    fingerprint: str
    subject: str
    not_after: dt.datetime | None
    agent_id: str
    hostname: str
    store_type: str
    path: str
    alias: str
    chain_index: int
    owner: str
    environment: str
    rule: str
    reason: str
    first_seen: dt.datetime
    last_seen: dt.datetime
    cleared_at: dt.datetime | None
    exception_id: int | None          # the exception that waives it now (None when none or expired)


@dataclass(frozen=True, slots=True)
class NewViolation:
    """A violation stored for the first time, not waived (what ``on_new_violation`` is told):
    one per certificate, rule and owner, with every location the evaluation found it at."""
    fingerprint: str
    subject: str
    rule: str
    reason: str
    owner: str
    environment: str
    criticality: str
    first_seen: dt.datetime
    places: tuple[tuple[str, str, str, str, str, int], ...]   # (hostname, path, alias, agent_id, store_type, chain)


#: called for each new violation after the transaction that stored it committed
OnNewViolation = Callable[[NewViolation], Any]


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    doc: pol.PolicyDoc
    version: int
    source: str
    created_by: str
    reason: str
    created_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class EvalStats:
    certificates: int = 0
    locations: int = 0
    new: int = 0
    still: int = 0
    cleared: int = 0
    expired_exceptions: int = 0


def location_key(agent_id: str, store_type: str, path: str, alias: str, chain_index: int) -> str:
    return hashlib.sha256("\0".join((agent_id, store_type, path, alias, str(chain_index))).encode()).hexdigest()


def active_key(fingerprint: str, loc_key: str, rule: str) -> str:
    return hashlib.sha256("\0".join((fingerprint, loc_key, rule)).encode()).hexdigest()


def _exc_view(r: Any) -> pol.PolicyException:
    return pol.PolicyException(
        id=int(r.id), rule=r.rule, fingerprint=r.fingerprint, owner=r.owner, pattern=r.pattern, reason=r.reason,
        granted_by=r.granted_by, created_at=r.created_at, expires_at=r.expires_at,
    )


def _exc_detail(e: pol.PolicyException) -> dict[str, Any]:
    return {"id": e.id, "rule": e.rule, "target": e.target, "expires_at": audit.at_text(e.expires_at)}


class PolicyStore(db.Connections):
    """The policy, its exceptions and the violations found, on the registry's database."""

    PAGE_SIZE = 500

    def __init__(self, engine: Engine, certificates: CertificateStore | None = None,
                 owners: OwnerStore | None = None, agents: AgentStore | None = None) -> None:
        self.engine = engine
        self.certificates = certificates or CertificateStore(engine)
        self.owners = owners or OwnerStore(engine, self.certificates)
        self.agents = agents or AgentStore(engine)

    # -- the document ------------------------------------------------------------------------

    def current(self) -> PolicyVersion:
        """The current policy (the built-in default, version 0, before any is stored)."""
        with self._read() as conn:
            row = conn.execute(select(policy_documents).order_by(policy_documents.c.version.desc()).limit(1)).first()
        if row is None:
            return PolicyVersion(pol.default_policy(), 0, "default", "", "", None)
        return PolicyVersion(pol.parse_policy(row.text, row.version), row.version, row.source, row.created_by,
                             row.reason, row.created_at)

    def set_policy(self, text: str, now: dt.datetime, actor: str = "collector", reason: str = "",
                   source: str = "cli") -> PolicyVersion:
        """Store ``text`` as the new current policy (PolicyError, naming the problem, if it is not valid)."""
        doc = pol.parse_policy(text)
        try:
            with self._write() as conn:
                stmt = select(policy_documents.c.version, policy_documents.c.sha256).order_by(
                    policy_documents.c.version.desc()).limit(1)
                prev = conn.execute(stmt).first()
                version = (prev.version if prev else 0) + 1
                conn.execute(insert(policy_documents).values(
                    version=version, text=text, sha256=doc.sha256, source=source, created_by=actor,
                    reason=reason, created_at=now))
                audit.record(conn, now, actor, "policy.update", f"policy:v{version}", reason, {
                    "version": version, "previous_version": prev.version if prev else 0, "sha256": doc.sha256,
                    "previous_sha256": prev.sha256 if prev else "", "source": source,
                })
        except IntegrityError:   # another collector stored a version at the same moment
            raise InvalidInput("the policy was changed at the same time by someone else; try again") from None
        return PolicyVersion(pol.PolicyDoc(doc.scopes, text, version), version, source, actor, reason, now)

    def load_file(self, text: str, now: dt.datetime, name: str = "policy file") -> PolicyVersion | None:
        """Import the collector's policy file, unless this very file content was imported last
        (so that policy changes made with the CLI survive a restart until the file changes)."""
        sha = hashlib.sha256(text.encode()).hexdigest()
        with self._read() as conn:
            last = conn.execute(
                select(policy_documents.c.source).where(policy_documents.c.source.like(FILE_SOURCE + "%"))
                .order_by(policy_documents.c.version.desc()).limit(1)).scalar()
        if last == FILE_SOURCE + sha:
            return None
        return self.set_policy(text, now, actor="collector", reason=f"loaded from {name}", source=FILE_SOURCE + sha)

    # -- exceptions ------------------------------------------------------------------------------

    def add_exception(self, rule: str, now: dt.datetime, *, expires_at: dt.datetime | None, reason: str,
                      fingerprint: str = "", owner: str = "", pattern: str = "",
                      actor: str = "collector") -> pol.PolicyException:
        rule = (rule or "").strip()
        owner = (owner or "").strip().lower()
        pattern = (pattern or "").strip().lower()
        pol.check_exception(rule, fingerprint.strip(), owner, pattern, reason, expires_at, now)
        with self._write() as conn:
            fp = ""
            if fingerprint.strip():
                fp = resolve_fingerprint(conn, fingerprint)
            r = conn.execute(insert(policy_exceptions).values(
                rule=rule, fingerprint=fp, owner=owner, pattern=pattern, reason=reason.strip(), granted_by=actor,
                created_at=now, expires_at=expires_at, expiry_reported_at=None,
            ).returning(policy_exceptions.c.id))
            eid = int(r.scalar_one())
            e = _exc_view(conn.execute(select(policy_exceptions).where(policy_exceptions.c.id == eid)).one())
            audit.record(conn, now, actor, "exception.add", f"exception:{eid}", reason, _exc_detail(e))
        self.refresh_waivers(now)
        return e

    def remove_exception(self, exception_id: int, now: dt.datetime, actor: str = "collector",
                         reason: str = "") -> pol.PolicyException:
        with self._write() as conn:
            row = conn.execute(select(policy_exceptions).where(policy_exceptions.c.id == exception_id)).first()
            if row is None:
                raise NotFound(f"no exception {exception_id}")
            e = _exc_view(row)
            conn.execute(delete(policy_exceptions).where(policy_exceptions.c.id == exception_id))
            conn.execute(update(policy_violations).where(policy_violations.c.exception_id == exception_id)
                         .values(exception_id=None))
            audit.record(conn, now, actor, "exception.remove", f"exception:{exception_id}", reason, _exc_detail(e))
        self.refresh_waivers(now)
        return e

    def list_exceptions(self, now: dt.datetime, expired: bool | None = None) -> list[pol.PolicyException]:
        """Exceptions by id; ``expired`` True: only expired ones, False: only those in force, None: all."""
        x = policy_exceptions.c
        stmt = select(policy_exceptions).order_by(x.id)
        if expired is True:
            stmt = stmt.where(x.expires_at <= now)
        elif expired is False:
            stmt = stmt.where(x.expires_at > now)
        with self._read() as conn:
            return [_exc_view(r) for r in conn.execute(stmt)]

    def report_expired_exceptions(self, now: dt.datetime) -> list[pol.PolicyException]:
        """Exceptions found expired for the first time: each audited ``exception.expire`` once."""
        x = policy_exceptions.c
        out: list[pol.PolicyException] = []
        with self._write() as conn:
            rows = conn.execute(select(policy_exceptions).where(x.expires_at <= now, x.expiry_reported_at.is_(None))
                                .order_by(x.id)).all()
            if not rows:
                return out
            conn.execute(update(policy_exceptions).where(x.id.in_([r.id for r in rows])).values(expiry_reported_at=now))
            for r in rows:
                e = _exc_view(r)
                out.append(e)
                audit.record(conn, now, "collector", "exception.expire", f"exception:{e.id}",
                             "the exception expired; its violations apply again", _exc_detail(e))
        return out

    def refresh_waivers(self, now: dt.datetime) -> int:
        """Re-decide which exception waives each active violation (after an exception changes);
        how many changed."""
        exceptions = self.list_exceptions(now, expired=False)
        v, c = policy_violations.c, certificates.c
        changed = 0
        last = 0
        while True:
            with self._read() as conn:
                rows = conn.execute(
                    select(v.id, v.rule, v.owner, v.hostname, v.exception_id, c.fingerprint, c.subject, c.sans)
                    .select_from(policy_violations.join(certificates, c.fingerprint == v.fingerprint))
                    .where(v.cleared_at.is_(None), v.id > last).order_by(v.id).limit(self.PAGE_SIZE)).all()
            if not rows:
                return changed
            updates = []
            for r in rows:
                cert = own.CertFacts(fingerprint=r.fingerprint, subject=r.subject,
                                     dns_names=tuple(val for t, val in (r.sans or ()) if t == "dns"))
                loc = _Loc(r.hostname)
                a = own.Assignment(owner=r.owner or None)
                w = pol.waiver(exceptions, pol.Finding(r.rule, ""), cert, loc, a, now)
                eid = w.id if w else None
                if eid != r.exception_id:
                    updates.append({"vid": r.id, "eid": eid})
            if updates:

                with self._write() as conn:
                    conn.execute(update(policy_violations).where(v.id == bindparam("vid"))
                                 .values(exception_id=bindparam("eid")), updates)
                changed += len(updates)
            last = rows[-1].id

    # -- violations ------------------------------------------------------------------------------

    def list_violations(self, now: dt.datetime, *, rule: str = "", owner: str = "", include_excepted: bool = False,
                        include_cleared: bool = False, agent_id: str = "") -> Iterator[ViolationView]:
        """Violations by id, streamed; by default the active ones not waived by an exception in force."""
        v, c, x = policy_violations.c, certificates.c, policy_exceptions.c
        waived = and_(v.exception_id.is_not(None), x.id.is_not(None), x.expires_at > now)
        conds: list[Any] = []
        if not include_cleared:
            conds.append(v.cleared_at.is_(None))
        if rule:
            conds.append(v.rule == rule)
        if owner:
            conds.append(v.owner == owner.strip().lower())
        if agent_id:
            conds.append(v.agent_id == agent_id)
        if not include_excepted:
            conds.append(~waived)
        base = (select(policy_violations, c.subject, c.not_after, x.id.label("exc_id"), x.expires_at.label("exc_exp"))
                .select_from(policy_violations.outerjoin(certificates, c.fingerprint == v.fingerprint)
                             .outerjoin(policy_exceptions, x.id == v.exception_id)))
        last = 0
        while True:
            with self._read() as conn:
                rows = conn.execute(base.where(*conds, v.id > last).order_by(v.id).limit(self.PAGE_SIZE)).all()
            for r in rows:
                eid = r.exc_id if (r.exc_id is not None and r.exc_exp is not None and r.exc_exp > now) else None
                yield ViolationView(
                    id=r.id, fingerprint=r.fingerprint, subject=r.subject or "", not_after=r.not_after,
                    agent_id=r.agent_id, hostname=r.hostname, store_type=r.store_type, path=r.path, alias=r.alias,
                    chain_index=r.chain_index, owner=r.owner, environment=r.environment, rule=r.rule,
                    reason=r.reason, first_seen=r.first_seen, last_seen=r.last_seen, cleared_at=r.cleared_at,
                    exception_id=eid,
                )
            if len(rows) < self.PAGE_SIZE:
                return
            last = rows[-1].id

    # -- evaluation -----------------------------------------------------------------------------

    def evaluate_all(self, now: dt.datetime, on_new_violation: OnNewViolation | None = None) -> EvalStats:
        """Evaluate every present certificate at every present location; reconcile the violations.

        ``on_new_violation`` (optional) is called for every violation inserted by this run and not
        waived, page by page after the page's transaction committed (never inside it); its
        failures are logged, not raised."""
        expired = self.report_expired_exceptions(now)
        certs = self.certificates.list_certificates(CertFilter(), now)
        stats = self._evaluate(certs, now, agent_id=None, on_new_violation=on_new_violation)
        return EvalStats(stats.certificates, stats.locations, stats.new, stats.still, stats.cleared, len(expired))

    def evaluate_agent(self, agent_id: str, now: dt.datetime,
                       on_new_violation: OnNewViolation | None = None) -> EvalStats:
        """Evaluate what one agent holds (after its report); reconcile that agent's violations
        (``on_new_violation``: see :meth:`evaluate_all`)."""
        hostname = self.agents.get_agent(agent_id).hostname
        certs = self.certificates.list_certificates(CertFilter(hostname=hostname), now)
        return self._evaluate(certs, now, agent_id=agent_id, on_new_violation=on_new_violation)

    def _evaluate(self, certs: Iterable[Any], now: dt.datetime, agent_id: str | None,
                  on_new_violation: OnNewViolation | None = None) -> EvalStats:
        doc = self.current().doc
        owners = self.owners
        resolver = own.Resolver(owners.list_rules())
        exceptions = self.list_exceptions(now, expired=False)
        n_certs = n_locs = new = still = 0
        it = iter(certs)
        while True:
            page = list(itertools.islice(it, self.PAGE_SIZE))
            if not page:
                break
            explicit = owners.explicit_for(page)
            found: dict[str, dict[str, Any]] = {}
            extra: dict[str, tuple[str, str]] = {}   # active key -> (subject, criticality), for on_new_violation
            anchors: set[str] = set()                 # active keys at trust anchors: not notified
            for cert in page:
                n_certs += 1
                facts = own.facts_of(cert)        # once per certificate, not per location
                leaf_use = pol.used_as_leaf(cert)  # likewise (an intermediate is in many chain files)
                for loc in cert.locations:
                    if agent_id is not None and loc.agent_id != agent_id:
                        continue
                    if loc.status != "present":
                        continue
                    n_locs += 1
                    a = resolver(facts, loc, explicit)
                    lk = location_key(loc.agent_id, loc.store_type, loc.path, loc.alias, loc.chain_index)
                    for f in pol.evaluate(cert, loc, a, doc, now, leaf_use):
                        w = pol.waiver(exceptions, f, cert, loc, a, now)
                        found[active_key(cert.fingerprint, lk, f.rule)] = dict(
                            fingerprint=cert.fingerprint, location_key=lk, agent_id=loc.agent_id,
                            store_type=loc.store_type, path=loc.path, alias=loc.alias, chain_index=loc.chain_index,
                            hostname=loc.hostname, owner=a.owner or "", environment=a.environment or "",
                            rule=f.rule, reason=f.reason, exception_id=w.id if w else None,
                        )
                        extra[active_key(cert.fingerprint, lk, f.rule)] = (cert.subject, a.criticality or "")
                        if pol.is_trust_anchor(loc):
                            anchors.add(active_key(cert.fingerprint, lk, f.rule))
            if found:
                inserted, n_still = self._reconcile_page(found, now)
                new += len(inserted)
                still += n_still
                if on_new_violation is not None and inserted:   # the page's transaction has committed
                    self._tell_new(inserted, found, extra, now, on_new_violation, anchors)
        cleared = self._clear_unseen(now, agent_id)
        return EvalStats(n_certs, n_locs, new, still, cleared)

    @staticmethod
    def _tell_new(inserted: list[str], found: dict[str, dict[str, Any]], extra: dict[str, tuple[str, str]],
                  now: dt.datetime, callback: OnNewViolation, anchors: frozenset[str] | set[str] = frozenset()) -> None:
        """Tell ``callback`` of the new, unwaived violations; not those at trust anchors (``anchors``:
        active keys; collector/domain/policy.py TRUST_ANCHOR_RULES: recorded, not notified)."""
        groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for k in inserted:
            f = found[k]
            if f["exception_id"] is None and k not in anchors:
                groups.setdefault((f["fingerprint"], f["rule"], f["owner"]), []).append({**f, "_key": k})
        for (fp, rule, owner), fs in groups.items():
            envs = sorted({f["environment"] for f in fs if f["environment"]})
            # a production location makes it a production certificate for the notice
            env = next((e for e in envs if e.lower() in ("prod", "production")), envs[0] if envs else "")
            crits = [extra[f["_key"]][1] for f in fs if extra[f["_key"]][1]]
            crit = max(crits, key=lambda c: own.CRITICALITIES.index(c) if c in own.CRITICALITIES else -1) \
                if crits else ""
            nv = NewViolation(
                fingerprint=fp, subject=extra[fs[0]["_key"]][0], rule=rule, reason=fs[0]["reason"], owner=owner,
                environment=env, criticality=crit, first_seen=now,
                places=tuple((f["hostname"], f["path"], f["alias"], f["agent_id"], f["store_type"], f["chain_index"])
                             for f in fs))
            try:
                callback(nv)
            except Exception:  # noqa: BLE001 - telling is best effort; the evaluation goes on
                log.exception("on_new_violation failed for %s %s", rule, fp)

    def _reconcile_page(self, found: dict[str, dict[str, Any]], now: dt.datetime) -> tuple[list[str], int]:
        """Store one page's findings; (the active keys inserted, how many were there already)."""

        v = policy_violations.c
        keys = list(found)
        with self._write() as conn:
            existing: dict[str, Any] = {}
            for part in chunked(keys):
                for r in conn.execute(select(v.id, v.active_key, v.reason, v.owner, v.environment, v.exception_id,
                                             v.hostname).where(v.active_key.in_(list(part)))):
                    existing[r.active_key] = r
            inserts = [dict(active_key=k, first_seen=now, last_seen=now, cleared_at=None, **vals)
                       for k, vals in found.items() if k not in existing]
            touch: list[int] = []
            changes: list[dict[str, Any]] = []
            for k, r in existing.items():
                f = found[k]
                if (r.reason, r.owner, r.environment, r.exception_id, r.hostname) == (
                        f["reason"], f["owner"], f["environment"], f["exception_id"], f["hostname"]):
                    touch.append(r.id)
                else:
                    changes.append({"vid": r.id, "n_reason": f["reason"], "n_owner": f["owner"],
                                    "n_env": f["environment"], "n_exc": f["exception_id"],
                                    "n_host": f["hostname"], "seen": now})
            if inserts:
                conn.execute(dialect_insert(conn, policy_violations).on_conflict_do_nothing(
                    index_elements=[policy_violations.c.active_key]), inserts)
            for part in chunked(touch):
                conn.execute(update(policy_violations).where(v.id.in_(list(part)), v.last_seen < now)
                             .values(last_seen=now))
            if changes:
                conn.execute(update(policy_violations).where(v.id == bindparam("vid")).values(
                    reason=bindparam("n_reason"), owner=bindparam("n_owner"), environment=bindparam("n_env"),
                    exception_id=bindparam("n_exc"), hostname=bindparam("n_host"),
                    last_seen=bindparam("seen")), changes)
        return [i["active_key"] for i in inserts], len(existing)

    def _clear_unseen(self, now: dt.datetime, agent_id: str | None) -> int:
        v = policy_violations.c
        conds = [v.cleared_at.is_(None), v.last_seen < now]
        if agent_id is not None:
            conds.append(v.agent_id == agent_id)
        with self._write() as conn:
            return conn.execute(update(policy_violations).where(*conds).values(cleared_at=now, active_key=None)).rowcount

    # -- renewal requests ------------------------------------------------------------------------

    def check_renewal(self, cert: Any, where: LocationSelector | None, req: pol.RequestFacts) -> None:
        """PolicyRefused, naming the rule, when renewing ``cert`` (at the locations ``where`` selects)
        with ``req`` breaks a LOCKED policy value for a location's environment or owner."""
        doc = self.current().doc
        if not any(s.locked for s in doc.scopes):
            return
        owners = self.owners
        rules = owners.list_rules()
        explicit = owners.explicit_for([cert])
        locs = [loc for loc in cert.locations if getattr(loc, "status", "present") == "present"
                and (where is None or where.matches(loc))]
        breaches: list[pol.Finding] = []
        if not locs:
            breaches = pol.locked_breaches(req, own.resolve(cert, None, rules, explicit), doc)
        for loc in locs:
            a = own.resolve(cert, loc, rules, explicit)
            breaches.extend(pol.locked_breaches(req, a, doc, where=f"{loc.hostname}:{loc.path}"))
        if breaches:
            first = breaches[0]
            more = f" (and {len(breaches) - 1} more)" if len(breaches) > 1 else ""
            raise pol.PolicyRefused(f"renewal refused by locked policy rule {first.rule}: {first.reason}{more}")


@dataclass(frozen=True, slots=True)
class _Loc:
    hostname: str
    status: str = "present"


__all__ = ["PolicyStore", "ViolationView", "NewViolation", "OnNewViolation", "PolicyVersion", "EvalStats", "location_key", "active_key"]
