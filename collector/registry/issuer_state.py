"""The issuers' shared state: every collector on the database signs with one hierarchy per
internal CA issuer, allocates serials from one log and revokes into one list.

``registry.issuer_state`` (``IssuerStateStore(engine)``) keeps plain records: certificates as
PEM text and keys as the opaque bytes the caller hands in (wrapped by
collector/pki/keywrap.py, or a PKCS#11 label); this room never sees a key in the clear and
imports nothing of the issuers.

- :meth:`create_once` makes the one hierarchy of an issuer: in one writer transaction, under a
  lock (PostgreSQL: a transaction advisory lock per issuer; SQLite: ``BEGIN IMMEDIATE``
  serialises writers), it reads the row and only when there is none calls ``make`` and inserts
  what it returns. Two collectors starting at once: the second waits, then finds the first's.
- :meth:`record_issued` claims a serial (the primary key is the allocation: False when taken).
- :meth:`revise` changes a revocation through the caller's pure ``decide`` on the current
  reason, row-locked, and moves the hierarchy's ``revision``.
- :meth:`next_crl` hands out the next CRL number and the entries, :meth:`store_crl` keeps the
  signed CRL so every collector serves the same bytes until it is old.
"""
from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

from sqlalchemy import Connection, Engine, func, select, text, update
from sqlalchemy.exc import IntegrityError

from collector.registry import db
from collector.registry.models.issuer_state import ca_hierarchies as h_t
from collector.registry.models.issuer_state import ca_issued as i_t
from collector.registry.models.issuer_state import ca_revoked as r_t
from collector.registry.models.issuer_state import issuer_secrets as s_t
from collector.registry.sql import dialect_insert


@dataclass(frozen=True)
class HierarchyRow:
    issuer: str
    origin: str            # generated | imported | migrated
    root_pem: str
    chain_pem: str
    key_store: str         # kek | pkcs11
    key_ref: bytes
    root_key_ref: Optional[bytes]
    kek_id: str
    created_at: dt.datetime
    created_by: str


@dataclass(frozen=True)
class RevokedRow:
    serial: str
    reason: int
    revoked_at: dt.datetime
    not_after: dt.datetime


@dataclass(frozen=True)
class CrlRow:
    der: bytes
    next_update: dt.datetime
    revision: int          # the hierarchy's revision the CRL lists
    current_revision: int  # the hierarchy's revision now


@dataclass(frozen=True)
class IssuedRow:
    serial: str
    fingerprint: str
    not_after: dt.datetime
    names: list[Any]
    template: str
    issued_at: dt.datetime
    issued_by: str


_H_COLS = [h_t.c.issuer, h_t.c.origin, h_t.c.root_pem, h_t.c.chain_pem, h_t.c.key_store, h_t.c.key_ref,
           h_t.c.root_key_ref, h_t.c.kek_id, h_t.c.created_at, h_t.c.created_by]


def _lock_key(issuer: str) -> int:
    return 0x63610000_00000000 | zlib.crc32(f"certfleet-ca:{issuer}".encode())


