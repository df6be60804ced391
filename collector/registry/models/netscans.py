"""Registry table for network scans (on the shared ``Base``: models/base.py).

- ``network_scans``: one row per network scan job an admin gave an agent (address
  ranges x ports, rate limit, per-handshake timeout). The agent reports progress
  on its command stream; the endpoints it finds arrive as locations of store_type
  ``endpoint`` (``endpoint.scan_id`` = this scan) in its inventory reports.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from collector.registry.models.base import Base, Json


class NetworkScan(Base):
    __tablename__ = "network_scans"

    scan_id: Mapped[str] = mapped_column(String(36), primary_key=True)       # uuid4
    agent_id: Mapped[str] = mapped_column(String(64), ForeignKey("agents.agent_id", ondelete="CASCADE"))
    targets: Mapped[list[Any]] = mapped_column(Json)                          # as given: addresses, CIDRs, ranges
    ports: Mapped[list[Any]] = mapped_column(Json)
    rate_per_second: Mapped[float] = mapped_column(Float)
    timeout_seconds: Mapped[float] = mapped_column(Float)
    concurrency: Mapped[int] = mapped_column(Integer)
    starttls: Mapped[dict[str, Any]] = mapped_column(Json)                    # {"25": "smtp", ...}
    sni_names: Mapped[list[Any]] = mapped_column(Json)
    state: Mapped[str] = mapped_column(String(16))                            # queued, sent, running, done, failed
    targets_total: Mapped[int] = mapped_column(Integer)
    probed: Mapped[int] = mapped_column(Integer)
    tls_found: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    finished_at: Mapped[Optional[dt.datetime]]

    __table_args__ = (Index("ix_network_scans_agent_id_state", "agent_id", "state"),)


network_scans = NetworkScan.__table__
