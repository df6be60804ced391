"""The local report's rows kept on disk while the scan runs, so memory does not grow with them.

``certfleet-agent scan`` sorts certificates by expiry and prints a summary first; a host with a
100,000-certificate bundle would otherwise hold 100,000 row dicts. :class:`RowSpool` writes each
row as a line of JSON to an unnamed temporary file and keeps only its sort key, its place in the
file and the summary's tallies; the rows are read back, in order, when the report is written.
"""
from __future__ import annotations

import json
import tempfile
from typing import Any, Iterable, Iterator

__all__ = ["RowSpool"]

_TRUST_ANCHOR = "trust_anchor"


class RowSpool:
    """Certificate rows and trust anchor rows, sorted on the way out (soonest expiry first)."""

    def __init__(self, soon_days: int) -> None:
        self.soon_days = soon_days
        self._file = tempfile.TemporaryFile()
        self._certs: list[tuple] = []
        self._anchors: list[tuple] = []
        self._strings: dict[str, str] = {}
        self.expired = self.expiring_soon = self.stale = self.linked = self.not_yet_valid = 0
        #: (store, path) -> trust anchors in that file; store -> expired trust anchors
        self.anchor_files: dict[tuple[str, str], int] = {}
        self.anchor_expired: dict[str, int] = {}

    @classmethod
    def of(cls, rows: Iterable[dict[str, Any]], soon_days: int) -> "RowSpool":
        spool = cls(soon_days)
        for r in rows:
            spool.add(r)
        return spool

    def _intern(self, s: str) -> str:
        return self._strings.setdefault(s, s)

    def add(self, row: dict[str, Any]) -> None:
        data = json.dumps(row, ensure_ascii=False).encode("utf-8")
        f = self._file
        at = f.seek(0, 2)
        f.write(data)
        key = (row["not_after"] is None, row["not_after"] or "", self._intern(row["path"]), row["alias"],
               row["chain_index"], at, len(data))
        days = row["days_left"]
        if row.get("role") == _TRUST_ANCHOR:
            self._anchors.append(key)
            where = (row["store"], key[2])
            self.anchor_files[where] = self.anchor_files.get(where, 0) + 1
            if (days or 0) < 0:
                self.anchor_expired[row["store"]] = self.anchor_expired.get(row["store"], 0) + 1
            return
        self._certs.append(key)
        if days is not None:
            if days < 0:
                self.expired += 1
            elif days < self.soon_days:
                self.expiring_soon += 1
        self.stale += bool(row.get("stale"))
        self.linked += bool(row.get("processes"))
        self.not_yet_valid += bool(row.get("not_yet_valid"))

    @property
    def certificate_count(self) -> int:
        return len(self._certs)

    @property
    def anchor_count(self) -> int:
        return len(self._anchors)

    def certificates(self) -> Iterator[dict[str, Any]]:
        """The service certificate rows, soonest expiry first."""
        return (json.loads(raw) for raw in self._read(self._certs))

    def trust_anchors(self) -> Iterator[dict[str, Any]]:
        return (json.loads(raw) for raw in self._read(self._anchors))

    def certificates_json(self) -> Iterator[str]:
        """The rows of :meth:`certificates` as compact JSON text, as they were written."""
        return (raw.decode("utf-8") for raw in self._read(self._certs))

    def trust_anchors_json(self) -> Iterator[str]:
        return (raw.decode("utf-8") for raw in self._read(self._anchors))

    def _read(self, keys: list[tuple]) -> Iterator[bytes]:
        keys.sort()
        f = self._file
        for key in keys:
            f.seek(key[5])
            yield f.read(key[6])

    def close(self) -> None:
        self._file.close()
