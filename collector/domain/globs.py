"""Globs over host names, DNS names and paths, as assignment rules and policy scopes write them.

- a DNS glob (host names, SANs) is compared label by label, case-insensitively: ``*`` and ``?``
  stay within one label, ``**`` spans labels (``**.example.com`` also matches ``example.com``); a
  pattern without a dot may match the short host name too;
- a path glob: ``*`` and ``?`` stay within one path segment, ``**`` spans any number of them; a
  pattern without ``/`` is matched against the file name; backslashes count as ``/``;
  case-sensitive except for Windows paths (drive letter or backslash).
"""
from __future__ import annotations

import functools
import re

from collector.errors import InvalidInput

__all__ = ["check_glob", "dns_matches", "dns_regex", "path_matches", "path_regex"]


def _glob_regex(pattern: str, sep: str) -> str:
    """A glob as a regular expression: ``*``/``?`` within one ``sep``-separated part, ``**`` across parts."""
    not_sep = f"[^{re.escape(sep)}]"
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            j = i
            while j < n and pattern[j] == "*":
                j += 1
            if j - i >= 2:
                if j < n and pattern[j] == sep:        # "**/" : zero or more whole parts
                    out.append(f"(?:.*{re.escape(sep)})?")
                    j += 1
                else:
                    out.append(".*")
            else:
                out.append(f"{not_sep}*")
            i = j
        elif c == "?":
            out.append(not_sep)
            i += 1
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:                                 # no closing bracket: a literal "["
                out.append(re.escape(c))
                i += 1
                continue
            body = pattern[i + 1:j]
            negate = body[:1] in ("!", "^")
            if negate:
                body = body[1:]
            body = body.replace("\\", "\\\\")
            out.append(f"[{'^' if negate else ''}{body}]")
            i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def path_regex(pattern: str, insensitive: bool = False) -> re.Pattern[str]:
    p = pattern.replace("\\", "/")
    return re.compile(_glob_regex(p, "/"), re.IGNORECASE if insensitive else 0)


@functools.lru_cache(maxsize=4096)
def dns_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(_glob_regex(pattern.lower(), "."), re.IGNORECASE)


def _windows_path(path: str) -> bool:
    return "\\" in path or bool(re.match(r"[A-Za-z]:", path))


def path_matches(pattern: str, path: str) -> bool:
    """``pattern`` (a path glob, see module doc) matches ``path``."""
    insensitive = _windows_path(path) or _windows_path(pattern)
    p = path.replace("\\", "/")
    if "/" not in pattern.replace("\\", "/"):
        p = p.rsplit("/", 1)[-1]
    return path_regex(pattern, insensitive).fullmatch(p) is not None


def dns_matches(pattern: str, name: str, short_too: bool = False) -> bool:
    """``pattern`` (a DNS glob) matches ``name``; with ``short_too`` a dotless pattern also tries the first label."""
    rx = dns_regex(pattern)
    name = name.strip().rstrip(".").lower()
    if rx.fullmatch(name):
        return True
    return short_too and "." not in pattern and rx.fullmatch(name.split(".", 1)[0]) is not None


def check_glob(value: str, what: str) -> str:
    v = (value or "").strip()
    if not v:
        return ""
    try:
        (path_regex if what == "path" else dns_regex)(v)
    except re.error as e:
        raise InvalidInput(f"{what} pattern {value!r} is not a valid glob: {e}") from None
    return v
