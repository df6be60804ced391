"""Registry table for administrators' client certificates (``admin_identities``, by serial)."""
from __future__ import annotations

import datetime as dt
from typing import Optional

from sqlalchemy import Boolean, Text
from sqlalchemy.orm import Mapped, mapped_column

from collector.registry.models.base import Base


class AdminIdentity(Base):
    """Client certificates issued to administrators, by serial."""

    __tablename__ = "admin_identities"

    serial: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    not_after: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime]
    revoked: Mapped[bool] = mapped_column(Boolean)
    revoked_at: Mapped[Optional[dt.datetime]]
    team: Mapped[Optional[str]] = mapped_column(Text)     # role owner: the owner (team) it acts for


admin_identities = AdminIdentity.__table__
