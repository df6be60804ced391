"""Values given on the command line that more than one command reads: times and horizons.

Durations go through the product's one grammar (``collector.config.core.parse_duration``, i.e.
``certfleet/values.py``); what a bare number means stays each flag's own (days here, seconds
for ``--ttl``). Errors are :class:`~collector.errors.CollectorError` subclasses naming the flag.
"""
from __future__ import annotations

import datetime as dt

from collector.config.core import parse_duration
from collector.errors import InvalidInput

UTC = dt.timezone.utc


def parse_time(value: str, what: str) -> dt.datetime:
    """An ISO 8601 date or time; without a zone it is UTC. ``2026-01-31``, ``2026-01-31T10:00Z``, ..."""
    v = value.strip()
    if v.endswith(("Z", "z")):
        v = v[:-1] + "+00:00"
    try:
        t = dt.datetime.fromisoformat(v)
    except ValueError:
        raise InvalidInput(f"{what}: {value!r} is not an ISO 8601 time (e.g. 2026-01-31 or 2026-01-31T10:00:00Z)") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def is_number(value: str) -> bool:
    """``value`` is a bare number (``30``, ``1.5``), no unit."""
    try:
        float(value)
    except ValueError:
        return False
    return True


def days_or_duration(value: str, what: str) -> int:
    """Seconds in a horizon such as ``--expiring-within``: a bare number of days (``30`` is 30 days), or a
    duration in the product's grammar (``30d``, ``12h``, ``1w``, ``1d12h``)."""
    v = value.strip()
    return int(parse_duration(v + "d" if is_number(v) else v, what))


def seconds(value: str, what: str) -> int:
    """Whole seconds in a duration such as ``--ttl``: ``30m``, ``1h30m``, ``2d``, or a bare number of seconds."""
    return int(parse_duration(value, what))
