"""What a report is: a title, a summary and sections of rows. Pure data, no rendering.

A builder (one module per report in this package) reads the registry and returns
a :class:`Report`; the collector sends it over the wire as it is (ReportService,
proto/certfleet/v1/report.proto) and the CLI renders it (collector/reports/render.py),
so every output format stays on the client.

Cells are plain values: ``str``, ``int``, ``float``, ``bool`` or ``None`` (empty).
Times are ISO 8601 strings in UTC (``2026-01-31T10:00:00Z``), see :func:`iso`.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from typing import Union

from collector.reports.text import short_dn

Value = Union[str, int, float, bool, None]


@dataclass(frozen=True)
class Section:
    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Value, ...]] = field(default_factory=list)
    note: str = ""                       # one line shown under the title ("" for none)


@dataclass(frozen=True)
class Report:
    name: str                            # expiring, owners, coverage, audit, ...
    title: str
    generated_at: dt.datetime
    summary: list[tuple[str, Value]] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)   # the parameters it was built with, as given


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def days_left(not_after: dt.datetime, now: dt.datetime) -> int:
    """Whole days until expiry, rounded down; negative once expired."""
    return math.floor((not_after - now).total_seconds() / 86400)


def ago(delta: dt.timedelta) -> str:
    """``3d 4h``, ``5h 10m``, ``12m``, ``40s``."""
    s = max(0, int(delta.total_seconds()))
    d, rest = divmod(s, 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m}m"
    if m:
        return f"{m}m"
    return f"{sec}s"


def cn_or_dn(dn: str) -> str:
    """The CN of an RFC 4514 DN when it has one (its escapes undone), else the DN (``(empty subject)`` for none)."""
    cn = short_dn(dn or "")
    if cn != dn:
        cn = re.sub(r"\\(.)", r"\1", cn)
    return cn or "(empty subject)"
