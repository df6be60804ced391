"""Process links and stale-service flags on file locations, once per report.

:class:`FileAnnotator` is made once per agent from its config. For each
report, :meth:`FileAnnotator.begin` takes one process snapshot and builds the
link index (agent/discovery/linker.py); :meth:`ReportAnnotation.annotate`
then gives each store file's entries their ``processes`` and, for the
certificate a listening process serves, ``stale``
(agent/discovery/stale.py). Handshakes are made lazily, once per
(address, port, SNI) per report, only for files that a listening process
uses. :meth:`ReportAnnotation.finish` saves ``data_dir/stale.json``.

Trust anchors are not annotated. Entries that come from the scanner's cache
(``der=b""``) are matched through the certificate names remembered by
fingerprint; when those are unknown, the file is read again through the
callback the caller gives.
"""
from __future__ import annotations

import dataclasses
import logging
import pathlib
import time
from typing import Callable, Iterable, Mapping, Sequence

from agent.config import AgentConfig, ReloadAction
from agent.endpoints.survey import Observation, Target, probe_many
from agent.discovery.linker import LinkIndex, Use, build_index
from agent.discovery.processes import ProcessTable, snapshot
from agent.discovery.settings import DiscoverySettings
from agent.endpoints.starttls import default_starttls
from agent.discovery.stale import STALE, Served, StaleState, cert_names, decide, disk_fingerprints, probe_names
from agent.inventory import TRUST_ANCHOR, FoundCert
from agent.state import key_str

log = logging.getLogger(__name__)

__all__ = ["FileAnnotator", "ReportAnnotation", "STATE_FILE"]

STATE_FILE = "stale.json"

Prober = Callable[[Sequence[Target], float], list[Observation]]


def _probe(targets: Sequence[Target], timeout: float) -> list[Observation]:
    return probe_many(targets, concurrency=16, timeout=timeout)


class FileAnnotator:
    """Annotates file locations with the processes that use them and stale-service flags."""

    def __init__(self, settings: DiscoverySettings, reload_actions: Mapping[str, ReloadAction],
                 state_path: pathlib.Path | None, *, clock: Callable[[], float] = time.time,
                 prober: Prober = _probe, take_snapshot: Callable[[], ProcessTable] = snapshot,
                 starttls: Mapping[int, str] | None = None) -> None:
        self.settings = settings
        self.reload_actions = dict(reload_actions)
        self.state_path = state_path
        self.clock = clock
        self.prober = prober
        self.take_snapshot = take_snapshot
        self.starttls = dict(starttls or {})              # port -> STARTTLS protocol ([endpoints] starttls)
        self._names: dict[str, tuple[str, ...]] = {}      # fingerprint -> certificate names, across reports
        self.last_seconds = 0.0                           # how long the last report's discovery took

    @classmethod
    def from_config(cls, config: AgentConfig, **kw: object) -> "FileAnnotator | None":
        """The annotator ``config`` asks for; None when ``[discovery] processes = false`` or there are no stores."""
        settings = config.discovery
        if not settings.processes or not config.stores:
            return None
        kw.setdefault("starttls", config.endpoints.starttls)
        return cls(settings, config.reload_actions, config.data_dir / STATE_FILE, **kw)  # type: ignore[arg-type]

    def begin(self, persist: bool = True) -> "ReportAnnotation":
        """Take the process snapshot for one report (``persist=False``: do not write stale.json)."""
        t0 = time.perf_counter()
        try:
            table = self.take_snapshot()
            index = build_index(table, self.reload_actions)
        except Exception:  # noqa: BLE001 - discovery must never stop a report
            log.warning("process discovery failed; locations are reported without process links", exc_info=True)
            index = LinkIndex()
        self.last_seconds = time.perf_counter() - t0
        log.debug("process discovery: %d processes link %d files (%.3f s)", len(index.paths_by_root),
                  len(index.by_path), self.last_seconds)
        return ReportAnnotation(self, index, StaleState(self.state_path), persist)


