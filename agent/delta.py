"""What a report must carry, given what the collector has acknowledged. Pure: no I/O, no clock.

The acknowledged state (agent/state.py) maps each location (its ``key_str``) to the digest of
everything the collector stores about it. A delta report upserts the locations that are new
or whose digest changed, and removes the acknowledged ones not seen now; a full report
upserts everything and removes nothing (anything it does not list is gone).

:func:`plan` answers that for a finite collection. A report is built while the scan runs
(tens of thousands of locations, never all in memory with their DER), so the report builder
uses :class:`Delta` incrementally: :meth:`Delta.offer` each location as it is found, then
:meth:`Delta.removals` once everything was offered.
"""
from __future__ import annotations

from typing import Collection, Iterable, Mapping

from agent.inventory import FoundCert, LocationKey
from agent.state import key_from_str, key_str

__all__ = ["Delta", "plan"]


class Delta:
    """One report's delta against ``acked``, built as locations are offered."""

    __slots__ = ("acked", "full", "current")

    def __init__(self, acked: Mapping[str, str], full: bool) -> None:
        self.acked = acked
        self.full = full
        self.current: dict[str, str] = {}     # key_str -> digest of everything offered: the next acknowledged state

    def offer(self, entry: FoundCert) -> bool:
        """Note ``entry`` as present now; True when the report must carry it."""
        ks = key_str(entry.key)
        digest = entry.digest()
        self.current[ks] = digest
        return self.full or self.acked.get(ks) != digest

    def keep(self, store_types: Collection[str]) -> None:
        """A source of these store types could not look at all: keep what it last reported (nothing proves it gone)."""
        for ks, digest in self.acked.items():
            if key_from_str(ks).store_type in store_types:
                self.current.setdefault(ks, digest)

    def removals(self) -> list[LocationKey]:
        """Acknowledged locations not offered (none for a full report). Call once everything was offered."""
        if self.full:
            return []
        return [key_from_str(ks) for ks in self.acked.keys() - self.current.keys()]


def plan(entries: Iterable[FoundCert], acked: Mapping[str, str], full: bool = False
         ) -> tuple[list[FoundCert], list[LocationKey]]:
    """``(upserts, removals)`` of a report holding ``entries`` against the ``acked`` state."""
    delta = Delta(acked, full)
    upserts = [e for e in entries if delta.offer(e)]
    return upserts, delta.removals()
