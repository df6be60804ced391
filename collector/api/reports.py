"""ReportService servicer: builds a report (collector/reports/) and streams it to the CLI.

Thin: checks the caller's role (READ; a report's spec may ask for more -- the audit
report needs AUDIT_READ), builds off the event loop, streams the parts a few at a time
(each part of at most ``report_codec.ROWS_PER_PART`` rows is made off the event loop too, and
sent while the next ones are made).

Role ``owner`` (one team) may read the reports whose spec is ``owner_scoped``
(``expiring``, ``violations``, ``owners``), built with ``team=`` its team so that they hold
only what the team owns; the others (``coverage``, ``audit``) cover the whole fleet and are
refused to it, audited as ``call.refused``.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
from typing import AsyncIterator, Callable, Iterable

from certfleet.v1 import report_pb2 as pb
from certfleet.v1 import report_pb2_grpc
from collector import reports
from collector.api.auth import AUDIT_READ, READ, Authenticator
from collector.api.errors import streaming
from collector.registry import Registry
from collector.api.report_codec import to_parts

log = logging.getLogger(__name__)
PERMISSIONS = {"read": READ, "audit_read": AUDIT_READ}
PARTS_PER_STEP = 4          # parts made per trip off the event loop (4 x 500 rows)


async def stream_parts(parts: Iterable[pb.ReportPart], per_step: int = PARTS_PER_STEP) -> AsyncIterator[pb.ReportPart]:
    """Make the parts off the event loop, ``per_step`` at a time, and hand them on as they come."""
    it = iter(parts)
    while True:
        step = await asyncio.to_thread(lambda: list(itertools.islice(it, per_step)))
        if not step:
            return
        for part in step:
            yield part


class ReportServicer(report_pb2_grpc.ReportServiceServicer):
    def __init__(self, registry: Registry, auth: Authenticator, clock: Callable[[], dt.datetime]) -> None:
        self.registry = registry
        self.auth = auth
        self.clock = clock

    @streaming
    async def GetReport(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, READ)
        spec = reports.spec(request.name)
        if spec.permission != "read":
            caller = await self.auth.admin(context, PERMISSIONS.get(spec.permission, spec.permission))
        team = None
        if caller.scoped:
            team = caller.team or ""
            refusal = reports.team_refusal(request.name, team)
            if refusal is not None:
                raise await self.auth.refuse(caller, READ, refusal, report=request.name)
        params = dict(request.params)
        report = await asyncio.to_thread(reports.build, self.registry, request.name, params, self.clock(), team)
        log.info("report %s built for %s", request.name, caller.name)
        async for part in stream_parts(to_parts(report)):
            yield part
