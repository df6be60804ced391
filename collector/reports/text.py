"""Text helpers shared by the report renderer and the admin CLI's tables: pure functions of strings.

``short_dn`` (the CN of an RFC 4514 DN), ``fit`` and ``fit_left`` (cut a cell to a width with "…",
keeping its start or its end). Imports nothing of the project: the reports
(:mod:`collector.reports.model`, :mod:`collector.reports.render`) and the CLI wing
(:mod:`collector.cli.format`) both use it, and neither depends on the other for it.
"""
from __future__ import annotations


def short_dn(dn: str) -> str:
    """The CN of an RFC 4514 DN if it has one, else the DN."""
    for part in _split_dn(dn):
        if part.upper().startswith("CN="):
            return part[3:]
    return dn


def _split_dn(dn: str) -> list[str]:
    parts, cur, esc = [], [], False
    for ch in dn:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\":
            cur.append(ch)
            esc = True
        elif ch == ",":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, its end replaced by "…" when cut."""
    if width <= 1:
        return text[:width]
    return text if len(text) <= width else text[: width - 1] + "…"


def fit_left(text: str, width: int) -> str:
    """Like :func:`fit`, but keeps the end (a path's file name) and cuts the start."""
    if width <= 1:
        return text[-width:] if width else ""
    return text if len(text) <= width else "…" + text[len(text) - width + 1:]
