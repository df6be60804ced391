"""Inventory reports to the collector: full the first time, deltas after.

A report is built while the scan runs and streamed in chunks, so neither side
holds the whole inventory's certificate data at once. The acknowledged state
(agent/state.py) moves forward only when the collector says it stored the
report; a failed or lost report is simply recomputed from disk next time, so
nothing is lost while the collector is unreachable.
"""
from __future__ import annotations

import datetime as dt
import logging
import pathlib
import platform
import socket
import uuid
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from agent import __version__
from agent.errors import AgentError
from agent.discovery.annotate import FileAnnotator
from agent.inventory import MATCHES, MISMATCH, NO_KEY, UNKNOWN, FoundCert, ScanProblem
from agent.scan.scanner import Scanner
from agent.sources.base import LocationSource, SourceError
from agent.state import SyncState, key_from_str, key_str, load_state, save_state
from certfleet.v1 import agent_pb2, agent_pb2_grpc, common_pb2

log = logging.getLogger(__name__)

CHUNK = 1000            # locations per chunk
REPORT_TIMEOUT = 600.0  # seconds for one whole report

_KEY_MATCH = {
    NO_KEY: common_pb2.KEY_MATCH_NO_KEY,
    MATCHES: common_pb2.KEY_MATCH_MATCHES,
    MISMATCH: common_pb2.KEY_MATCH_MISMATCH,
    UNKNOWN: common_pb2.KEY_MATCH_UNKNOWN,
}


class SyncError(AgentError):
    """A report could not be delivered or was not stored."""


def _ts(seconds: float | None = None, when: dt.datetime | None = None) -> Timestamp:
    t = Timestamp()
    if when is not None:
        t.FromDatetime(when)
    elif seconds is not None:
        t.FromNanoseconds(int(seconds * 1e9))
    return t


def host_info(hostname: str, labels: dict[str, str]) -> common_pb2.HostInfo:
    addresses: list[str] = []
    try:
        import psutil

        for addrs in psutil.net_if_addrs().values():
            for a in addrs:
                if a.family in (socket.AF_INET, socket.AF_INET6) and not a.address.startswith("fe80"):
                    addresses.append(a.address.split("%")[0])
    except Exception:  # noqa: BLE001 - addresses are informative only
        log.debug("could not list addresses", exc_info=True)
    return common_pb2.HostInfo(
        hostname=hostname, os=platform.system(), os_version=platform.release(),
        agent_version=__version__, addresses=sorted(set(addresses)), labels=labels,
    )


def location_msg(c: FoundCert) -> common_pb2.Location:
    k = c.key
    msg = common_pb2.Location(
        key=common_pb2.LocationKey(store_type=k.store_type, path=k.path, alias=k.alias, chain_index=k.chain_index),
        certificate_der=c.der,
        fingerprint_sha256=c.fingerprint,
        has_private_key=c.has_private_key,
        key_encrypted=c.key_encrypted,
        key_match=_KEY_MATCH.get(c.key_match, common_pb2.KEY_MATCH_UNSPECIFIED),
        entry_type=c.entry_type,
        file_owner=c.file_owner,
        file_group=c.file_group,
        file_mode=c.file_mode,
        file_mtime=_ts(seconds=c.file_mtime),
        labels=dict(c.labels),
        role=c.role,
        processes=[common_pb2.ProcessLink(
            pid=p.pid, name=p.name, executable=p.executable, user=p.user, service=p.service, listen=list(p.listen),
            evidence=p.evidence, config_path=p.config_path, suggested_reload=p.suggested_reload,
        ) for p in c.processes],
        iis_bindings=[common_pb2.IisBinding(
            site=b.site, protocol=b.protocol, ip=b.ip, port=b.port, host_name=b.host_name, sni=b.sni,
            certificate_hash=b.certificate_hash, store_name=b.store_name,
        ) for b in c.iis_bindings],
    )
    if c.endpoint is not None:
        e = c.endpoint
        msg.endpoint.CopyFrom(common_pb2.EndpointInfo(
            host=e.host, port=e.port, sni=e.sni, protocol=e.protocol, cipher=e.cipher, starttls=e.starttls,
            chain_valid=e.chain_valid, validation_error=e.validation_error,
            chain_fingerprints=list(e.chain_fingerprints), source=e.source, scan_id=e.scan_id,
            handshake_seconds=e.handshake_seconds,
        ))
    if c.stale is not None:
        st = c.stale
        msg.stale.CopyFrom(common_pb2.StaleService(
            endpoint=st.endpoint, served_fingerprint=st.served_fingerprint, pid=st.pid,
            process_name=st.process_name, since=_ts(seconds=st.since),
        ))
    if c.windows is not None:
        w = c.windows
        msg.windows.CopyFrom(common_pb2.WindowsStoreEntry(
            store_location=w.store_location, store_name=w.store_name, thumbprint=w.thumbprint,
            friendly_name=w.friendly_name, key_exportable=w.key_exportable, key_provider=w.key_provider,
            key_container=w.key_container,
        ))
    return msg


def error_msg(p: ScanProblem, now: dt.datetime) -> common_pb2.ScanError:
    return common_pb2.ScanError(
        store_type=p.store_type, path=p.path, alias=p.alias, reason=p.reason, message=p.message,
        observed_at=_ts(when=now),
    )


@dataclass
class ReportPlan:
    """Filled in while the report's chunks are generated."""

    full: bool
    sequence: int
    current: dict[str, str] = field(default_factory=dict)
    upserts: int = 0
    removals: int = 0
    problems: int = 0


@dataclass(frozen=True)
class SyncOutcome:
    full: bool
    sequence: int
    upserts: int
    removals: int
    problems: int
    certificates_new: int


