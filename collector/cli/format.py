"""What every command's output is made of: times from the wire, JSON, and tables fitted to the terminal.

Pure functions of their arguments (``now`` is passed in). Each command module shapes its own
messages into rows and dicts with these (certificates in ``certs.py``, jobs in ``jobs.py``, ...).
The text helpers shared with the report renderer (``short_dn``, ``fit``, ``fit_left``) live in
:mod:`collector.reports.text` and are offered here too, so that commands need one import.
"""
from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any, Iterable, Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from collector.reports.model import days_left
from collector.reports.text import fit, fit_left, short_dn, terminal_safe

__all__ = ["ago", "days_left", "dumps", "fit", "fit_left", "iso", "render_table", "short_dn", "ts"]


def ts(value: Timestamp, present: bool = True) -> dt.datetime | None:
    """A wire timestamp as an aware UTC datetime; None when absent (not ``present``, or zero)."""
    if not present or (value.seconds == 0 and value.nanos == 0):
        return None
    return value.ToDatetime(tzinfo=dt.timezone.utc)


def iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 with ``Z`` and the microseconds kept (the JSON outputs' times); None stays None."""
    return value.isoformat().replace("+00:00", "Z") if value else None


def ago(delta: dt.timedelta) -> str:
    """``40s ago``, ``12m ago``, ``5h ago``, ``3d ago`` (in one unit, rounded down)."""
    s = max(0, int(delta.total_seconds()))
    if s < 120:
        return f"{s}s ago"
    if s < 7200:
        return f"{s // 60}m ago"
    if s < 172800:
        return f"{s // 3600}h ago"
    return f"{s // 86400}d ago"


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False)


def render_table(headers: Sequence[str], rows: Iterable[Sequence[str]], width: int, flex: int) -> str:
    """Columns sized to their content; column ``flex`` gives way (cut at its start) so the table fits ``width``."""
    rows = [[terminal_safe(str(v)) for v in r] for r in rows]   # agent-supplied text: no control characters
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    total = sum(widths) + 2 * (len(widths) - 1)
    if total > width:
        widths[flex] = max(12, widths[flex] - (total - width))
    out = io.StringIO()
    line = "  ".join(fit(h, w).ljust(w) for h, w in zip(headers, widths))
    out.write(line.rstrip() + "\n")
    for r in rows:
        cells = [(fit_left if i == flex else fit)(v, w).ljust(w) for i, (v, w) in enumerate(zip(r, widths))]
        out.write("  ".join(cells).rstrip() + "\n")
    return out.getvalue()
