"""Auto-renewal rules as values: which locations a ``[[renewal.auto]]`` rule matches, and when.

The config reads the rules (collector/config/renewal.py); the pure plan that applies them is
collector/services/autorenew.py ``plan_renewals`` with the timing of
collector/domain/jobstates.py ``renewal_due``.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from collector.domain.jobstates import MaintenanceWindow

DEFAULT_JITTER = 0.05

__all__ = ["DEFAULT_JITTER", "AutoRule", "first_rule", "path_pattern"]


@dataclass(frozen=True)
class AutoRule:
    """One ``[[renewal.auto]]`` rule; ``index`` counts from 1 in the order of the config."""

    index: int
    template: str
    match: Mapping[str, str] = field(default_factory=dict)
    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    days_before: float | None = None
    percent: float | None = None
    window: MaintenanceWindow | None = None
    jitter: float = DEFAULT_JITTER
    _path_res: tuple[re.Pattern[str], ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_path_res", tuple(path_pattern(p) for p in self.paths))

    def matches(self, loc: Any) -> bool:
        """Whether the rule covers a location (a collector.registry.types.LocationView)."""
        labels = loc.labels or {}
        if any(labels.get(k) != v for k, v in self.match.items()):
            return False
        if self.hosts:
            name = (loc.hostname or "").lower()
            if not any(fnmatch.fnmatchcase(name, h.lower()) for h in self.hosts):
                return False
        if self._path_res and not any(r.fullmatch(loc.path) for r in self._path_res):
            return False
        return True

    def describe_point(self) -> str:
        if self.days_before is not None:
            return f"{_num(self.days_before)} days before expiry reached"
        if self.percent is not None:
            return f"{_num(self.percent)}% of lifetime left"
        return "2/3 of lifetime passed"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def path_pattern(pattern: str) -> re.Pattern[str]:
    """A compiled pattern for a location path: ``*`` and ``?`` stay within one ``/`` segment,
    ``**`` matches any depth (``/etc/nginx/**`` matches everything below /etc/nginx;
    ``/srv/**/tls/*.pem`` also matches ``/srv/tls/a.pem``), ``[...]`` is a character class."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = pattern.find("]", i + 2 if pattern.startswith("[!", i) or pattern.startswith("[]", i) else i + 1)
            if j < 0:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1:j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def first_rule(rules: Iterable[AutoRule], loc: Any) -> AutoRule | None:
    """The rule that decides for ``loc``: the first that matches it."""
    return next((r for r in rules if r.matches(loc)), None)
