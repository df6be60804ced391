"""The agent service, and the agent's composition root: renew its own identity when due, scan, report, take commands.

This is the one place that chooses implementations for the running agent: the location
sources (:func:`build_sources`), the scanner, the install pipelines (through
:mod:`agent.install`'s dispatch), and the transport to the collector
(:mod:`agent.transport`: the Report RPC, the Connect stream, identity renewal).
Reports run on a schedule with backoff; commands arrive on their own thread.
"""
from __future__ import annotations

import datetime as dt
import logging
import random
import threading

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from agent.commands import CommandHandler, JobDir
from agent.config import AgentConfig
from agent.errors import AgentError
from agent.identity import AgentIdentity, identity_dir, load_identity, make_key_and_csr, save_identity
from agent.jobs import FAILED, InstallCertificate, JobStep, JobUpdate
from agent.keys import PrivateKey
from agent.netscan.runner import ReportGate, network_scans_for
from agent.scan.scanner import Scanner
from agent.sources.base import LocationSource
from agent.sources.endpoints import EndpointSource
from agent.sources.windows_store import WindowsStoreSource
from agent.sync import SyncOutcome, Syncer
from agent.transport.channel import collector_channel
from agent.transport.commands import CommandStream
from agent.transport.identity import renew_identity
from agent.transport.report import GrpcReports
from agent.transport.wire import job_update_from_legacy_bytes
from agent.windows.api import default_api

__all__ = ["AgentService", "build_sources", "next_delay"]

log = logging.getLogger(__name__)

BACKOFF_START = 5.0
BACKOFF_MAX = 600.0


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def next_delay(failures: int, interval: float, rng: random.Random) -> float:
    """Seconds to wait: the scan interval (±10% jitter) after success; after failures, exponential backoff.

    The backoff starts at :data:`BACKOFF_START` seconds, doubles with each failure in a row up to
    :data:`BACKOFF_MAX` whatever the scan interval is (a 60 s interval does not hammer a collector
    that is down; a 4-hour one does not leave a failed report for hours), with jitter: a delay
    between half the step and the step, so a fleet that failed together does not retry together.
    """
    if failures == 0:
        return interval * rng.uniform(0.9, 1.1)
    cap = min(BACKOFF_MAX, BACKOFF_START * 2 ** min(failures - 1, 30))
    return rng.uniform(cap / 2, cap)


def build_sources(config: AgentConfig) -> list[LocationSource]:
    """The location sources this agent's config asks for, in report order (besides the file stores)."""
    sources: list[LocationSource] = [EndpointSource(config)]   # local listeners, [endpoints] targets, network scans
    if config.windows.enabled:                                  # [windows] enabled: default true on Windows only
        sources.append(WindowsStoreSource(config.windows, default_api(), config.labels))
    return sources


