"""AgentService servicer: inventory reports and identity renewal, over mutual TLS."""
from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
import time
from typing import Any, AsyncIterator, Callable

import grpc
from cryptography.hazmat.primitives.serialization import Encoding

from certfleet.v1 import agent_pb2, agent_pb2_grpc
from collector import errors
from collector.domain import netscan as discovery
from collector.services import enrollment
from collector.domain import jobstates as jobs
from collector.api import convert
from collector.api.auth import Authenticator
from collector.api.hub import AgentHub
from collector.api.errors import unary
from collector.pki import CollectorCA
from collector.registry.repository import Registry
from collector.registry.types import ReportHeaderIn
from collector.services.renewal import RenewalService

log = logging.getLogger(__name__)


def _add_upserts(txn, messages) -> None:  # noqa: ANN001
    txn.add_upserts([convert.location_in(m) for m in messages])


def scan_commands(registry: Registry, agent_id: str, now: dt.datetime, resend: bool) -> list[agent_pb2.CollectorCommand]:
    """NetworkScan commands for the agent's stream: queued scans (claimed, so one collector sends
    each) and, on a fresh stream, the ones it was sent and has not finished (collector/registry/discovery.py)."""
    return [
        agent_pb2.CollectorCommand(command_id=f"{s.scan_id}:netscan", network_scan=agent_pb2.NetworkScan(
            scan_id=s.scan_id, targets=list(s.targets), ports=list(s.ports), rate_per_second=s.rate_per_second,
            timeout_seconds=s.timeout_seconds, concurrency=s.concurrency, sni_names=list(s.sni_names),
            starttls=dict(s.starttls), max_addresses=discovery.MAX_PROBES))   # the agent reads it as address x port pairs
        for s in registry.discovery.claim_for_agent(agent_id, now, resend=resend)
    ]


