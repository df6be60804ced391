"""Certificates in the registry, with the locations where they sit.

``CertificateStore`` answers the questions every other store builds on: one certificate
by its fingerprint (or a unique prefix), and certificates matching a filter, streamed a
page at a time along the ``(not_after, fingerprint)`` index. It only reads; certificates
and locations are written by an agent's report (collector/registry/ingest.py).

Use it as ``Registry.certificates`` (``Registry.get_certificate`` and
``Registry.list_certificates`` forward here) or ``CertificateStore(engine)``.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any, Iterator

from sqlalchemy import Connection, Engine, func, literal, select, tuple_

from collector.registry import db
from collector.registry.lookup import resolve_fingerprint
from collector.registry.models.agents import agents
from collector.registry.models.inventory import certificates, locations
from collector.registry.sql import chunked
from collector.registry.types import CertFilter, CertificateView, LocationView, SanView


class CertificateStore(db.Connections):
    """Certificates and their locations on the registry's database (read only)."""

    #: rows per page when streaming certificates
    PAGE_SIZE = 500
    #: location columns read only for one certificate in full (JSON: costly over a whole fleet)
    DETAIL_COLUMNS = ("endpoint", "processes", "windows", "stale_detail")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

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


__all__ = ["CertificateStore"]