class AgentService:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.scanner = Scanner(config)
        self.identity: AgentIdentity = load_identity(identity_dir(config.data_dir))
        self.channel: grpc.Channel | None = None
        self.syncer: Syncer | None = None

    def _connect(self) -> Syncer:
        if self.syncer is None:
            self.channel = collector_channel(self.identity)
            self.syncer = Syncer(
                self.scanner, GrpcReports(self.channel), self.config.data_dir / "state.json", self.identity.agent_id,
                self.config.hostname, dict(self.config.labels), sources=build_sources(self.config),
            )
        return self.syncer

    def _reconnect(self) -> None:
        if self.channel is not None:
            self.channel.close()
        self.channel = None
        self.syncer = None

    def renew_identity_if_due(self, now: dt.datetime) -> bool:
        if not self.identity.needs_renewal(now):
            return False
        log.info("agent certificate expires %s: renewing it", self.identity.not_after.isoformat())
        self._connect()
        assert self.channel is not None
        key, csr = make_key_and_csr()
        cert_der, chain = renew_identity(self.channel, csr)
        self.identity = save_identity(
            self.identity.directory, key, cert_der, chain, self.identity.agent_id, self.identity.endpoint,
        )
        self._reconnect()
        log.info("agent certificate renewed, valid until %s", self.identity.not_after.isoformat())
        return True

    def run_once(self, full: bool = False) -> SyncOutcome:
        self.renew_identity_if_due(utcnow())
        return self._connect().sync(full=full)

    def _channel(self) -> grpc.Channel:
        return collector_channel(self.identity, keepalive=True)

    def install_for_job(self, job: JobDir, cmd: InstallCertificate, key: PrivateKey) -> JobUpdate:
        """Install a certificate issued for a job: check, back up, write, reload, verify, roll back (agent.install)."""
        # memory and start-up time: the install pipelines and the store writers load with the first install, not
        # with every agent (bench_e2e's agent peak RSS target is 100 MB)
        from agent.install import install, request_for

        loc = cmd.location
        anchor = (x509.load_der_x509_certificate(cmd.trust_anchor_der).public_bytes(Encoding.PEM)
                  if cmd.trust_anchor_der else None)
        try:
            req = request_for(
                self.config, job_id=cmd.job_id, location=loc, key=key, cert_der=cmd.certificate_der,
                chain_ders=list(cmd.chain_der), expected_old_fingerprint=cmd.expected_old_fingerprint,
                ca_bundle=anchor,
            )
        except AgentError as e:
            return JobUpdate(job_id=cmd.job_id, state=FAILED, reason=str(e))
        log.info("job %s: installing into %s", cmd.job_id, loc.path)
        result = install(req, data_dir=self.config.data_dir)
        log.info("job %s: %s %s", cmd.job_id, result.state, result.reason)
        return JobUpdate(
            job_id=cmd.job_id, state=result.state, reason=result.reason,
            served_fingerprint=result.served_fingerprint or "", reload_seconds=result.reload_seconds or 0.0,
            steps=tuple(JobStep(st.step, st.ok, st.detail, st.seconds) for st in result.steps),
            verified_by=result.verified_by,
        )

    def run_forever(self, stop: threading.Event, rng: random.Random) -> None:
        failures = 0
        interval = float(self.config.scan_interval)
        log.info("agent %s running: every %.0fs to %s", self.identity.agent_id, interval, self.identity.endpoint)
        wake = threading.Event()   # an install or a collector request makes the next report come at once
        handler = CommandHandler(self.config, self.install_for_job, on_installed=wake.set,
                                 legacy_result=job_update_from_legacy_bytes)
        stream = CommandStream(self._channel, handler, sorted(self.config.reload_actions), rng)
        reports = ReportGate()     # a network scan waits for the report that carries its results
        handler.network_scans = network_scans_for(self.config, stream.send, reports, wake.set)
        threading.Thread(target=stream.run_forever, args=(stop,), name="commands", daemon=True).start()
        while not stop.is_set():
            # an install that ends while this report runs (it read the files before the install wrote
            # them) sets wake again: the next report follows at once with the touched locations
            wake.clear()
            try:
                ticket = reports.begin()
                self.run_once(full=handler.full_report_requested.is_set())
                reports.stored(ticket)
                handler.full_report_requested.clear()
                failures = 0
            except AgentError as e:
                failures += 1
                log.warning("sync failed (%d in a row): %s", failures, e)
                self._reconnect()
            except Exception:  # noqa: BLE001 - the service must keep running
                failures += 1
                log.exception("unexpected error during sync (%d in a row)", failures)
                self._reconnect()
            deadline = next_delay(failures, interval, rng)
            waited = 0.0
            while waited < deadline and not stop.is_set() and not wake.is_set() \
                    and not handler.full_report_requested.is_set():
                stop.wait(min(1.0, deadline - waited))
                waited += 1.0
        handler.network_scans.stop()
        if self.channel is not None:
            self.channel.close()
        log.info("agent stopped")
