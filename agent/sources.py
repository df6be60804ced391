"""Locations that do not come from store files: TLS endpoints, the Windows certificate store.

A :class:`LocationSource` is asked once per report for everything it sees now.
File stores go through :mod:`agent.scan.scanner` (with its unchanged-file cache);
sources are cheap enough, or changing enough, to be collected in full every time.
A source that fails as a whole raises :class:`SourceError`: the report then keeps
that source's locations as last acknowledged (a probe that could not run is not
proof that the endpoints are gone) and carries a scan error with the reason.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from agent.config import AgentConfig
from agent.errors import AgentError
from agent.inventory import FoundCert, ScanProblem

__all__ = ["LocationSource", "SourceResult", "SourceError", "build_sources"]


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


def build_sources(config: AgentConfig) -> Sequence[LocationSource]:
    """The sources this agent's config asks for, in report order."""
    sources: list[LocationSource] = []
    # agent/discovery/ (TLS endpoints) and agent/windows/ (certificate store, IIS) add theirs here.
    from agent.discovery.source import EndpointSource   # local listeners, [endpoints] targets, network scan results
    sources.append(EndpointSource(config))
    windows = config.windows   # [windows] enabled: default true on Windows only
    if windows.enabled:
        from agent.windows.api import default_api
        from agent.windows.store_source import WindowsStoreSource
        sources.append(WindowsStoreSource(windows, default_api(), config.labels))
    return sources
