"""NotifyService servicer: run the notifier now (admin role only) and list deliveries (READ)."""
from __future__ import annotations

import asyncio
import datetime as dt
from typing import Callable

import grpc

from certfleet.v1 import notify_pb2 as pb
from certfleet.v1 import notify_pb2_grpc
from collector import errors
from collector.api import convert
from collector.api.auth import READ, Authenticator
from collector.api.errors import unary
from collector.notify.channels.webhook import redact_url
from collector.services.notifier import Notifier
from collector.registry.notify import DeliveryView

DEFAULT_LIMIT = 100


def delivery_out(d: DeliveryView) -> pb.Delivery:
    target = redact_url(d.target) if d.target.startswith(("http://", "https://")) else d.target
    return pb.Delivery(
        id=d.id, digest_id=d.digest_id, owner=d.owner, channel=d.channel, target=target, subject=d.subject,
        state=d.state, attempts=d.attempts, last_error=d.last_error,
        next_attempt_at=convert.dt_to_ts(d.next_attempt_at), created_at=convert.dt_to_ts(d.created_at),
        sent_at=convert.dt_to_ts(d.sent_at),
    )


class NotifyServicer(notify_pb2_grpc.NotifyServiceServicer):
    def __init__(self, notifier: Notifier, auth: Authenticator, clock: Callable[[], dt.datetime]) -> None:
        self.notifier = notifier
        self.auth = auth
        self.clock = clock

    @unary
    async def RunNow(self, request: pb.RunNowRequest, context: grpc.aio.ServicerContext) -> pb.RunNowResponse:
        caller = await self.auth.admin(context, READ)
        if caller.role != "admin":
            e = errors.PermissionDenied(f"role {caller.role!r} may not run the notifier (admin only)")
            await self.auth._refused(caller.actor, "notify_run", e, {"role": caller.role, "serial": caller.serial})
            raise e
        if not self.notifier.enabled:
            raise errors.InvalidInput("no [[notify.channel]] is configured on this collector")
        r = await asyncio.to_thread(self.notifier.run_once, self.clock())
        return pb.RunNowResponse(notices=r.notices, digests=r.digests, sent=r.sent, retrying=r.retrying,
                                 failed=r.failed)

    @unary
    async def ListDeliveries(self, request: pb.ListDeliveriesRequest,
                             context: grpc.aio.ServicerContext) -> pb.ListDeliveriesResponse:
        await self.auth.admin(context, READ)
        store = self.notifier.store
        limit = request.limit or DEFAULT_LIMIT
        if request.failed:
            rows = await asyncio.to_thread(store.failing_deliveries, limit)
        else:
            rows = await asyncio.to_thread(store.list_deliveries, request.state or None, limit)
        return pb.ListDeliveriesResponse(deliveries=[delivery_out(d) for d in rows])
