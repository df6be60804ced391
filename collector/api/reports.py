"""ReportService servicer: builds a report (collector/reports/) and streams it to the CLI.

Thin: checks the caller's role (READ; a report's spec may ask for more -- the audit
report needs AUDIT_READ), builds off the event loop, streams the parts.

Role ``owner`` (one team's certificates) is refused every report in collector/api/auth.py
(``OWNER_CALLS``): reports cover the whole fleet, and the team's certificates are in
``certfleet certs list`` and ``jobs list``, which are narrowed to the team.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Callable

from certfleet.v1 import report_pb2_grpc
from collector import reports
from collector.api.auth import AUDIT_READ, READ, Authenticator
from collector.api.errors import streaming
from collector.registry.repository import Registry
from collector.reports.wire import to_parts

log = logging.getLogger(__name__)
PERMISSIONS = {"read": READ, "audit_read": AUDIT_READ}


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
        params = dict(request.params)
        report = await asyncio.to_thread(reports.build, self.registry, request.name, params, self.clock())
        log.info("report %s built for %s", request.name, caller.name)
        for part in to_parts(report):
            yield part
