"""Present locations of the certificates expiring before a time, column-only, a page at a time.

What the ``expiring`` report (collector/reports/expiring.py) and the notifier's expiry
candidates (collector/services/notifier.py) read: per present location the certificate's
fingerprint, subject and not_after, where it sits (agent, hostname, store type, path,
alias, place in chain) and its labels -- and the certificate's issuer and DNS names only
when an assignment rule looks at them. No DER, no full certificate or location views.

Certificates a page at a time along their ``(not_after, fingerprint)`` index, then the
present locations of the page (``ix_locations_fingerprint_status``) with the agent's hostname:
ordered by not_after, fingerprint, hostname, store type, path, alias and chain index,
memory bounded by the page.

The explicit assignments that may apply to those locations are read in bulk, two
statements for the whole window (:meth:`ExpiryStore.explicit`), so that ownership
resolves without a query per page or per certificate.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple

from sqlalchemy import Engine, Text, and_, case, cast, func, literal, select, true, tuple_
from sqlalchemy.dialects.postgresql import ARRAY

from collector.domain import ownership as own
from collector.registry import db
from collector.registry.models.agents import agents
from collector.registry.models.inventory import certificates, locations
from collector.registry.models.owners import explicit_assignments
from collector.registry.owner_rows import explicit_select, explicit_view
from collector.registry.sql import chunked

BATCH = 2000
TRUST_ANCHOR = "trust_anchor"               # locations.role of a trust store entry


def _LOC_ORDER(row: tuple) -> tuple:   # noqa: N802 - a sort key: hostname, store type, path, alias, chain index
    return (row[0], row[2], row[3], row[4], row[5])
LocKey = tuple[str, str, str, str]          # agent_id, store_type, path, alias


class Placement(NamedTuple):
    """One present location of a certificate, with what expiry reports and notices need.

    It has the attributes collector/domain/ownership.py reads from a location (agent_id, hostname,
    store_type, path, alias, labels), so it is passed to the resolver as the location.
    (A named tuple: tens of thousands are made per report, and a tuple is the cheapest.)"""

    fingerprint: str
    subject: str
    not_after: dt.datetime
    agent_id: str
    hostname: str
    store_type: str
    path: str
    alias: str
    chain_index: int
    labels: dict[str, Any]                  # shared between placements with the same labels: do not change
    issuer: str = ""                        # only read when a rule has an issuer condition
    dns_names: tuple[str, ...] = ()         # only read when a rule has a SAN condition

    @property
    def status(self) -> str:
        return "present"

    def facts(self) -> own.CertFacts:
        return own.CertFacts(fingerprint=self.fingerprint, subject=self.subject, issuer=self.issuer,
                             dns_names=self.dns_names)


@dataclass(frozen=True)
class ExplicitIndex:
    """Explicit assignments by certificate and by location; ``at(placement)`` gives those that may apply."""

    by_fingerprint: dict[str, list[own.Explicit]]
    by_location: dict[LocKey, list[own.Explicit]]

    def at(self, p: Placement) -> list[own.Explicit]:
        """The explicit assignments that may apply to ``p`` (location ones first, as resolve takes them)."""
        a = self.by_location.get((p.agent_id, p.store_type, p.path, p.alias))
        b = self.by_fingerprint.get(p.fingerprint)
        if a and b:
            return a + b
        return a or b or []


class ExpiryStore(db.Connections):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def placements(self, before: dt.datetime, *, since: dt.datetime | None = None, with_issuer: bool = False,
                   with_names: bool = False, batch: int = BATCH, services_only: bool = False) -> Iterator[Placement]:
        """Every present location of a certificate with ``since`` <= not_after < ``before``, soonest
        expiry first (then fingerprint, hostname, store type, path, alias, chain index).

        A page of ``batch`` certificates at a time, walking the ``(not_after, fingerprint)`` index
        (keyset: a row-value comparison from the last one), then their present locations by
        ``ix_locations_fingerprint_status`` (hostnames from one read of the agents): two plain statements
        per page, whatever the planner thinks of a join over every location (SQLite without
        statistics, or PostgreSQL before it has analysed a large first report, would start from
        all of them). ``services_only``: leave out trust anchors (locations of role ``trust_anchor``,
        entries of a system or Java trust store: not renewed, not told about)."""
        c, lc, a = certificates.c, locations.c, agents.c
        cert_cols = [c.fingerprint, c.subject, c.not_after]
        if with_issuer:
            cert_cols.append(c.issuer)
        if with_names:
            cert_cols.append(cast(c.sans, Text).label("sans_text"))
        loc_cols = [lc.fingerprint, lc.agent_id, lc.store_type, lc.path, lc.alias, lc.chain_index,
                    cast(lc.labels, Text).label("labels_text"), lc.status, lc.role]
        labels_memo: dict[str | None, dict[str, Any]] = {}
        with self._read() as conn:        # the fleet's hostnames (one row per agent), not a join per page
            hostnames: dict[str, str] = dict(conn.execute(select(a.agent_id, a.hostname)).all())
        after: tuple[dt.datetime, str] | None = None
        while True:
            stmt = select(*cert_cols).where(c.not_after < before)
            if since is not None:
                stmt = stmt.where(c.not_after >= since)
            if after is not None:
                stmt = stmt.where(tuple_(c.not_after, c.fingerprint) > tuple_(
                    literal(after[0], type_=c.not_after.type), literal(after[1], type_=c.fingerprint.type)))
            stmt = stmt.order_by(c.not_after, c.fingerprint).limit(batch)
            by_fp: dict[str, list[Any]] = {}
            with self._read() as conn:
                certs = conn.execute(stmt).all()
                fps = [r.fingerprint for r in certs]
                for part in chunked(fps, batch):
                    # by fingerprint only: a planner without statistics takes "status = 'present'" for
                    # rare and reads every present location by ix_locations_agent_id_status instead
                    for r in conn.execute(self._by_fingerprint(conn, loc_cols, part)):
                        if r[7] != "present" or (services_only and r[8] == TRUST_ANCHOR):
                            continue
                        got = by_fp.get(r[0])
                        row = (hostnames.get(r[1], ""), *r[1:7])
                        if got is None:
                            by_fp[r[0]] = [row]
                        else:
                            got.append(row)
            for cr in certs:
                rows = by_fp.get(cr.fingerprint)
                if not rows:
                    continue                         # not present anywhere
                fp, subject, not_after = cr.fingerprint, cr.subject, cr.not_after
                issuer = cr.issuer if with_issuer else ""
                names = _dns_names(cr.sans_text) if with_names else ()
                if len(rows) > 1:
                    rows.sort(key=_LOC_ORDER)
                for hostname, agent_id, store_type, path, alias, chain_index, lt in rows:
                    labels = labels_memo.get(lt)
                    if labels is None:
                        if len(labels_memo) > 100_000:
                            labels_memo.clear()
                        labels = labels_memo[lt] = _json_dict(lt)
                    yield Placement(fp, subject, not_after, agent_id, hostname, store_type, path, alias, chain_index,
                                    labels, issuer, names)
            if len(certs) < batch:
                return
            after = (certs[-1].not_after, certs[-1].fingerprint)

    @staticmethod
    def _by_fingerprint(conn: Any, cols: list[Any], fps: Any) -> Any:
        """The locations of these certificates. PostgreSQL: one index probe per fingerprint (a
        LATERAL subquery behind OFFSET 0, which the planner may not flatten), as without statistics
        it would rather scan every location for a long IN list; SQLite: the IN list, probed by index."""
        lc = locations.c
        if conn.dialect.name != "postgresql":
            return select(*cols).where(lc.fingerprint.in_(fps))
        wanted = select(func.unnest(literal(list(fps), type_=ARRAY(Text))).label("fp")).subquery()
        per_fp = select(*cols).where(lc.fingerprint == wanted.c.fp).offset(0).lateral()
        return select(*per_fp.c).select_from(wanted.join(per_fp, true()))

    def counts(self, edges: list[dt.datetime], services_only: bool = False) -> list[tuple[int, int]]:
        """(certificates, present locations) per window, for certificates with a present location:
        window 0 is not_after < ``edges[0]``, window k is ``edges[k-1]`` <= not_after < ``edges[k]``.

        One aggregate over the certificates' ``(not_after, fingerprint)`` index joined to their
        present locations (counted per certificate in index order, then per window); no row
        leaves the database. (The join's certificate side is written ``fingerprint || ''`` so
        that the planner cannot start from every location and look each certificate up: SQLite,
        without statistics, and PostgreSQL, before it has analysed a large first report, would.)"""
        c, lc = certificates.c, locations.c
        with self._read() as conn:
            if conn.dialect.name == "postgresql":
                # one short aggregate: compiling it (JIT, which its estimates can trigger) costs more
                conn.exec_driver_sql("SET LOCAL jit = off")
            cert_fp = c.fingerprint.op("||")(literal(""))
            # per certificate (in the index's order: no sort), then per window
            here = lc.status == "present"
            if services_only:   # trust anchors left out, as in placements
                here = and_(here, lc.role != TRUST_ANCHOR)
            present = func.sum(case((here, 1), else_=0))   # (not a filter: see placements)
            per_cert = (
                select(c.not_after.label("na"), c.fingerprint, present.label("n"))
                .select_from(certificates.join(locations, lc.fingerprint == cert_fp))
                .where(c.not_after < edges[-1])
                .group_by(c.not_after, c.fingerprint)
                .subquery()
            )
            window = case(*((per_cert.c.na < e, k) for k, e in enumerate(edges)), else_=len(edges))
            stmt = (select(window.label("w"), func.sum(case((per_cert.c.n > 0, 1), else_=0)), func.sum(per_cert.c.n))
                    .group_by(window))
            got = {int(w): (int(n_certs or 0), int(n_locs or 0)) for w, n_certs, n_locs in conn.execute(stmt)}
        return [got.get(k, (0, 0)) for k in range(len(edges))]

    def explicit(self, before: dt.datetime) -> ExplicitIndex:
        """The explicit assignments that may apply to the present locations of certificates with
        not_after < ``before``: those of such certificates, and those of locations holding one."""
        c, lc, e = certificates.c, locations.c, explicit_assignments.c
        by_fp: dict[str, list[own.Explicit]] = {}
        by_loc: dict[LocKey, list[own.Explicit]] = {}
        # few explicit assignments, many certificates: start from the assignments
        in_window = select(c.fingerprint).where(c.fingerprint == e.fingerprint, c.not_after < before).exists()
        held = (
            select(lc.agent_id, lc.store_type, lc.path, lc.alias)
            .join(certificates, c.fingerprint == lc.fingerprint)
            .where(lc.status == "present", c.not_after < before)
            .where(lc.agent_id == e.agent_id, lc.store_type == e.store_type, lc.path == e.path, lc.alias == e.alias)
        )
        base = explicit_select()
        with self._read() as conn:
            for r in conn.execute(base.where(e.scope == own.SCOPE_CERTIFICATE, in_window)):
                x = explicit_view(r)
                by_fp.setdefault(x.fingerprint, []).append(x)
            for r in conn.execute(base.where(e.scope == own.SCOPE_LOCATION, held.exists())):
                x = explicit_view(r)
                by_loc.setdefault((x.agent_id, x.store_type, x.path, x.alias), []).append(x)
        return ExplicitIndex(by_fp, by_loc)


def _json_dict(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        v = json.loads(text)
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}


def _dns_names(text: str | None) -> tuple[str, ...]:
    try:
        sans = json.loads(text) if text else []
    except ValueError:
        return ()
    return tuple(v for t, v in (s for s in sans if isinstance(s, (list, tuple)) and len(s) == 2) if t == "dns")


__all__ = ["ExpiryStore", "ExplicitIndex", "Placement"]
