"""The collector's one small TOML table reader: values by key, unknown keys refused, every error
naming the file and line where the table or key is written.

``tomllib`` gives values but no positions; :class:`Where` finds them again in the file's text
(best effort: a table header, then the key inside it; an inline table or array of tables written
on one line names that line). A :class:`Table` is one table of the document: a read-only mapping
of its values that knows its name in messages (``[notify]``, ``issuer 'internal'``), where it sits
in the document, and which error class its section raises.

A leaf: it imports nothing of the collector but ``collector.errors`` and the product's value
grammar (``certfleet.values``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Mapping

from certfleet.values import parse_duration as _duration
from collector.errors import ConfigError

__all__ = ["ConfigError", "Table", "Where", "parse_duration"]

#: a position in the document: table names and, for arrays of tables, the index (from 0)
Parts = tuple[Any, ...]


def parse_duration(value: str | int | float, what: str = "duration") -> float:
    """Seconds in ``value`` by the product's one value grammar (certfleet/values.py: ``30s``, ``1h30m``,
    ``2d``, ``1w``, plain seconds); a ConfigError naming ``what`` when it is not one."""
    try:
        return _duration(value)
    except ValueError as e:
        raise ConfigError(f"{what}: {e}") from None


_HEADER = re.compile(r"^\s*(\[\[|\[)(?P<name>[^\[\]#]+?)(\]\]|\])\s*(#.*)?$")
_SPLIT = re.compile(r"""\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^.'"\s]+)\s*(?:\.|$)""")


def _dotted(name: str) -> tuple[str, ...]:
    """``a . "b.c" . d`` -> ("a", "b.c", "d")."""
    return tuple(m.group(1).strip("\"'") for m in _SPLIT.finditer(name.strip()) if m.group(1))


class Where:
    """Where a table or key is written in one config file, as ``file:line`` for messages."""

    def __init__(self, path: Path | str | None = None, text: str = "") -> None:
        self.name = str(path) if path else ""
        self.lines = text.splitlines()
        #: (dotted name, array of tables?, line index) of every table header, in order
        self.headers: list[tuple[tuple[str, ...], bool, int]] = []
        for i, line in enumerate(self.lines):
            m = _HEADER.match(line)
            if m:
                self.headers.append((_dotted(m.group("name")), m.group(1) == "[[", i))

    def __call__(self, parts: Parts = (), key: str | None = None) -> str:
        """``file:line`` of ``key`` in the table at ``parts`` (or of the table), ``file`` when the line is
        not found, "" when there is no file (a config made from a dict)."""
        if not self.name:
            return ""
        line = self.line(parts, key)
        return f"{self.name}:{line}" if line else self.name

    def line(self, parts: Parts = (), key: str | None = None) -> int | None:
        """The 1-based line of ``key`` in the table at ``parts``: of the innermost table header that
        is written, then of the next name inside it."""
        path = tuple(parts) + ((key,) if key is not None else ())
        for k in range(len(path), 0, -1):
            start = self._header(path[:k])
            if start is not None:
                rest = path[k:]
                if rest and isinstance(rest[0], str):
                    found = self._key(rest[0], start + 1)
                    if found is not None:
                        return found + 1
                return start + 1
        if path and isinstance(path[0], str):
            found = self._key(path[0], 0)
            return found + 1 if found is not None else None
        return None

    def _header(self, prefix: Parts) -> int | None:
        index = prefix[-1] if isinstance(prefix[-1], int) else None
        names = tuple(p for p in prefix if isinstance(p, str))
        seen = 0
        for name, array, i in self.headers:
            if name != names or array != (index is not None):
                continue
            if index is None or seen == index:
                return i
            seen += 1
        return None

    def _key(self, key: str, start: int) -> int | None:
        pat = re.compile(r"""^\s*(?:"%s"|'%s'|%s)\s*[=.]""" % ((re.escape(key),) * 3))
        end = next((i for _, _, i in self.headers if i >= start), len(self.lines))
        for i in range(start, end):
            if pat.match(self.lines[i]):
                return i
        return None


def _located(where: str, message: str) -> str:
    return f"{where}: {message}" if where else message


class Table(Mapping[str, Any]):
    """One table of the config document, read-only.

    ``label`` names it in messages (``[notify]``, ``[[renewal.auto]] rule 2``, ``issuer 'internal'``);
    ``parts`` is its position for :class:`Where`; ``error`` is the class its section raises (a
    ConfigError); ``noun`` what its entries are called in the unknown-key message.
    """

    def __init__(self, values: Mapping[str, Any] | None, label: str, parts: Parts = (), where: Where | None = None,
                 *, error: type[ConfigError] = ConfigError, noun: str = "key") -> None:
        self._values = dict(values or {})
        self.label = label
        self.parts = tuple(parts)
        self.where = where or Where()
        self.error_class = error
        self.noun = noun

    # -- the mapping --------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Table({self.label}, {sorted(self._values)})"

    # -- errors -------------------------------------------------------------------------

    def at(self, key: str | None = None) -> str:
        """``file:line`` of ``key`` (or of this table); "" without a file."""
        return self.where(self.parts, key)

    def error(self, message: str, key: str | None = None) -> ConfigError:
        """The section's error for ``message``, prefixed with where ``key`` (or the table) is written."""
        return self.error_class(_located(self.at(key), message))

    def check_keys(self, known: Collection[str]) -> None:
        unknown = sorted(set(self._values) - set(known))
        if unknown:
            raise self.error(f"{self.label}: unknown {self.noun}(s) {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(known))})", unknown[0])

    # -- values ------------------------------------------------------------------------

    def duration(self, key: str, default: str | float) -> float:
        """Seconds of the duration at ``key`` (``default`` when it is absent)."""
        try:
            return _duration(self._values.get(key, default))
        except ValueError as e:
            raise self.error(f"{self.label} {key}: {e}", key) from None

    def table(self, key: str, label: str, *, error: type[ConfigError] | None = None, noun: str | None = None) -> Table:
        """The sub-table at ``key`` (empty when absent); ``error``: the class its section raises."""
        value = self._values.get(key)
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise (error or self.error_class)(_located(self.at(key), f"{label} must be a table"))
        return self.sub(value, label, key, error=error, noun=noun)

    def tables(self, key: str, label: Callable[[int], str], what: str) -> list[Table]:
        """The array of tables at ``key`` ([] when absent); ``label(i)`` names the i-th (from 0)."""
        value = self._values.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(f"{what} must be an array of tables", key)
        return [self.sub(v, label(i), key, i) if isinstance(v, Mapping) else self._not_a_table(v, label(i), key, i)
                for i, v in enumerate(value)]

    def _not_a_table(self, value: Any, label: str, key: str, i: int) -> Table:
        raise Table({}, label, (*self.parts, key, i), self.where, error=self.error_class).error(
            f"{label}: expected a table of settings")

    def sub(self, values: Mapping[str, Any], label: str, *parts: Any, error: type[ConfigError] | None = None,
            noun: str | None = None) -> Table:
        """A table inside this one, at ``parts`` below it."""
        return Table(values, label, (*self.parts, *parts), self.where, error=error or self.error_class,
                     noun=noun or self.noun)
