"""The grammar under every section of the agent's configuration: secrets, where a key is, table reading.

- :class:`Secret`: a value whose ``repr``/``str`` never show it (keystore passwords).
- :class:`Where`: "file:line" of a section or key, for error messages.
- :class:`Table`: one TOML table being read; it rejects unknown keys and every error it
  makes names the file, the line and the section.
- Durations (``"1h30m"``) and sizes (``"10MB"``) are the product's one grammar,
  :mod:`certfleet.values`, re-exported here.

A leaf: it imports nothing of the agent but its error tree, so the feature sections
(``agent/discovery/settings.py``, ``agent/windows/settings.py`` ...) can read their tables
with it while :mod:`agent.config` composes them.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Collection, Iterator, Mapping

from agent.errors import ConfigError
from certfleet.values import parse_duration, parse_size

__all__ = ["Secret", "Where", "Table", "parse_duration", "parse_size"]


class Secret:
    """A secret string whose ``repr``/``str`` never show the value.

    Call :meth:`reveal` at the single place the value is really needed.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value. Never log or format the result."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> Any:  # pickling would copy the secret somewhere unexpected
        raise TypeError("Secret values cannot be pickled")


class Where:
    """Turns (section, index, key) into "file:line" for messages, best effort."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?")

    def __init__(self, path: Path | None, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.sections: list[tuple[str, int]] = []     # (name, line index)
        for i, line in enumerate(self.lines):
            m = self._HEADER.match(line)
            if m:
                self.sections.append((m.group(2).strip().strip("\"'"), i))

    def __call__(self, section: str | None = None, index: int = 0, key: str | None = None) -> str:
        name = str(self.path) if self.path else "<config>"
        line = self._line(section, index, key)
        return f"{name}:{line}" if line else name

    def _line(self, section: str | None, index: int, key: str | None) -> int | None:
        start, end = 0, len(self.lines)
        if section is not None:
            found = [i for (n, i) in self.sections if n == section]
            if index >= len(found):
                return None
            start = found[index]
            later = [i for (_, i) in self.sections if i > start]
            end = later[0] if later else len(self.lines)
        elif self.sections:
            end = self.sections[0][1]
        if key is None:
            return start + 1 if section is not None else None
        pat = re.compile(r"^\s*[\"']?" + re.escape(key) + r"[\"']?\s*=")
        for i in range(start, end):
            if pat.match(self.lines[i]):
                return i + 1
        return start + 1 if section is not None else None


class Table:
    """One TOML table of the configuration file, read key by key.

    Every error names the file and line (``where(section, index, key)``), then
    ``head``: ``[endpoints]: msg`` by default, ``[discovery] key: msg`` when
    ``keyed`` (the key is named after the head), ``store 'web': msg`` for a
    ``[[store]]`` (``index`` is then the store's position). ``base`` is the
    directory relative paths in the table resolve against.
    """

    __slots__ = ("raw", "where", "section", "index", "head", "keyed", "base")

    def __init__(self, raw: Mapping[str, Any], where: Where, section: str | None, *, index: int = 0,
                 head: str | None = None, keyed: bool = False, base: Path | None = None) -> None:
        self.raw = raw
        self.where = where
        self.section = section
        self.index = index
        self.head = head if head is not None else f"[{section}]"
        self.keyed = keyed
        self.base = base if base is not None else Path.cwd()

    def error(self, key: str | None, msg: str) -> ConfigError:
        """A ConfigError for ``key`` (None: the table itself) naming file, line and section."""
        if self.keyed:
            head = f"{self.head} {key}: " if key else f"{self.head} "
        else:
            head = f"{self.head}: "
        return ConfigError(f"{self.where(self.section, self.index, key)}: {head}{msg}")

    def reject_unknown(self, known: Collection[str]) -> None:
        """Raise for the first key that is not in ``known``: typos never go unnoticed."""
        for key in self.raw:
            if key not in known:
                raise self.error(key, f"unknown key {key!r} (known keys: {', '.join(sorted(known))})")

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.raw

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def boolean(self, key: str, default: bool) -> bool:
        """A true/false key (``key: must be true or false`` otherwise, in the table's style)."""
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, "must be true or false" if self.keyed else f"{key} must be true or false")
        return value

    def duration(self, key: str, default: float) -> float:
        """A duration key in seconds (``"30s"``, ``"1h30m"`` or a number)."""
        try:
            return parse_duration(self.raw.get(key, default))
        except ValueError as e:
            raise self.error(key, str(e)) from None
