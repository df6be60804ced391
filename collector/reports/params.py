"""Report parameters arrive as strings (a map on the wire); these read them with clear errors."""
from __future__ import annotations

import datetime as dt
from typing import Mapping

from collector.config.core import ConfigError, parse_duration
from collector.errors import InvalidInput

UTC = dt.timezone.utc


def check_known(name: str, params: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        can = ", ".join(allowed) if allowed else "none"
        raise InvalidInput(f"report {name!r} takes no parameter {', '.join(unknown)} (it takes: {can})")


def duration(params: Mapping[str, str], key: str, default: str) -> dt.timedelta:
    """``90d``, ``12h``, ``30m`` or a plain number of days."""
    raw = (params.get(key) or default).strip()
    value = raw if raw[-1:] in "smhd" else raw + "d"
    try:
        seconds = parse_duration(value, key)
    except ConfigError as e:
        raise InvalidInput(f"{key}: {raw!r} is not a duration (use e.g. 90d, 12h)") from e
    if seconds <= 0:
        raise InvalidInput(f"{key}: must be more than zero")
    return dt.timedelta(seconds=seconds)


def time(params: Mapping[str, str], key: str) -> dt.datetime | None:
    """An ISO 8601 date or time (UTC when it has no zone), or None when not given."""
    raw = (params.get(key) or "").strip()
    if not raw:
        return None
    v = raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw
    try:
        t = dt.datetime.fromisoformat(v)
    except ValueError:
        raise InvalidInput(f"{key}: {raw!r} is not an ISO 8601 time (e.g. 2026-01-31 or 2026-01-31T10:00:00Z)") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def limit(params: Mapping[str, str], key: str = "limit") -> int | None:
    """A row limit: a whole number >= 0, or None (no limit) when not given or ``all``."""
    raw = (params.get(key) or "").strip().lower()
    if raw in ("", "all"):
        return None
    try:
        n = int(raw)
    except ValueError:
        raise InvalidInput(f"{key}: {raw!r} is not a whole number of rows (or 'all')") from None
    if n < 0:
        raise InvalidInput(f"{key}: must be 0 or more")
    return n
