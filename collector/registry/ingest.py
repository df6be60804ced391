"""Storing an agent's inventory report: the registry's hot path, in one trip.

    txn = begin_report(engine, agent_id, header, now)   # (Registry.begin_report) locks the agent
    txn.add_upserts(locations)      # any number of chunks, in any order
    txn.add_removals(keys)
    txn.add_errors(scan_errors)
    result = txn.finish()           # commit; or txn.abort() (also on leaving a ``with`` block)

A report is one database transaction, fed chunk by chunk and closed by ``finish`` or
``abort``. Work is done in bulk per chunk: one query finds which certificates are already
known, only new ones are parsed (once per fingerprint, ever), linked to their issuers
(collector/registry/issuer_links.py), and certificates and locations are written in bulk
(collector/registry/bulk.py).

A full report stamps every location it lists with the report's generation; at ``finish``
every present location of the agent with an older stamp is marked removed. A repeated
report (same report id) or a delta on a sequence the registry does not hold is not stored:
``finish`` says why. Nothing about the report is held in memory across chunks.

A renewal job that ends ``verified`` wrote its new certificate at its location
(:func:`record_install`, called when the job's result arrives). A report scanned before that
(``scanned_at`` earlier than the job's ``finished_at``; e.g. the agent's start-up scan, running
while a queued install lands) never puts the old certificate back there: such an entry is
skipped and the location kept as the job left it, until a scan made after the install says
what is in the file.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from typing import Any, Iterator, Sequence

from sqlalchemy import Connection, Engine, Row, bindparam, delete, insert, select, update

from collector.domain.certinfo import CertFacts, name_hash, parse_certificate
from collector.errors import InvalidInput, NotFound, PermissionDenied
from collector.registry import audit, db
from collector.registry.agents import host_values, lock_agent
from collector.registry.bulk import bulk_writer
from collector.registry.issuer_links import issuers_first, link_existing_children, link_new
from collector.registry.models.agents import agents
from collector.registry.models.jobs import jobs
from collector.registry.models.inventory import certificates, locations, scan_errors
from collector.registry.types import (
    LocationIn,
    LocationKeyIn,
    ReportHeaderIn,
    ReportResult,
    ScanErrorIn,
    location_label,
)

MAX_MESSAGE = 4000
#: how long a job's install outranks reports scanned before it (a bound on clock skew between
#: an agent and the collector; a scan made after the install settles the location sooner)
INSTALL_OUTRANKS_SCANS_FOR = dt.timedelta(days=1)
VERIFIED = "verified"       # collector.domain.jobstates.VERIFIED: the install that wrote the file

_APPLY, _REPEAT, _RESYNC = "apply", "repeat", "resync"


def begin_report(engine: Engine, agent_id: str, header: ReportHeaderIn, now: dt.datetime) -> ReportTxn:
    """Start storing a report of an active agent (NotFound, PermissionDenied when revoked); the
    returned transaction holds the agent's row locked and must be finished or aborted."""
    conn = engine.connect().execution_options(**db.WRITE)
    try:
        conn.begin()
        row = lock_agent(conn, agent_id)
        if row is None:
            raise NotFound(f"no agent {agent_id}")
        if row.status != "active":
            raise PermissionDenied(f"agent {agent_id} is revoked")
        return ReportTxn(conn, row, header, now)
    except BaseException:
        conn.rollback()
        conn.close()
        raise


