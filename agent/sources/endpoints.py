"""TLS endpoints as inventory locations (store_type ``endpoint``).

:class:`EndpointSource` is a :class:`~agent.sources.base.LocationSource`. Each report it

1. lists the TCP ports this host listens on (psutil; not the agent's own, not
   ``[endpoints] exclude_ports``) and adds the ``[endpoints] targets``;
2. probes each once without SNI (a configured host name is sent as SNI), with
   STARTTLS on 25/587 (smtp), 143 (imap), 110 (pop3) and configured ports;
3. probes every endpoint that spoke TLS again once per SNI name: the DNS SANs
   of the certificates in this agent's file stores (at most ``max_sni_names``);
4. adds the results of network scans run for the collector (agent/netscan/).

Each endpoint that presented a certificate becomes a location
``LocationKey("endpoint", "host:port", sni, 0)`` with the leaf, plus one per
certificate the server sent after it (chain_index 1..), so intermediates are
inventoried too (the registry deduplicates certificates by fingerprint). Ports
that do not speak TLS are skipped silently; a configured target that gives no
certificate is a scan problem with the reason (refused, timeout, not_tls,
handshake_failed, unreachable).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import warnings
from typing import Callable, Iterable, Sequence

from cryptography import x509

from agent.config import AgentConfig
from agent.discovery.listeners import Listener, local_listeners
from agent.endpoints.settings import EndpointSettings
from agent.endpoints.starttls import default_starttls
from agent.endpoints.survey import Observation, Target, survey
from agent.errors import AgentError
from agent.inventory import CERTIFICATE, NO_KEY, TRUST_ANCHOR, EndpointFacts, FoundCert, LocationKey, ScanProblem
from agent.netscan.records import load_records
from agent.scan.scanner import Scanner
from agent.sources.base import SourceError, SourceResult

log = logging.getLogger(__name__)

__all__ = ["EndpointSource", "StoreNames", "endpoint_entries", "listener_targets"]

ENDPOINT = "endpoint"
LOCAL_LISTENER = "local_listener"
CONFIGURED = "configured"
NETWORK_SCAN = "network_scan"


def endpoint_entries(obs: Observation, source: str, scan_id: str = "",
                     labels: dict[str, str] | None = None) -> list[FoundCert]:
    """The locations one successful observation gives: the leaf at chain_index 0, then the chain it sent."""
    t = obs.target
    facts = EndpointFacts(
        host=t.host, port=t.port, sni=t.sni, protocol=obs.protocol, cipher=obs.cipher, starttls=t.starttls,
        chain_valid=obs.chain_valid, validation_error=obs.validation_error,
        chain_fingerprints=obs.chain_fingerprints, source=source, scan_id=scan_id,
        handshake_seconds=round(obs.seconds, 4),
    )
    out = []
    for i, der in enumerate((obs.leaf_der, *obs.chain_ders)):
        out.append(FoundCert(
            key=LocationKey(ENDPOINT, t.endpoint, t.sni, i), der=der,
            fingerprint=obs.fingerprint if i == 0 else obs.chain_fingerprints[i - 1],
            has_private_key=False, key_encrypted=False, key_match=NO_KEY, entry_type=CERTIFICATE,
            file_owner="", file_group="", file_mode=0, file_mtime=0.0, labels=dict(labels or {}), endpoint=facts,
        ))
    return out


def with_scans(entry: FoundCert, found_by: dict[LocationKey, list[str]]) -> FoundCert:
    """``entry`` with ``endpoint.scan_ids``: the scans that found its endpoint (looked up by the leaf's
    key, so the chain positions carry them too). Pure."""
    if entry.endpoint is None:
        return entry
    k = entry.key
    ids = found_by.get(LocationKey(k.store_type, k.path, k.alias, 0))
    if not ids:
        return entry
    return dataclasses.replace(entry, endpoint=dataclasses.replace(entry.endpoint, scan_ids=tuple(dict.fromkeys(ids))))


def listener_targets(listeners: Iterable[Listener], settings: EndpointSettings, own_pid: int) -> list[Target]:
    """What to probe of this host's listening sockets: not the agent's own, not excluded ports. Pure."""
    out = []
    for lst in listeners:
        if lst.pid == own_pid or lst.port in settings.exclude_ports:
            continue
        out.append(Target(lst.ip, lst.port, "", default_starttls(lst.port, settings.starttls)))
    return out


def _dns_names(der: bytes) -> list[str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cert = x509.load_der_x509_certificate(der)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except Exception:  # noqa: BLE001 - untrusted input: no SAN, a duplicate or unparseable extension
        return []
    return [n.lower() for n in san.get_values_for_type(x509.DNSName)]


class StoreNames:
    """The DNS names (SANs, wildcards left out: they cannot be sent as SNI) of the certificates in the file stores.

    Reads the stores with a scanner of its own: it re-reads only files that
    changed since its last pass (the scanner's stat cache) and remembers the
    names per fingerprint, so a report costs one stat per file here.
    """

    def __init__(self, config: AgentConfig) -> None:
        self.scanner = Scanner(config)
        self._by_fp: dict[str, tuple[str, ...]] = {}

    def __call__(self) -> list[str]:
        names: dict[str, None] = {}
        seen: dict[str, tuple[str, ...]] = {}
        for fs in self.scanner.scan():
            for e in fs.entries:
                if e.role == TRUST_ANCHOR:
                    continue
                got = self._by_fp.get(e.fingerprint)
                if got is None:
                    if not e.der:
                        continue     # cached without DER and never parsed: next full read gives it
                    got = tuple(n for n in _dns_names(e.der) if not n.startswith("*."))
                seen[e.fingerprint] = got
                names.update(dict.fromkeys(got))
        self._by_fp = seen
        return sorted(names)


class EndpointSource:
    """TLS endpoints of this host, configured ones and network scan results (see the module doc)."""

    name = "endpoints"
    store_types = frozenset({ENDPOINT})

    def __init__(self, config: AgentConfig, *, listeners: Callable[[], Sequence[Listener]] = local_listeners,
                 names: Callable[[], Sequence[str]] | None = None, own_pid: int | None = None) -> None:
        self.config = config
        self.settings = config.endpoints
        self.listeners = listeners
        self.names = names if names is not None else StoreNames(config)
        self.own_pid = os.getpid() if own_pid is None else own_pid
        self.labels = dict(config.labels)

    def _names_for(self) -> Callable[[Target], Sequence[str]]:
        """SNI names per endpoint; the stores are read for them only once some endpoint spoke TLS."""
        cap = self.settings.max_sni_names
        chosen: list[str] | None = None

        def names_for(t: Target) -> Sequence[str]:
            nonlocal chosen
            if chosen is None:
                chosen = []
                if cap:
                    try:
                        names = list(self.names())
                    except Exception:  # noqa: BLE001 - SNI names are an extra: probe without them
                        log.warning("could not read the SNI names from the stores", exc_info=True)
                        names = []
                    if len(names) > cap:
                        log.info("%d SNI names in the stores; trying the first %d on each endpoint "
                                 "([endpoints] max_sni_names)", len(names), cap)
                    chosen = names[:cap]
            return [n for n in chosen if n != t.sni]
        return names_for

    def targets(self) -> tuple[list[Target], set[Target]]:
        """(every target, the configured ones). Raises SourceError when the socket table cannot be read."""
        s = self.settings
        configured = []
        for t in s.targets:
            if not t.starttls:
                t = Target(t.host, t.port, t.sni, default_starttls(t.port, s.starttls))
            configured.append(t)
        targets = list(configured)
        if s.listeners:
            try:
                found = self.listeners()
            except Exception as e:  # noqa: BLE001 - psutil.Error, OSError: the source cannot look at all
                raise SourceError("unreadable", f"cannot list this host's listening sockets: {e}") from None
            have = {(t.host, t.port) for t in configured}
            targets += [t for t in listener_targets(found, s, self.own_pid) if (t.host, t.port) not in have]
        return targets, set(configured)

    def collect(self, now: dt.datetime) -> SourceResult:
        s = self.settings
        targets, configured = self.targets()
        try:
            first, extra = survey(targets, self._names_for(), concurrency=s.concurrency,
                                  rate_per_second=s.rate, timeout=s.timeout, ca_file=s.ca_file)
        except AgentError as e:
            raise SourceError("unreadable", str(e)) from None
        result = SourceResult()
        keys: set[LocationKey] = set()

        def add(entries: list[FoundCert]) -> None:
            if entries and entries[0].key not in keys:       # first wins: configured, listeners, newest scan
                keys.update(e.key for e in entries)
                result.entries.extend(entries)

        found_by: dict[LocationKey, list[str]] = {}          # leaf key -> the scans that found it, newest first

        configured_at = {(t.host, t.port) for t in configured}
        for o in first + extra:      # SNI answers (extra) belong to the endpoint's source
            src = CONFIGURED if (o.target.host, o.target.port) in configured_at else LOCAL_LISTENER
            if o.ok:
                add(endpoint_entries(o, src, labels=self.labels))
            elif src == CONFIGURED:
                result.problems.append(ScanProblem(ENDPOINT, o.target.endpoint, o.target.sni, o.error, o.detail))
            else:
                log.debug("not a TLS endpoint: %s", o.detail)
        for rec in load_records(self.config.data_dir):
            for o in rec.results:
                entries = endpoint_entries(o, NETWORK_SCAN, rec.scan_id, self.labels)
                if entries:
                    found_by.setdefault(entries[0].key, []).append(rec.scan_id)
                add(entries)
        if found_by:      # a scan's results list every TLS endpoint it found, whoever recorded it first
            result.entries[:] = [with_scans(e, found_by) for e in result.entries]
        log.info("endpoints: %d probed, %d TLS, %d more by SNI, %d problems", len(targets),
                 sum(1 for o in first if o.ok), len(extra), len(result.problems))
        return result