class ReportAnnotation:
    """One report's annotation (one snapshot, each handshake once)."""

    def __init__(self, owner: FileAnnotator, index: LinkIndex, state: StaleState, persist: bool) -> None:
        self.owner = owner
        self.index = index
        self.state = state
        self.persist = persist
        self.now = owner.clock()
        self._observed: dict[Target, Observation] = {}
        self._disk: dict[str, frozenset[str]] = {}
        self._keys: set[str] = set()
        self._fingerprints: set[str] = set()
        self.stale_found = 0

    # ----------------------------------------------------------------- public

    def annotate(self, entries: Sequence[FoundCert],
                 reread: Callable[[], Sequence[FoundCert]] | None = None) -> list[FoundCert]:
        """``entries`` (of one file) with ``processes`` and ``stale`` set.

        ``reread`` reads the file again with DER, for cached entries whose
        certificate names this annotator has not seen yet; when it is used, the
        re-read entries are the ones returned.
        """
        out: list[FoundCert] = []
        if not entries:
            return out
        uses = self.index.uses(entries[0].key.path) if entries[0].role != TRUST_ANCHOR else ()
        names = self.owner._names
        if uses:   # names matter only for files a process uses (the stale check); most files have none
            for e in entries:
                if e.der and e.fingerprint not in names:
                    names[e.fingerprint] = cert_names(e.der)
        if uses and reread is not None and any(
                e.key.chain_index == 0 and e.fingerprint not in names for e in entries):
            entries = list(reread())
            for e in entries:
                if e.der:
                    names[e.fingerprint] = cert_names(e.der)
        entries_state = self.state.entries
        for e in entries:
            ks = key_str(e.key)
            # remembered only where needed (a report may hold tens of thousands of locations):
            # keys with a stale entry (checked after the stale check below may add one), and
            # fingerprints whose names are cached
            if e.fingerprint in names:
                self._fingerprints.add(e.fingerprint)
            if e.role == TRUST_ANCHOR or not uses:
                if ks in entries_state:
                    self._keys.add(ks)
                out.append(e if not (e.processes or e.stale) else dataclasses.replace(e, processes=(), stale=None))
                continue
            links = tuple(u.link for u in uses)
            stale = None
            if self.owner.settings.stale_check and e.key.chain_index == 0:
                stale = self._stale(ks, e, uses, entries)
            if ks in entries_state:
                self._keys.add(ks)
            out.append(dataclasses.replace(e, processes=links, stale=stale))
        return out

    def finish(self) -> None:
        """Forget stale entries of locations no longer seen; save the state (when persisting)."""
        self.state.keep_only(self._keys)
        if self.persist:
            self.state.save()
        keep = self._fingerprints | {o.fingerprint for o in self._observed.values() if o.fingerprint}
        names = self.owner._names
        for fp in [fp for fp in names if fp not in keep]:
            del names[fp]

    # ----------------------------------------------------------------- stale check

    def _stale(self, ks: str, e: FoundCert, uses: Sequence[Use], siblings: Sequence[FoundCert]):  # noqa: ANN202
        names = self.owner._names.get(e.fingerprint)
        if not names:
            return None
        serving = [u for u in uses if u.serves and u.listeners]
        if not serving:
            return None
        snis = probe_names(names)
        targets = [Target(lst.ip, lst.port, sni, default_starttls(lst.port, self.owner.starttls))
                   for u in serving for lst in u.listeners for sni in snis]
        observations = self._observe(targets)
        served = [Served(o.target.endpoint, o.target.sni, o.fingerprint if o.ok else "",
                         self._served_names(o), o.error) for o in observations]
        verdict = decide(e.fingerprint, names, served, ())
        if verdict.state == STALE and verdict.served is not None:
            # A port serving the certificate of another file the same process uses is not serving an old copy.
            others = {s.fingerprint for s in siblings if s.fingerprint != e.fingerprint}
            for u in serving:
                for path in self.index.paths_of(u.root):
                    if path != e.key.path:
                        others |= self._disk_fps(path)
            verdict = decide(e.fingerprint, names, served, others)
        root = next((u for u in serving if verdict.served is not None
                     and any(verdict.served.endpoint == lst.endpoint for lst in u.listeners)), serving[0])
        result = self.state.apply(ks, e.fingerprint, verdict, root.link.pid, root.link.name, self.now)
        if result is not None:
            self.stale_found += 1
        return result

    def _observe(self, targets: Iterable[Target]) -> list[Observation]:
        todo = [t for t in dict.fromkeys(targets) if t not in self._observed]
        if todo:
            try:
                for t, o in zip(todo, self.owner.prober(todo, self.owner.settings.probe_timeout), strict=True):
                    self._observed[t] = o
            except Exception:  # noqa: BLE001 - a failed probe run means "unknown", not a failed report
                log.warning("stale check: probing %d endpoints failed", len(todo), exc_info=True)
                for t in todo:
                    self._observed[t] = Observation(t, False, error="probe_failed")
        return [self._observed[t] for t in dict.fromkeys(targets)]

    def _served_names(self, o: Observation) -> tuple[str, ...]:
        if not o.ok or not o.fingerprint:
            return ()
        names = self.owner._names.get(o.fingerprint)
        if names is None and o.leaf_der:
            names = self.owner._names[o.fingerprint] = cert_names(o.leaf_der)
        return names or ()

    def _disk_fps(self, path: str) -> frozenset[str]:
        if path not in self._disk:
            self._disk[path] = disk_fingerprints(path)
        return self._disk[path]

