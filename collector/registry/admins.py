"""Administrators' client certificates in the registry (``admin_identities``), by serial.

An identity has a role (admin, operator, owner, auditor); role ``owner`` acts for one team,
a registered owner. Recording and revoking are audited in their transaction.

Use it as ``Registry.admins`` (the Registry's admin identity methods forward here) or
``AdminStore(engine)``.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, select, update

from collector.errors import InvalidInput, NotFound
from collector.registry import audit, db
from collector.registry.lookup import normalize_serial
from collector.registry.models.admins import admin_identities
from collector.registry.models.owners import owners
from collector.registry.sql import dialect_insert
from collector.registry.types import AdminIdentityView

UTC = dt.timezone.utc


class AdminStore(db.Connections):
    """Admin identities on the registry's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record_admin_identity(self, serial: str, name: str, role: str, not_after: dt.datetime,
                              now: dt.datetime, actor: str = "collector", team: str | None = None) -> None:
        """Record an admin identity. Role ``owner`` needs ``team``, a registered owner (NotFound
        otherwise); the other roles take none (InvalidInput)."""
        s = normalize_serial(serial)
        team = (team or "").strip().lower() or None
        if role == "owner" and team is None:
            raise InvalidInput("role owner needs a team: the owner it acts for (see: certfleet owners list)")
        if role != "owner" and team is not None:
            raise InvalidInput(f"only role owner takes a team, not role {role}")
        with self._write() as conn:
            if team is not None and conn.execute(
                    select(owners.c.id).where(owners.c.name == team)).first() is None:
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
        now = now or dt.datetime.now(UTC)
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


__all__ = ["AdminStore"]