class IssuerStateStore(db.Connections):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- the hierarchy --------------------------------------------------------------------------

    def get(self, issuer: str) -> HierarchyRow | None:
        with self._read() as conn:
            row = conn.execute(select(*_H_COLS).where(h_t.c.issuer == issuer)).first()
        return HierarchyRow(*row) if row is not None else None

    def list(self) -> list[HierarchyRow]:
        with self._read() as conn:
            rows = conn.execute(select(*_H_COLS).order_by(h_t.c.issuer)).all()
        return [HierarchyRow(*r) for r in rows]

    def create_once(self, issuer: str, make: Callable[[Connection], HierarchyRow]) -> tuple[HierarchyRow, bool]:
        """The issuer's hierarchy, made by ``make`` only when the registry has none; (row, made now).

        ``make`` runs inside the locked transaction and may add rows (e.g. an imported serial log)
        on the connection it is given (see :meth:`import_log`)."""
        with self._write() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(issuer)})
            row = conn.execute(select(*_H_COLS).where(h_t.c.issuer == issuer)).first()
            if row is not None:
                return HierarchyRow(*row), False
            new = make(conn)
            conn.execute(h_t.insert().values(
                issuer=new.issuer, origin=new.origin, root_pem=new.root_pem, chain_pem=new.chain_pem,
                key_store=new.key_store, key_ref=new.key_ref, root_key_ref=new.root_key_ref, kek_id=new.kek_id,
                created_at=new.created_at, created_by=new.created_by, crl_number=0, revision=0, crl_der=None,
                crl_revision=-1, crl_next_update=None))
            return new, True

    def rewrap(self, issuer: str, old_kek_id: str, key_ref: bytes, root_key_ref: bytes | None, kek_id: str) -> bool:
        """Replace the wrapped keys (KEK rotation); False when another collector did it first."""
        with self._write() as conn:
            r = conn.execute(update(h_t).where(h_t.c.issuer == issuer, h_t.c.kek_id == old_kek_id)
                             .values(key_ref=key_ref, root_key_ref=root_key_ref, kek_id=kek_id))
            return r.rowcount == 1

    @staticmethod
    def import_log(conn: Connection, issuer: str, issued: list[IssuedRow], revoked: list[RevokedRow]) -> None:
        """Add a serial log and revocations read elsewhere (a collector's old state.sqlite3)."""
        if issued:
            conn.execute(dialect_insert(conn, i_t).on_conflict_do_nothing(), [
                dict(issuer=issuer, serial=r.serial, fingerprint=r.fingerprint, not_after=r.not_after,
                     names=r.names, template=r.template, issued_at=r.issued_at, issued_by=r.issued_by)
                for r in issued])
        if revoked:
            conn.execute(dialect_insert(conn, r_t).on_conflict_do_nothing(), [
                dict(issuer=issuer, serial=r.serial, reason=r.reason, revoked_at=r.revoked_at, not_after=r.not_after)
                for r in revoked])

    # -- issuing ----------------------------------------------------------------------------------

    def record_issued(self, issuer: str, row: IssuedRow) -> bool:
        """Claim ``row.serial`` for a certificate; False when the serial was used before."""
        try:
            with self._write() as conn:
                conn.execute(i_t.insert().values(
                    issuer=issuer, serial=row.serial, fingerprint=row.fingerprint, not_after=row.not_after,
                    names=row.names, template=row.template, issued_at=row.issued_at, issued_by=row.issued_by))
        except IntegrityError:
            return False
        return True

    def issued_count(self, issuer: str) -> int:
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(i_t).where(i_t.c.issuer == issuer)).scalar_one())

    # -- revocation -------------------------------------------------------------------------------

    def revise(self, issuer: str, serial: str, decide: Callable[[int | None], tuple[str, int]],
               now: dt.datetime, not_after: dt.datetime) -> str:
        """Apply ``decide(current reason or None) -> (action, reason)``: ``insert``, ``update``
        (reason and time), ``reason`` (reason only), ``delete`` or ``none``; returns the action."""
        with self._write() as conn:
            # row lock on the hierarchy: revocations of one issuer are serialised
            conn.execute(select(h_t.c.revision).where(h_t.c.issuer == issuer).with_for_update())
            cur = conn.execute(select(r_t.c.reason).where(r_t.c.issuer == issuer, r_t.c.serial == serial)).first()
            action, reason = decide(None if cur is None else int(cur[0]))
            where = (r_t.c.issuer == issuer, r_t.c.serial == serial)
            if action == "insert":
                conn.execute(r_t.insert().values(issuer=issuer, serial=serial, reason=reason, revoked_at=now,
                                                 not_after=not_after))
            elif action == "update":
                conn.execute(update(r_t).where(*where).values(reason=reason, revoked_at=now))
            elif action == "reason":
                conn.execute(update(r_t).where(*where).values(reason=reason))
            elif action == "delete":
                conn.execute(r_t.delete().where(*where))
            if action != "none":
                conn.execute(update(h_t).where(h_t.c.issuer == issuer).values(revision=h_t.c.revision + 1))
            return action

    def revocations(self, issuer: str) -> list[RevokedRow]:
        with self._read() as conn:
            rows = conn.execute(select(r_t.c.serial, r_t.c.reason, r_t.c.revoked_at, r_t.c.not_after)
                                .where(r_t.c.issuer == issuer).order_by(r_t.c.revoked_at, r_t.c.serial)).all()
        return [RevokedRow(*r) for r in rows]

    # -- CRLs -------------------------------------------------------------------------------------

    def current_crl(self, issuer: str) -> CrlRow | None:
        with self._read() as conn:
            row = conn.execute(select(h_t.c.crl_der, h_t.c.crl_next_update, h_t.c.crl_revision, h_t.c.revision)
                               .where(h_t.c.issuer == issuer)).first()
        if row is None or row[0] is None:
            return None
        return CrlRow(bytes(row[0]), row[1], int(row[2]), int(row[3]))

    def make_crl(self, issuer: str, now: dt.datetime,
                 sign: Callable[[int, list[RevokedRow]], tuple[bytes, dt.datetime]],
                 fresh: Callable[[CrlRow], bool] | None = None) -> bytes:
        """Sign a new CRL (``sign(number, entries) -> (der, next_update)``) under the hierarchy's row
        lock and keep it; with ``fresh``, a kept CRL that ``fresh`` accepts is returned instead
        (so collectors asking at once sign once)."""
        with self._write() as conn:
            row = conn.execute(select(h_t.c.crl_number, h_t.c.revision, h_t.c.crl_der, h_t.c.crl_next_update,
                                      h_t.c.crl_revision).where(h_t.c.issuer == issuer).with_for_update()).first()
            if row is None:
                raise LookupError(issuer)
            number, revision, der, next_update, crl_revision = row
            if fresh is not None and der is not None and fresh(CrlRow(bytes(der), next_update, int(crl_revision),
                                                                      int(revision))):
                return bytes(der)
            entries = [RevokedRow(*r) for r in conn.execute(
                select(r_t.c.serial, r_t.c.reason, r_t.c.revoked_at, r_t.c.not_after)
                .where(r_t.c.issuer == issuer, r_t.c.not_after >= now).order_by(r_t.c.serial)).all()]
            new_der, new_next = sign(int(number) + 1, entries)
            conn.execute(update(h_t).where(h_t.c.issuer == issuer).values(
                crl_number=int(number) + 1, crl_der=new_der, crl_next_update=new_next, crl_revision=revision))
            return new_der

    # -- other secrets (ACME account key) ---------------------------------------------------------

    def get_secret(self, issuer: str, kind: str) -> tuple[bytes, str, str] | None:
        """(wrapped, kek_id, public) of the issuer's secret ``kind``."""
        with self._read() as conn:
            row = conn.execute(select(s_t.c.wrapped, s_t.c.kek_id, s_t.c.public)
                               .where(s_t.c.issuer == issuer, s_t.c.kind == kind)).first()
        return (bytes(row[0]), row[1], row[2]) if row is not None else None

    def put_secret_once(self, issuer: str, kind: str, wrapped: bytes, kek_id: str, public: str,
                        now: dt.datetime) -> bool:
        """Store the secret unless one is there; True when this call stored it."""
        with self._write() as conn:
            r = conn.execute(dialect_insert(conn, s_t).values(
                issuer=issuer, kind=kind, wrapped=wrapped, kek_id=kek_id, public=public, created_at=now,
            ).on_conflict_do_nothing(index_elements=["issuer", "kind"]))
            return r.rowcount == 1

    def rewrap_secret(self, issuer: str, kind: str, old_kek_id: str, wrapped: bytes, kek_id: str) -> bool:
        """Replace a secret wrapped with ``old_kek_id`` (KEK rotation); False when another collector did."""
        with self._write() as conn:
            r = conn.execute(update(s_t).where(s_t.c.issuer == issuer, s_t.c.kind == kind, s_t.c.kek_id == old_kek_id)
                             .values(wrapped=wrapped, kek_id=kek_id))
            return r.rowcount == 1
