"""Registry tables for owners (on the shared ``Base``: models/base.py).

- ``owners``: teams or roles that answer for certificates, with their contacts.
- ``assignment_rules``: conditions -> owner, environment, criticality, service; applied in
  ``priority`` order (unique, lowest first). See collector/domain/ownership.py for the semantics.
- ``explicit_assignments``: one certificate (by fingerprint) or one location (agent, store
  type, path, alias) given attributes by hand; they override the rules. ``target_key`` is a
  hash of the target, unique, so that assigning the same target again updates it.

Assignments are not stored per certificate: they are resolved from these tables when asked,
so a new rule applies at once to everything already in the registry.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from collector.registry.models.base import BigId, Base, Json


class Owner(Base):
    __tablename__ = "owners"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    contacts: Mapped[list[Any]] = mapped_column(Json)            # e-mail addresses
    webhook: Mapped[str] = mapped_column(Text)                   # "" when none
    escalation: Mapped[str] = mapped_column(Text)                # e-mail address, "" when none
    description: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class AssignmentRule(Base):
    __tablename__ = "assignment_rules"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    priority: Mapped[int] = mapped_column(Integer, unique=True)  # lowest first
    owner_id: Mapped[Optional[int]] = mapped_column(BigId, ForeignKey("owners.id"), index=True)
    environment: Mapped[str] = mapped_column(Text)               # "" = not set by this rule
    criticality: Mapped[str] = mapped_column(Text)
    service: Mapped[str] = mapped_column(Text)
    host_glob: Mapped[str] = mapped_column(Text)                 # "" = any
    path_glob: Mapped[str] = mapped_column(Text)
    san_glob: Mapped[str] = mapped_column(Text)
    issuer_contains: Mapped[str] = mapped_column(Text)
    labels: Mapped[dict[str, Any]] = mapped_column(Json)         # all must equal
    description: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class ExplicitAssignment(Base):
    __tablename__ = "explicit_assignments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    target_key: Mapped[str] = mapped_column(String(64), unique=True)   # sha256 of scope and target
    scope: Mapped[str] = mapped_column(String(16))                     # certificate, location
    # scope "certificate"
    fingerprint: Mapped[Optional[str]] = mapped_column(
        String(64), ForeignKey("certificates.fingerprint"), index=True
    )
    # scope "location" ("" / NULL otherwise)
    agent_id: Mapped[Optional[str]] = mapped_column(
        String(64), ForeignKey("agents.agent_id", ondelete="CASCADE"), index=True
    )
    store_type: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    alias: Mapped[str] = mapped_column(Text)
    owner_id: Mapped[Optional[int]] = mapped_column(BigId, ForeignKey("owners.id"), index=True)
    environment: Mapped[str] = mapped_column(Text)
    criticality: Mapped[str] = mapped_column(Text)
    service: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    assigned_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


owners = Owner.__table__
assignment_rules = AssignmentRule.__table__
explicit_assignments = ExplicitAssignment.__table__