class Syncer:
    def __init__(
        self, scanner: Scanner, channel: grpc.Channel, state_path: pathlib.Path, agent_id: str,
        hostname: str, labels: dict[str, str], sources: Sequence[LocationSource] = (),
        annotator: FileAnnotator | None | str = "config",
    ) -> None:
        self.scanner = scanner
        self.sources = list(sources)
        # process links and stale-service flags on file locations (agent/discovery/annotate.py);
        # "config": as the scanner's config's [discovery] says, None: off
        self.annotator = FileAnnotator.from_config(scanner.config) if annotator == "config" else annotator
        self.stub = agent_pb2_grpc.AgentServiceStub(channel)
        self.state_path = state_path
        self.state: SyncState = load_state(state_path, agent_id)
        self.hostname = hostname
        self.labels = labels

    def chunks(self, plan: ReportPlan, now: dt.datetime) -> Iterator[agent_pb2.ReportChunk]:
        st = self.state
        header = agent_pb2.ReportHeader(
            report_id=str(uuid.uuid4()), full=plan.full, sequence=plan.sequence,
            base_sequence=0 if plan.full else st.sequence, host=host_info(self.hostname, self.labels),
            scanned_at=_ts(when=now),
        )
        pending: list[common_pb2.Location] = []
        problems: list[common_pb2.ScanError] = []
        first = True

        def flush(final: bool = False, removals: list[common_pb2.LocationKey] | None = None) -> agent_pb2.ReportChunk:
            nonlocal first, pending
            chunk = agent_pb2.ReportChunk(upserts=pending, removals=removals or [])
            if first:
                chunk.header.CopyFrom(header)
                first = False
            if final:
                chunk.errors.extend(problems)
            pending = []
            return chunk

        annot = self.annotator.begin() if isinstance(self.annotator, FileAnnotator) else None
        for fs in self.scanner.scan(force=plan.full):
            entries = fs.entries
            if annot is not None and entries:
                # processes and stale flags first: they are part of the digest
                entries = annot.annotate(entries, reread=lambda fs=fs: self.scanner.read_file(fs.path, fs.store_name).entries)
            if (fs.reused and not plan.full and any(not c.der for c in entries)
                    and any(st.acked.get(key_str(c.key)) != c.digest() for c in entries)):
                # Unchanged since the last scan, but the collector never acknowledged
                # it (an earlier report failed) or its annotations changed: cached
                # entries carry no DER, so read this one file again.
                fs = self.scanner.read_file(fs.path, fs.store_name)
                entries = annot.annotate(fs.entries) if annot is not None else fs.entries
            for p in fs.problems:
                problems.append(error_msg(p, now))
            for c in entries:
                ks = key_str(c.key)
                digest = c.digest()
                plan.current[ks] = digest
                if plan.full or st.acked.get(ks) != digest:
                    pending.append(location_msg(c))
                    plan.upserts += 1
                    if len(pending) >= CHUNK:
                        yield flush()
        if annot is not None:
            annot.finish()
        for source in self.sources:
            try:
                result = source.collect(now)
            except SourceError as e:
                problems.append(error_msg(ScanProblem(source.name, "", "", e.reason, e.message), now))
                # keep what this source last reported: a probe that could not run proves nothing gone
                for ks, digest in st.acked.items():
                    if key_from_str(ks).store_type in source.store_types:
                        plan.current.setdefault(ks, digest)
                continue
            for p in result.problems:
                problems.append(error_msg(p, now))
            for c in result.entries:
                ks = key_str(c.key)
                digest = c.digest()
                plan.current[ks] = digest
                if plan.full or st.acked.get(ks) != digest:
                    pending.append(location_msg(c))
                    plan.upserts += 1
                    if len(pending) >= CHUNK:
                        yield flush()
        plan.problems = len(problems)
        removals: list[common_pb2.LocationKey] = []
        if not plan.full:
            for ks in st.acked.keys() - plan.current.keys():
                k = key_from_str(ks)
                removals.append(common_pb2.LocationKey(store_type=k.store_type, path=k.path, alias=k.alias, chain_index=k.chain_index))
            plan.removals = len(removals)
        yield flush(final=True, removals=removals)

    def sync(self, full: bool = False, now: dt.datetime | None = None) -> SyncOutcome:
        """One report; a full one when asked, when there is no acknowledged base, or when the collector wants it."""
        for attempt in range(3):
            now = now or dt.datetime.now(dt.timezone.utc)
            plan = ReportPlan(full=full or self.state.sequence == 0, sequence=self.state.sequence + 1)
            try:
                ack = self.stub.Report(self.chunks(plan, now), timeout=REPORT_TIMEOUT)
            except grpc.RpcError as e:
                raise SyncError(describe_rpc_error(e)) from None
            if ack.stored:
                self.state.sequence = ack.sequence
                self.state.acked = plan.current
                save_state(self.state_path, self.state)
                log.info(
                    "%s report %d stored: %d upserted, %d removed, %d new certificates, %d scan errors",
                    "full" if plan.full else "delta", ack.sequence, ack.locations_upserted,
                    ack.locations_removed, ack.certificates_new, plan.problems,
                )
                outcome = SyncOutcome(plan.full, ack.sequence, plan.upserts, plan.removals, plan.problems, ack.certificates_new)
                if not ack.resync_required:
                    return outcome
            log.info("collector asks for a full report: %s", ack.message or "resync requested")
            full = True
            now = None
        raise SyncError("the collector did not store the report after a full resync")


def describe_rpc_error(e: grpc.RpcError) -> str:
    code = e.code() if hasattr(e, "code") else None
    details = e.details() if hasattr(e, "details") else str(e)
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"collector unreachable: {details}"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return f"the collector refused this agent's identity: {details}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "the collector did not answer in time"
    return f"{code.name if code else 'error'}: {details}"