def record_scan_progress(registry: Registry, agent_id: str, p: agent_pb2.NetworkScanProgress, now: dt.datetime) -> None:
    """A NetworkScanProgress from the agent's stream, into the registry."""
    v = registry.discovery.record_progress(agent_id, p.scan_id, discovery.Progress(
        state=p.state, targets_total=p.targets_total, probed=p.probed, tls_found=p.tls_found, errors=p.errors,
        reason=p.reason), now)
    if v is not None and v.state in discovery.FINAL:
        log.info("network scan %s on agent %s %s: %d probed, %d TLS endpoints, %d errors; %s", v.scan_id, agent_id,
                 v.state, v.probed, v.tls_found, v.errors, v.reason)


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(
        self, registry: Registry, ca: CollectorCA, auth: Authenticator,
        cert_lifetime: dt.timedelta, clock: Callable[[], dt.datetime],
        renewal: RenewalService | None = None, hub: AgentHub | None = None, poll_seconds: float = 2.0,
        on_new_violation: Callable[[Any], Any] | None = None,
    ) -> None:
        self.registry = registry
        self.ca = ca
        self.auth = auth
        self.cert_lifetime = cert_lifetime
        self.clock = clock
        self.renewal = renewal
        self.hub = hub or AgentHub()
        self.poll_seconds = poll_seconds
        self._evaluations: set[asyncio.Task] = set()
        self.on_new_violation = on_new_violation   # new policy violations (the notifier's, when configured)

    @unary
    async def Report(
        self, request_iterator: AsyncIterator[agent_pb2.ReportChunk], context: grpc.aio.ServicerContext
    ) -> agent_pb2.ReportAck:
        agent_id = await self.auth.agent(context)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        db_seconds = 0.0

        async def step(fn, *args):  # noqa: ANN001, ANN202
            nonlocal db_seconds
            t0 = time.perf_counter()
            try:
                return await loop.run_in_executor(pool, fn, *args)
            finally:
                db_seconds += time.perf_counter() - t0

        # One thread per report: the report is one database transaction, used
        # step by step as chunks arrive, never concurrently.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="report") as pool:
            txn = None
            try:
                async for chunk in request_iterator:
                    if txn is None:
                        if not chunk.HasField("header"):
                            raise errors.InvalidInput("the first chunk of a report must carry its header")
                        h = chunk.header
                        header = ReportHeaderIn(
                            report_id=h.report_id, full=h.full, sequence=h.sequence, base_sequence=h.base_sequence,
                            host=convert.host_in(h.host),
                            scanned_at=convert.ts_to_dt(h.scanned_at, h.HasField("scanned_at")),
                            stores_scanned=h.stores_scanned, files_scanned=h.files_scanned,
                        )
                        if not header.report_id:
                            raise errors.InvalidInput("a report needs a report_id")
                        txn = await step(self.registry.begin_report, agent_id, header, self.clock())
                    if chunk.upserts:
                        # converted on the report's own thread: the event loop stays free
                        await step(_add_upserts, txn, chunk.upserts)
                    if chunk.removals:
                        keys = [convert.location_key_in(m) for m in chunk.removals]
                        await step(txn.add_removals, keys)
                    if chunk.errors:
                        errs = [convert.scan_error_in(m) for m in chunk.errors]
                        await step(txn.add_errors, errs)
                if txn is None:
                    raise errors.InvalidInput("empty report")
                result = await step(txn.finish)
                txn = None
            finally:
                if txn is not None:
                    await loop.run_in_executor(pool, txn.abort)
        log.info(
            "report from %s: stored=%s seq=%d upserted=%d removed=%d new_certs=%d resync=%s in %.2fs (registry %.2fs)",
            agent_id, result.stored, result.sequence, result.locations_upserted, result.locations_removed,
            result.certificates_new, result.resync_required, time.perf_counter() - started, db_seconds,
        )
        if result.stored:
            self._evaluate(agent_id)
        return agent_pb2.ReportAck(
            stored=result.stored, sequence=result.sequence, resync_required=result.resync_required,
            message=result.message, locations_upserted=result.locations_upserted,
            locations_removed=result.locations_removed, certificates_new=result.certificates_new,
        )

    def _evaluate(self, agent_id: str) -> None:
        """Evaluate the agent's certificates against the policy, in the background (collector/domain/policy.py)."""
        async def run() -> None:
            try:
                await asyncio.to_thread(self.registry.policies.evaluate_agent, agent_id, self.clock(),
                                        self.on_new_violation)
            except Exception:  # noqa: BLE001 - the scheduled evaluation catches up
                log.exception("policy evaluation after the report from %s failed", agent_id)

        task = asyncio.create_task(run())
        self._evaluations.add(task)
        task.add_done_callback(self._evaluations.discard)

    @unary
    async def RenewIdentity(
        self, request: agent_pb2.RenewIdentityRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.RenewIdentityResponse:
        agent_id = await self.auth.agent(context)
        cert = await asyncio.to_thread(
            enrollment.renew_identity, self.registry, self.ca, agent_id, request.csr_der, self.clock(), self.cert_lifetime
        )
        log.info("renewed identity of agent %s until %s", agent_id, cert.not_valid_after_utc.isoformat())
        return agent_pb2.RenewIdentityResponse(
            certificate_der=cert.public_bytes(Encoding.DER),
            ca_chain_der=[self.ca.cert_der],
            not_after=convert.dt_to_ts(cert.not_valid_after_utc),
        )

    async def Connect(self, request_iterator, context: grpc.aio.ServicerContext) -> None:  # noqa: ANN001
        """Commands down, job updates up, until the agent hangs up."""
        try:
            agent_id = await self.auth.agent(context)
        except errors.CollectorError as e:
            from collector.api.errors import status_for

            await context.abort(status_for(e), str(e))
            return
        wake = self.hub.register(agent_id)
        log.info("agent %s connected its command stream from %s", agent_id, context.peer())

        pending: set[asyncio.Task] = set()

        async def apply(update: jobs.AgentJobUpdate) -> None:
            try:
                await asyncio.to_thread(self.renewal.on_update, agent_id, update)
            except errors.CollectorError as e:
                log.warning("job update from %s refused: %s", agent_id, e)
            except Exception:  # noqa: BLE001 - one bad update must not drop the stream
                log.exception("job update from %s failed", agent_id)
            wake.set()

        async def scan_progress(progress: agent_pb2.NetworkScanProgress) -> None:
            try:
                await asyncio.to_thread(record_scan_progress, self.registry, agent_id, progress, self.clock())
            except errors.CollectorError as e:
                log.warning("network scan progress from %s refused: %s", agent_id, e)
            except Exception:  # noqa: BLE001 - one bad message must not drop the stream
                log.exception("network scan progress from %s failed", agent_id)

        async def read_updates() -> None:
            while True:
                msg = await context.read()
                if msg is grpc.aio.EOF:
                    return
                if msg.HasField("scan_progress"):
                    task = asyncio.create_task(scan_progress(msg.scan_progress))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    continue
                if not msg.HasField("job_update") or self.renewal is None:
                    continue
                update = convert.job_update_in(msg.job_update)
                if update.state in (jobs.CHALLENGE_READY, jobs.CHALLENGE_FAILED):
                    self.renewal.broker.ack(update)      # an issuance in progress is waiting for this
                    continue
                # Applied in the background: issuing may wait for this same stream (ACME challenges).
                task = asyncio.create_task(apply(update))
                pending.add(task)
                task.add_done_callback(pending.discard)

        reader = asyncio.create_task(read_updates())
        connected = True   # a stream that just (re)connected gets its unfinished network scans again
        try:
            while not reader.done():
                wake.clear()   # before looking: a wake-up during the look is not lost
                commands: list[agent_pb2.CollectorCommand] = []
                if self.renewal is not None:
                    try:
                        commands = await asyncio.to_thread(self.renewal.commands_for, agent_id)
                    except Exception:  # noqa: BLE001
                        log.exception("could not prepare commands for %s", agent_id)
                        commands = []
                    commands += self.renewal.broker.take(agent_id)
                try:
                    commands += await asyncio.to_thread(scan_commands, self.registry, agent_id, self.clock(), connected)
                    connected = False
                except Exception:  # noqa: BLE001 - tried again on the next look
                    log.exception("could not prepare network scans for %s", agent_id)
                for cmd in commands:
                    await context.write(cmd)
                    log.info("sent %s to agent %s", cmd.command_id, agent_id)
                waiter = asyncio.create_task(wake.wait())
                await asyncio.wait({waiter, reader}, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
        finally:
            reader.cancel()
            self.hub.unregister(agent_id, wake)
            log.info("agent %s command stream closed", agent_id)
