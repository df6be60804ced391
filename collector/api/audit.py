"""AuditService servicer: the audit trail for admins and auditors (permission AUDIT_READ)."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any, Callable

import grpc

from certfleet.v1 import audit_pb2, audit_pb2_grpc
from collector.api import convert
from collector.api.paging import paged as _paged
from collector.api.auth import AUDIT_READ, Authenticator
from collector.api.errors import streaming, unary
from collector.registry.audit import AuditEventView
from collector.registry import Registry

DEFAULT_LIMIT = 100


def event_out(e: AuditEventView) -> audit_pb2.AuditEvent:
    return audit_pb2.AuditEvent(
        seq=e.seq, at=convert.dt_to_ts(e.at), actor=e.actor, action=e.action, target=e.target, reason=e.reason,
        detail_json=json.dumps(e.detail, sort_keys=True, ensure_ascii=False), prev_hash=e.prev_hash, hash=e.hash,
    )


def _range(request: Any) -> tuple[dt.datetime | None, dt.datetime | None]:
    return (convert.ts_to_dt(request.since, request.HasField("since")),
            convert.ts_to_dt(request.until, request.HasField("until")))


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, registry: Registry, auth: Authenticator, clock: Callable[[], dt.datetime]) -> None:
        self.registry = registry
        self.auth = auth
        self.clock = clock

    @unary
    async def VerifyAudit(self, request: audit_pb2.VerifyAuditRequest,
                          context: grpc.aio.ServicerContext) -> audit_pb2.VerifyAuditResponse:
        await self.auth.admin(context, AUDIT_READ)
        r = await asyncio.to_thread(self.registry.audit.verify)
        return audit_pb2.VerifyAuditResponse(ok=r.ok, checked=r.checked, first_broken_seq=r.first_broken_seq,
                                             reason=r.reason, anchor_seq=r.anchor_seq, last_seq=r.last_seq)

    @streaming
    async def ExportAudit(self, request: audit_pb2.ExportAuditRequest, context: grpc.aio.ServicerContext):  # type: ignore[override]
        await self.auth.admin(context, AUDIT_READ)
        since, until = _range(request)
        it = self.registry.audit.events(since, until)
        async for page in _paged(it):
            yield audit_pb2.AuditEventPage(events=[event_out(e) for e in page])

    @unary
    async def ListAudit(self, request: audit_pb2.ListAuditRequest,
                        context: grpc.aio.ServicerContext) -> audit_pb2.ListAuditResponse:
        await self.auth.admin(context, AUDIT_READ)
        since, until = _range(request)
        events = await asyncio.to_thread(
            self.registry.audit.list, since, until, request.actor or None, request.action or None,
            request.limit or DEFAULT_LIMIT, target=request.target or None)
        return audit_pb2.ListAuditResponse(events=[event_out(e) for e in events])
