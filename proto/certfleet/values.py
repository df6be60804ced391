"""The value grammar the agent and the collector share: durations and sizes.

One grammar for the whole product, so that ``scan_interval = "1h30m"`` in an
agent's config and ``token_ttl = "1h30m"`` in the collector's mean the same:

- a duration is a number of seconds (``90``, ``"90"``, ``1.5``) or a sequence of
  number-unit parts with units ``ms``, ``s``, ``m``, ``h``, ``d``, ``w``
  (``"30s"``, ``"15m"``, ``"1h30m"``, ``"2d"``, ``"1w"``, ``"1.5h"``; spaces between
  parts are allowed);
- a size is a number of bytes (``1048576``) or a number with ``B``, ``K``/``KB``/``KiB``,
  ``M``/``MB``/``MiB``, ``G``..., ``T``... (powers of 1024).

Both raise :class:`ValueError` with a message that is safe to show a user; the
caller adds where the value came from (file and line, or the option). This
module imports nothing of the project: ``agent`` and ``collector`` both use it
and neither may import the other.
"""
from __future__ import annotations

import math
import re

__all__ = ["parse_duration", "parse_size", "DURATION_UNITS", "SIZE_UNITS"]

#: seconds per duration unit
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
#: bytes per size unit (the first letter of K, KB, KiB, ...)
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", re.I)
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*((?:[kmgt](?:i?b)?|b)?)", re.I)
_EXAMPLES = '"30s", "15m", "1h30m", "2d", "1w" or a number of seconds'


def parse_duration(value: str | int | float) -> float:
    """Seconds in ``value``: a number of seconds, or parts such as ``"1h30m"``.

    Zero is allowed (callers that need a positive duration say so); negative,
    infinite and NaN values are refused.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r} (use e.g. {_EXAMPLES})")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError(f"empty duration (use e.g. {_EXAMPLES})")
        try:
            seconds = float(text)
        except ValueError:
            seconds = _parts(value, text.replace(" ", ""))
    else:
        raise ValueError(f"not a duration: {value!r} (use e.g. {_EXAMPLES})")
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"a duration must be a finite number that is not negative: {value!r}")
    return seconds


def _parts(value: str, compact: str) -> float:
    pos = 0
    seconds = 0.0
    for m in _PART.finditer(compact):
        if m.start() != pos:
            break
        seconds += float(m.group(1)) * DURATION_UNITS[m.group(2).lower()]
        pos = m.end()
    if pos == 0 or pos != len(compact):
        raise ValueError(f"not a duration: {value!r} (use e.g. {_EXAMPLES})")
    return seconds


def parse_size(value: str | int) -> int:
    """Bytes in ``value``: ``1048576``, ``"512KB"``, ``"10MB"``, ``"1GiB"``, ``"200B"``; must be positive."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        m = _SIZE.fullmatch(value.strip())
        if not m:
            raise ValueError(f"not a size: {value!r} (use e.g. \"512KB\", \"10MB\" or a number of bytes)")
        unit = m.group(2).lower()[:1]
        n = int(float(m.group(1)) * SIZE_UNITS["" if unit == "b" else unit])
    else:
        raise ValueError(f"not a size: {value!r}")
    if n <= 0:
        raise ValueError(f"a size must be positive: {value!r}")
    return n
