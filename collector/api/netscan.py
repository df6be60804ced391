"""DiscoveryService servicer (its wire name): network scans and the stale-services view, for the `certfleet` CLI.

Thin: messages to calls (collector/domain/netscan.py decides, collector/registry/discovery.py
stores), domain errors to status codes. Starting a scan needs NETWORK_SCAN (admin only)
and targets inside ``[netscan] allowed_ranges``; reading needs READ. Role owner sees only its team's stale locations
(ownership resolved as for certificates, collector/domain/scope.py) and no scans (scans are of
networks, not of a team's certificates: the call is refused, audited, by the role check).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any, Callable, Sequence

from certfleet.v1 import discovery_pb2, discovery_pb2_grpc
from collector.domain import netscan as discovery
from collector.api.auth import NETWORK_SCAN, READ, Authenticator
from collector.api.convert import dt_to_ts
from collector.api.errors import streaming, unary
from collector.api.hub import AgentHub
from collector.api.paging import paged
from collector.registry import Registry
from collector.registry.types import NetworkScanView, StaleView

log = logging.getLogger(__name__)


def scan_out(v: NetworkScanView) -> discovery_pb2.NetworkScanInfo:
    return discovery_pb2.NetworkScanInfo(
        scan_id=v.scan_id, agent_id=v.agent_id, hostname=v.hostname, targets=list(v.targets), ports=list(v.ports),
        rate_per_second=v.rate_per_second, timeout_seconds=v.timeout_seconds, concurrency=v.concurrency,
        state=v.state, targets_total=v.targets_total, probed=v.probed, tls_found=v.tls_found, errors=v.errors,
        reason=v.reason, requested_by=v.requested_by, created_at=dt_to_ts(v.created_at),
        updated_at=dt_to_ts(v.updated_at), finished_at=dt_to_ts(v.finished_at),
        endpoints_in_registry=v.endpoints_in_registry, sni_names=list(v.sni_names), starttls=dict(v.starttls),
        endpoints=[discovery_pb2.ScanEndpoint(
            endpoint=e.endpoint, sni=e.sni, starttls=e.starttls, protocol=e.protocol, fingerprint_sha256=e.fingerprint,
            subject=e.subject, not_after=dt_to_ts(e.not_after), chain_valid=e.chain_valid, source=e.source,
        ) for e in v.endpoints],
    )


def stale_out(v: StaleView) -> discovery_pb2.StaleLocationInfo:
    return discovery_pb2.StaleLocationInfo(
        agent_id=v.agent_id, hostname=v.hostname, store_type=v.store_type, path=v.path, alias=v.alias,
        file_fingerprint=v.file_fingerprint, served_fingerprint=v.served_fingerprint, endpoint=v.endpoint,
        process_name=v.process_name, pid=v.pid, since=dt_to_ts(v.since), owner=v.owner, service=v.service,
        suggested_reload=v.suggested_reload,
    )


class DiscoveryServicer(discovery_pb2_grpc.DiscoveryServiceServicer):
    def __init__(self, registry: Registry, auth: Authenticator, clock: Callable[[], dt.datetime],
                 hub: AgentHub | None = None, allowed_ranges: Sequence[Any] = ()) -> None:
        self.registry = registry
        #: [netscan] allowed_ranges: a scan outside them is refused (empty: every scan)
        self.allowed_ranges = tuple(allowed_ranges)
        self.auth = auth
        self.clock = clock
        self.hub = hub or AgentHub()

    @unary
    async def StartNetworkScan(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, NETWORK_SCAN)
        plan = discovery.plan_scan(
            list(request.targets), list(request.ports), request.rate_per_second, request.timeout_seconds,
            request.concurrency, dict(request.starttls), list(request.sni_names), allowed=self.allowed_ranges)
        scan = await asyncio.to_thread(self.registry.discovery.start_scan, request.agent_id, plan, caller.actor,
                                       request.reason, self.clock())
        self.hub.notify(scan.agent_id)
        log.info("network scan %s on agent %s started by %s: %s x ports %s (%d probes)", scan.scan_id, scan.agent_id,
                 caller.actor, ",".join(scan.targets), ",".join(map(str, scan.ports)), scan.targets_total)
        return scan_out(scan)

    @streaming
    async def ListNetworkScans(self, request, context):  # type: ignore[override]
        await self.auth.admin(context, READ)
        scans = await asyncio.to_thread(self.registry.discovery.list_scans, request.agent_id, request.limit or 100)
        for s in scans:
            yield scan_out(s)

    @unary
    async def GetNetworkScan(self, request, context):  # type: ignore[override]
        await self.auth.admin(context, READ)
        return scan_out(await asyncio.to_thread(self.registry.discovery.get_scan, request.scan_id))

    @streaming
    async def ListStale(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, READ)
        team = (caller.team or "") if caller.scoped else None
        it = self.registry.discovery.stale_with_owners(request.agent_id, team)
        async for page in paged(it):
            for v in page:
                yield stale_out(v)