class ReportTxn:
    """One report being stored. Use from one thread at a time; always finish or abort."""

    def __init__(self, conn: Connection, agent: Row[Any], header: ReportHeaderIn, now: dt.datetime) -> None:
        """Made by :func:`begin_report`, with ``conn`` in a transaction and ``agent`` its locked row."""
        self._conn: Connection | None = conn
        self._agent_id: str = agent.agent_id
        self._header = header
        self._now = now
        self._last_sequence: int = agent.last_sequence
        self._resync_requested: bool = agent.resync_requested
        self._generation: int = agent.report_generation + 1
        self._certs: CertificateWriter | None = None
        self._installed: dict[tuple[str, str, str, int], str] | None = None   # see _newer_installs
        self.locations_kept = 0             # entries skipped: an install newer than the scan wrote them
        self.locations_upserted = 0
        self.locations_removed = 0

        if header.report_id and header.report_id == agent.last_report_id:
            self._mode = _REPEAT
        elif not header.full and header.base_sequence != agent.last_sequence:
            self._mode = _RESYNC
        else:
            self._mode = _APPLY
        if self._mode != _APPLY:
            # Nothing will be written: let go of the database while the rest of the
            # report streams in.
            self._release(commit=False)
            return
        # The report carries the agent's complete current set of scan errors.
        conn.execute(delete(scan_errors).where(scan_errors.c.agent_id == self._agent_id))
        self._bulk = bulk_writer(conn)
        self._certs = CertificateWriter(conn, self._bulk, now)

    # -- public -------------------------------------------------------------

    @property
    def certificates_new(self) -> int:
        return self._certs.new if self._certs is not None else 0

    @property
    def applies(self) -> bool:
        """False when the report is a repeat or needs a resync: its content is ignored."""
        return self._mode == _APPLY

    def add_upserts(self, items: Sequence[LocationIn]) -> None:
        if self._skip():
            return
        with self._failing():
            self._add_upserts(items)

    def add_removals(self, keys: Sequence[LocationKeyIn]) -> None:
        if self._skip() or not keys:
            return
        with self._failing():
            conn = self._live()
            t = locations.c
            stmt = (
                update(locations)
                .where(
                    t.agent_id == bindparam("b_agent"), t.store_type == bindparam("b_store"),
                    t.path == bindparam("b_path"), t.alias == bindparam("b_alias"),
                    t.chain_index == bindparam("b_index"), t.status == "present",
                )
                .values(status="removed", removed_at=bindparam("b_now", type_=t.removed_at.type))
            )
            params = [
                {"b_agent": self._agent_id, "b_store": k.store_type, "b_path": k.path, "b_alias": k.alias,
                 "b_index": k.chain_index, "b_now": self._now}
                for k in keys
            ]
            res = conn.execute(stmt, params)
            self.locations_removed += max(res.rowcount, 0)

    def add_errors(self, errors: Sequence[ScanErrorIn]) -> None:
        if self._skip() or not errors:
            return
        with self._failing():
            self._insert_errors([
                {"agent_id": self._agent_id, "store_type": e.store_type, "path": e.path, "alias": e.alias,
                 "reason": e.reason, "message": e.message[:MAX_MESSAGE], "observed_at": e.observed_at}
                for e in errors
            ])

    def finish(self) -> ReportResult:
        """Commit the report (or, for a repeat or a stale delta, say why nothing was stored)."""
        self._check_open()
        h = self._header
        if self._mode == _REPEAT:
            self._closed = True
            return ReportResult(
                stored=True, sequence=self._last_sequence, resync_required=self._resync_requested and not h.full,
                message=f"report {h.report_id} was already stored",
            )
        if self._mode == _RESYNC:
            self._closed = True
            return ReportResult(
                stored=False, sequence=self._last_sequence, resync_required=True,
                message=(f"delta report is based on sequence {h.base_sequence} but the registry holds "
                         f"sequence {self._last_sequence} for this agent; send a full report"),
            )
        with self._failing():
            conn = self._live()
            if h.full:
                t = locations.c
                res = conn.execute(
                    update(locations)
                    .where(t.agent_id == self._agent_id, t.status == "present",
                           t.seen_generation != self._generation)
                    .values(status="removed", removed_at=self._now)
                )
                self.locations_removed += max(res.rowcount, 0)
            values = host_values(h.host)
            values.update(
                last_sequence=h.sequence, last_report_id=h.report_id, last_report_at=self._now,
                last_seen=self._now, report_generation=self._generation,
            )
            if h.full:
                values["resync_requested"] = False
            conn.execute(update(agents).where(agents.c.agent_id == self._agent_id).values(**values))
            # one event per stored report (not per location): the last write before the commit
            audit.record(conn, self._now, f"agent:{self._agent_id}", "inventory.report", f"agent:{self._agent_id}",
                         "full report" if h.full else "delta report", {
                             "report_id": h.report_id, "sequence": h.sequence, "full": h.full,
                             "locations_upserted": self.locations_upserted,
                             "locations_removed": self.locations_removed,
                             "certificates_new": self.certificates_new,
                         })
            self._release(commit=True)
        self._closed = True
        return ReportResult(
            stored=True, sequence=h.sequence, resync_required=self._resync_requested and not h.full,
            message="",
            locations_upserted=self.locations_upserted, locations_removed=self.locations_removed,
            certificates_new=self.certificates_new,
        )

    def abort(self) -> None:
        """Roll back; nothing of the report is stored. Safe to call more than once."""
        self._closed = True
        self._release(commit=False)

    def __enter__(self) -> ReportTxn:
        return self

    def __exit__(self, *_: Any) -> None:
        if not self._closed:
            self.abort()

    # -- internals ------------------------------------------------------------

    _closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this report transaction is already finished or aborted")

    def _skip(self) -> bool:
        self._check_open()
        return self._mode != _APPLY

    def _live(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("this report transaction is already finished or aborted")
        return self._conn

    def _release(self, commit: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if commit:
                conn.commit()
            else:
                conn.rollback()
        finally:
            conn.close()

    @contextlib.contextmanager
    def _failing(self) -> Iterator[None]:
        """A failed step spoils the transaction: roll back at once, and re-raise."""
        try:
            yield
        except BaseException:
            self.abort()
            raise

    def _insert_errors(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._live().execute(insert(scan_errors), rows)

    def _add_upserts(self, items: Sequence[LocationIn]) -> None:
        if not items:
            return
        conn = self._live()
        by_key: dict[tuple[str, str, str, int], LocationIn] = {}
        ders: dict[str, bytes] = {}
        sha256 = hashlib.sha256
        for loc in items:
            fp = sha256(loc.der).hexdigest()
            if loc.fingerprint.lower() != fp:
                raise InvalidInput(
                    f"fingerprint mismatch at {location_label(loc.store_type, loc.path, loc.alias, loc.chain_index)}: "
                    f"reported {loc.fingerprint[:64]!r}, the certificate's SHA-256 is {fp}"
                )
            by_key[(loc.store_type, loc.path, loc.alias, loc.chain_index)] = loc   # last one wins
            ders[fp] = loc.der

        assert self._certs is not None     # made with the transaction of an applied report
        unparseable = self._certs.store(ders)

        now, gen, agent_id = self._now, self._generation, self._agent_id
        rows: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        installed = self._newer_installs(conn)
        kept: list[tuple[str, str, str, int]] = []
        for key, loc in by_key.items():
            fp = loc.fingerprint.lower()
            if key in installed and installed[key] != fp:
                kept.append(key)        # scanned before a job installed another certificate there
                continue
            if fp in unparseable:
                # Keep the rest of the report; this entry becomes one of the host's scan problems.
                errors.append({
                    "agent_id": agent_id, "store_type": loc.store_type, "path": loc.path, "alias": loc.alias,
                    "reason": "corrupt", "message": f"certificate #{loc.chain_index}: {unparseable[fp]}"[:MAX_MESSAGE],
                    "observed_at": now,
                })
                continue
            rows.append({
                "agent_id": agent_id, "store_type": loc.store_type, "path": loc.path, "alias": loc.alias,
                "chain_index": loc.chain_index, "fingerprint": fp, "has_private_key": loc.has_private_key,
                "key_encrypted": loc.key_encrypted, "key_match": loc.key_match, "entry_type": loc.entry_type,
                "file_owner": loc.file_owner, "file_group": loc.file_group, "file_mode": loc.file_mode,
                "file_mtime": loc.file_mtime, "labels": dict(loc.labels), "first_seen": now, "last_seen": now,
                "status": "present", "removed_at": None, "seen_generation": gen,
                "role": loc.role or "service", "endpoint": loc.endpoint, "processes": loc.processes,
                "windows": loc.windows, "stale_served_fingerprint": loc.stale_served_fingerprint,
                "stale_endpoint": loc.stale_endpoint, "stale_detail": loc.stale_detail,
                "stale_since": (loc.stale_since or now) if loc.stale_served_fingerprint else None,
            })
        self._bulk.upsert_locations(rows)
        self._insert_errors(errors)
        self.locations_upserted += len(rows)
        self._stamp_kept(conn, kept)

    def _newer_installs(self, conn: Connection) -> dict[tuple[str, str, str, int], str]:
        """{location key: new fingerprint} of this agent's jobs verified after this report was
        scanned (and within :data:`INSTALL_OUTRANKS_SCANS_FOR`); read once per report."""
        if self._installed is None:
            scanned = self._header.scanned_at
            self._installed = {}
            if scanned is not None:
                j = jobs.c
                rows = conn.execute(
                    select(j.store_type, j.path, j.alias, j.chain_index, j.new_fingerprint)
                    .where(j.agent_id == self._agent_id, j.state == VERIFIED, j.new_fingerprint.is_not(None),
                           j.finished_at > scanned, j.finished_at > self._now - INSTALL_OUTRANKS_SCANS_FOR)
                    .order_by(j.finished_at))
                self._installed = {(r.store_type, r.path, r.alias, r.chain_index): r.new_fingerprint for r in rows}
        return self._installed

    def _stamp_kept(self, conn: Connection, kept: list[tuple[str, str, str, int]]) -> None:
        """Locations an older scan listed with a certificate an install has replaced: left as the
        install wrote them, but counted as listed (a full report does not mark them removed)."""
        if not kept:
            return
        t = locations.c
        conn.execute(
            update(locations).where(
                t.agent_id == bindparam("b_agent"), t.store_type == bindparam("b_store"), t.path == bindparam("b_path"),
                t.alias == bindparam("b_alias"), t.chain_index == bindparam("b_index"))
            .values(seen_generation=self._generation),
            [{"b_agent": self._agent_id, "b_store": k[0], "b_path": k[1], "b_alias": k[2], "b_index": k[3]}
             for k in kept])
        self.locations_kept += len(kept)


def record_install(engine: Engine, agent_id: str, key: LocationKeyIn, certificate_der: bytes,
                   now: dt.datetime) -> bool:
    """A job installed ``certificate_der`` at ``key`` on the agent and the service serves it: the
    registry shows it there now, without waiting for the agent's next scan (which confirms it).
    Waits for a report of the agent being stored (the agent's row lock). False when the registry
    has no such location (the next report adds it)."""
    fp = hashlib.sha256(certificate_der).hexdigest()
    with engine.connect().execution_options(**db.WRITE) as conn, conn.begin():
        if lock_agent(conn, agent_id) is None:
            raise NotFound(f"no agent {agent_id}")
        bad = CertificateWriter(conn, bulk_writer(conn), now).store({fp: certificate_der})
        if bad:
            raise InvalidInput(f"the installed certificate cannot be stored: {bad[fp]}")
        t = locations.c
        where = (t.agent_id == agent_id, t.store_type == key.store_type, t.path == key.path, t.alias == key.alias,
                 t.chain_index == key.chain_index)
        current = conn.execute(select(t.fingerprint, t.status).where(*where)).first()
        if current is None:
            return False
        values: dict[str, Any] = {"fingerprint": fp, "last_seen": now, "status": "present", "removed_at": None}
        if current.fingerprint != fp:
            values.update(first_seen=now, stale_served_fingerprint=None, stale_endpoint=None, stale_detail=None,
                          stale_since=None)
        conn.execute(update(locations).where(*where).values(**values))
        return True


class CertificateWriter:
    """Stores certificates in one transaction: each parsed once, linked to its issuer and children."""

    def __init__(self, conn: Connection, bulk: Any, now: dt.datetime) -> None:
        self.conn = conn
        self._bulk = bulk
        self._now = now
        self._known: set[str] = set()       # fingerprints known to be stored (this transaction)
        self._unlinked_issuers: set[str] | None = None
        self.new = 0

    def store(self, ders: dict[str, bytes]) -> dict[str, str]:
        """Insert the certificates not stored yet; return {fingerprint: reason} for unparseable ones."""
        conn = self.conn
        todo = [fp for fp in ders if fp not in self._known]
        self._known.update(self._bulk.existing_fingerprints(todo))
        new: list[CertFacts] = []
        bad: dict[str, str] = {}
        for fp in todo:
            if fp in self._known:
                continue
            try:
                new.append(parse_certificate(ders[fp]))
            except InvalidInput as e:
                bad[fp] = e.message
        if not new:
            return bad

        links = link_new(conn, new)
        rows = []
        for f in issuers_first(new, links):
            rows.append({
                "fingerprint": f.fingerprint, "subject": f.subject, "issuer": f.issuer,
                "subject_hash": name_hash(f.subject), "issuer_hash": name_hash(f.issuer), "serial": f.serial,
                "sans": [list(s) for s in f.sans], "not_before": f.not_before, "not_after": f.not_after,
                "key_type": f.key_type, "key_size": f.key_size, "key_curve": f.key_curve,
                "signature_algorithm": f.signature_algorithm, "is_ca": f.is_ca, "self_signed": f.self_signed,
                "key_usage": list(f.key_usage), "extended_key_usage": list(f.extended_key_usage),
                "subject_key_id": f.subject_key_id, "authority_key_id": f.authority_key_id,
                "issuer_fingerprint": links.get(f.fingerprint), "der": ders[f.fingerprint], "first_seen": self._now,
            })
        self.new += self._bulk.insert_certificates(rows)
        self._known.update(f.fingerprint for f in new)
        if self._unlinked_issuers is None:   # once per report; includes what was just inserted
            c = certificates.c
            self._unlinked_issuers = set(conn.execute(
                select(c.issuer_hash).distinct().where(c.issuer_fingerprint.is_(None))).scalars())
        else:                                # may over-approximate: harmless, an UPDATE that matches nothing
            self._unlinked_issuers.update(r["issuer_hash"] for r in rows if r["issuer_fingerprint"] is None)
        link_existing_children(conn, new, self._unlinked_issuers)
        return bad
