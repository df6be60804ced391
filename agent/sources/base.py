"""The contract of a location source: locations that do not come from store files.

A :class:`LocationSource` is asked once per report for everything it sees now.
File stores go through :mod:`agent.scan.scanner` (with its unchanged-file cache);
sources are cheap enough, or changing enough, to be collected in full every time.
A source that fails as a whole raises :class:`SourceError`: the report then keeps
that source's locations as last acknowledged (a probe that could not run is not
proof that the endpoints are gone) and carries a scan error with the reason.

Implementations: :mod:`agent.sources.endpoints` (TLS endpoints), :mod:`agent.sources.windows_store`
(the Windows certificate store and IIS). This module imports none of them; the agent's
composition root (:mod:`agent.service`) chooses which sources a report asks.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol

from agent.errors import AgentError
from agent.inventory import FoundCert, ScanProblem

__all__ = ["LocationSource", "SourceResult", "SourceError"]


class SourceError(AgentError):
    """The source could not look at all (e.g. no access to the Windows store API)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class SourceResult:
    entries: list[FoundCert] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)


class LocationSource(Protocol):
    name: str                         # shown in scan errors
    store_types: frozenset[str]       # the LocationKey.store_type values this source owns

    def collect(self, now: dt.datetime) -> SourceResult: ...
