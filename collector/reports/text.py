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


# -- untrusted text on the way out (issue 12) ---------------------------------------------------

#: a CSV cell starting with one of these is run as a formula by spreadsheets
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> object:
    """THE formula guard for every CSV the product writes: a text cell that a spreadsheet would run
    as a formula gets a leading ``'`` (other values pass unchanged)."""
    if isinstance(value, str) and value[:1] in _FORMULA_START:
        return "'" + value
    return value


class SafeCsv:
    """A ``csv.writer``/``csv.DictWriter`` whose every cell goes through :func:`csv_safe`."""

    def __init__(self, writer: object) -> None:
        self._w = writer

    def writeheader(self) -> None:
        self._w.writeheader()  # type: ignore[attr-defined]

    def writerow(self, row: object) -> None:
        if isinstance(row, dict):
            self._w.writerow({k: csv_safe(v) for k, v in row.items()})  # type: ignore[attr-defined]
        else:
            self._w.writerow([csv_safe(v) for v in row])  # type: ignore[attr-defined, union-attr]

    def writerows(self, rows: object) -> None:
        for r in rows:  # type: ignore[attr-defined]
            self.writerow(r)


def _escape_char(ch: str) -> str:
    return f"\\u{ord(ch):04x}"


def _is_control(ch: str) -> bool:
    o = ord(ch)
    # C0, DEL, C1; and the bidi overrides/isolates that reorder what a terminal shows
    return o < 0x20 or 0x7F <= o <= 0x9F or 0x202A <= o <= 0x202E or 0x2066 <= o <= 0x2069


def terminal_safe(text: str, keep: str = "") -> str:
    """``text`` with every control character (escape sequences, carriage returns, bells, bidi
    overrides) shown as ``\\uXXXX``, so agent-supplied text cannot move the cursor, fake a row or
    retitle the terminal; characters in ``keep`` (e.g. newline) pass."""
    if not any(_is_control(ch) and ch not in keep for ch in text):
        return text
    return "".join(_escape_char(ch) if _is_control(ch) and ch not in keep else ch for ch in text)


class TerminalSafeStream:
    """A text stream that escapes control characters in everything written to it (newlines, tabs and
    the CRLF that ends a CSV row pass): the admin CLI writes its output through one."""

    def __init__(self, stream: object) -> None:
        self._s = stream

    def write(self, text: str) -> int:
        safe = terminal_safe(text.replace("\r\n", "\n"), keep="\n\t")
        if "\r\n" in text:
            safe = safe.replace("\n", "\r\n")
        return self._s.write(safe)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._s, name)
