"""AdminService servicer: what the `certfleet` CLI calls, over mutual TLS with an admin certificate."""
from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
from typing import AsyncIterator, Callable, Iterator, TypeVar

import grpc

from certfleet.v1 import admin_pb2, admin_pb2_grpc
from collector import errors
from collector.api import convert
from collector.api.auth import ENROLL, MANAGE_AGENTS, READ, Authenticator
from collector.api.errors import streaming, unary
from collector.pki import CollectorCA
from collector.registry.repository import Registry
from collector.registry.types import CertFilter
from collector.tokens import hash_token, new_token

log = logging.getLogger(__name__)
T = TypeVar("T")
PAGE = 200
MAX_TOKEN_TTL = 7 * 86400


async def _paged(it: Iterator[T]) -> AsyncIterator[list[T]]:
    """Drain a blocking registry iterator a page at a time off the event loop."""
    try:
        while True:
            page = await asyncio.to_thread(lambda: list(itertools.islice(it, PAGE)))
            if not page:
                return
            yield page
    finally:
        close = getattr(it, "close", None)
        if close is not None:  # release the database cursor when the client goes away early
            await asyncio.to_thread(close)


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(
        self, registry: Registry, ca: CollectorCA, auth: Authenticator, enroll_endpoint: str,
        default_token_ttl: float, clock: Callable[[], dt.datetime],
    ) -> None:
        self.registry = registry
        self.ca = ca
        self.auth = auth
        self.enroll_endpoint = enroll_endpoint
        self.default_token_ttl = default_token_ttl
        self.clock = clock

    @unary
    async def CreateEnrollmentToken(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, ENROLL)
        ttl = request.ttl_seconds or self.default_token_ttl
        if ttl <= 0 or ttl > MAX_TOKEN_TTL:
            raise errors.InvalidInput(f"token lifetime must be between 1 second and {MAX_TOKEN_TTL // 86400} days")
        now = self.clock()
        token = new_token()
        expires = now + dt.timedelta(seconds=ttl)
        note = request.note or f"created by {caller.name}"
        await asyncio.to_thread(self.registry.create_token, hash_token(token), expires, note, now)
        log.info("enrollment token created by %s, expires %s", caller.name, expires.isoformat())
        return admin_pb2.CreateEnrollmentTokenResponse(
            token=token, expires_at=convert.dt_to_ts(expires),
            ca_fingerprint_sha256=self.ca.fingerprint_sha256, enrollment_endpoint=self.enroll_endpoint,
        )

    @streaming
    async def ListCertificates(self, request, context):  # type: ignore[override]
        await self.auth.admin(context, READ)
        now = self.clock()
        flt = CertFilter(
            expiring_before=now + dt.timedelta(seconds=request.expiring_within_seconds)
            if request.expiring_within_seconds else None,
            hostname=request.host or None,
            issuer_contains=request.issuer_contains or None,
            include_removed=request.include_removed,
        )
        it = self.registry.list_certificates(flt, now)
        async for page in _paged(it):
            yield admin_pb2.CertificatePage(certificates=[convert.certificate_out(v) for v in page])

    @unary
    async def GetCertificate(self, request, context):  # type: ignore[override]
        await self.auth.admin(context, READ)
        view = await asyncio.to_thread(self.registry.get_certificate, request.fingerprint_prefix, True)
        return convert.certificate_out(view)

    @streaming
    async def ListAgents(self, request, context):  # type: ignore[override]
        await self.auth.admin(context, READ)
        async for page in _paged(self.registry.list_agents()):
            yield admin_pb2.AgentPage(agents=[convert.agent_out(v) for v in page])

    @unary
    async def RequestResync(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, MANAGE_AGENTS)
        n = await asyncio.to_thread(self.registry.request_resync, request.agent_id or None)
        if request.agent_id and n == 0:
            raise errors.NotFound(f"no agent {request.agent_id}")
        log.info("full resync requested by %s for %s", caller.name, request.agent_id or "all agents")
        return admin_pb2.RequestResyncResponse(agents_flagged=n)

    @unary
    async def RevokeAgent(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, MANAGE_AGENTS)
        if not request.agent_id:
            raise errors.InvalidInput("name the agent to revoke")
        done = await asyncio.to_thread(
            self.registry.revoke_agent, request.agent_id, request.reason or f"revoked by {caller.name}", self.clock()
        )
        if not done:
            raise errors.NotFound(f"no active agent {request.agent_id}")
        log.info("agent %s revoked by %s", request.agent_id, caller.name)
        return admin_pb2.RevokeAgentResponse(revoked=True)
