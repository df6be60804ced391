"""AdminService servicer: what the `certfleet` CLI calls, over mutual TLS with an admin certificate.

Thin: the caller's role (collector/api/auth.py), then the registry or a service, with messages
converted at the door (collector/api/convert.py). Role owner is narrowed to its team by
collector/services/team_scope.py, whose decisions are collector/domain/scope.py's.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Callable

from certfleet.v1 import admin_pb2, admin_pb2_grpc
from collector import errors
from collector.api import convert
from collector.api.authority import AuthorityRpcs
from collector.api.auth import ENROLL, MANAGE_AGENTS, READ, RENEW, REVOKE, AdminCaller, Authenticator
from collector.api.errors import streaming, unary
from collector.api.paging import paged as _paged
from collector.api.hub import AgentHub
from collector.pki import CollectorCA
from collector.registry import Registry
from collector.registry.types import CertFilter
from collector.registry.types import LocationSelector
from collector.services.approvals import ApprovalService
from collector.services.renewal import RenewalService
from collector.services.team_scope import TeamScope
from collector.domain.authority import to_alabel
from collector.domain.tokens import hash_token, new_token

log = logging.getLogger(__name__)
MAX_TOKEN_TTL = 7 * 86400


class AdminServicer(AuthorityRpcs, admin_pb2_grpc.AdminServiceServicer):
    def __init__(
        self, registry: Registry, ca: CollectorCA, auth: Authenticator, enroll_endpoint: str,
        default_token_ttl: float, clock: Callable[[], dt.datetime],
        renewal: RenewalService | None = None, hub: AgentHub | None = None,
        approvals: ApprovalService | None = None,
    ) -> None:
        self.approvals = approvals
        self.renewal = renewal
        self.hub = hub or AgentHub()
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
        bound = request.bound_host.strip()
        if bound:   # the agent it enrolls is recorded under this name, whatever it says
            bound = to_alabel(bound)
        await asyncio.to_thread(self.registry.create_token, hash_token(token), expires, note, now, caller.actor,
                                bound)
        log.info("enrollment token created by %s, expires %s", caller.name, expires.isoformat())
        return admin_pb2.CreateEnrollmentTokenResponse(
            token=token, expires_at=convert.dt_to_ts(expires),
            ca_fingerprint_sha256=self.ca.fingerprint_sha256, enrollment_endpoint=self.enroll_endpoint,
        )

    def _scope(self, caller: AdminCaller) -> TeamScope | None:
        """The team scope of a caller of role owner (collector/domain/scope.py); None for the other roles."""
        return TeamScope(self.registry, caller.team or "") if caller.scoped else None

    async def _visible_job(self, caller: AdminCaller, job_id: str, permission: str):  # noqa: ANN202
        """The job, if the caller may see it; a job outside an owner's team is not found for reading
        and refused (audited) for changing."""
        job = await asyncio.to_thread(self._jobs().get, job_id)
        scope = await asyncio.to_thread(self._scope, caller)
        if scope is not None and not await asyncio.to_thread(scope.job, job):
            if permission == READ:
                raise errors.NotFound(f"no job {job_id} on the locations of team {caller.team}")
            raise await self.auth.refuse(
                caller, permission,
                f"role owner (team {caller.team}) may change only its team's jobs; job {job_id} is not on its locations",
                job_id=job_id)
        return job

    @streaming
    async def ListCertificates(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, READ)
        scope = await asyncio.to_thread(self._scope, caller)
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
            if scope is not None:
                page = await asyncio.to_thread(scope.certificates, page)
                if not page:
                    continue
            yield admin_pb2.CertificatePage(certificates=[convert.certificate_out(v) for v in page])

    @unary
    async def GetCertificate(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, READ)
        view = await asyncio.to_thread(self.registry.get_certificate, request.fingerprint_prefix, True)
        scope = await asyncio.to_thread(self._scope, caller)
        if scope is not None:
            view = await asyncio.to_thread(scope.certificate, view)
            if view is None:
                raise errors.NotFound(
                    f"no certificate {request.fingerprint_prefix} at the locations of team {caller.team}")
        return convert.certificate_out(view)

    @streaming
    async def ListAgents(self, request, context):  # type: ignore[override]
        # agents are not owned: every role that reads (owner too) sees them all, read-only
        await self.auth.admin(context, READ)
        async for page in _paged(self.registry.list_agents()):
            yield admin_pb2.AgentPage(agents=[convert.agent_out(v) for v in page])

    @unary
    async def RequestResync(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, MANAGE_AGENTS)
        n = await asyncio.to_thread(self.registry.request_resync, request.agent_id or None, self.clock(), caller.actor)
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
            self.registry.revoke_agent, request.agent_id, request.reason or f"revoked by {caller.name}", self.clock(),
            caller.actor,
        )
        if not done:
            raise errors.NotFound(f"no active agent {request.agent_id}")
        log.info("agent %s revoked by %s", request.agent_id, caller.name)
        return admin_pb2.RevokeAgentResponse(revoked=True)

    def _renewal(self) -> RenewalService:
        if self.renewal is None:
            raise errors.InvalidInput("renewal is not configured on this collector (no issuers/templates)")
        return self.renewal

    @unary
    async def Renew(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, RENEW)
        where = LocationSelector(agent_id=request.agent_id, store_type=request.store_type, path=request.path,
                                 alias=request.alias)
        # role owner: its team must hold the certificate's names (name grants), whatever a host's
        # labels say; each location then goes through the authorization like anyone's
        team = caller.team or "" if caller.scoped else None
        try:
            jobs = await asyncio.to_thread(
                lambda: self._renewal().request(request.fingerprint_prefix, where, request.template,
                                                f"{caller.role}:{caller.name}", request.reason, team=team))
        except errors.PermissionDenied as e:
            raise await self.auth.refuse(caller, RENEW, str(e), fingerprint=request.fingerprint_prefix)
        for job in jobs:
            if job.state == "awaiting_approval":
                await asyncio.to_thread(self._tell_approvers, job.job_id)
            else:
                self.hub.notify(job.agent_id)
        log.info("renewal of %s requested by %s: %d job(s)", request.fingerprint_prefix, caller.name, len(jobs))
        return admin_pb2.RenewResponse(jobs=[convert.job_out(j) for j in jobs])

    def _tell_approvers(self, job_id: str) -> None:
        try:
            self._approvals().tell(self.registry.approvals.get(job_id))
        except Exception:  # noqa: BLE001 - the scheduled sweep tells them later
            log.warning("could not notify approvers of job %s", job_id, exc_info=True)

    @unary
    async def ListJobs(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, READ)
        limit = request.limit or 100
        scope = await asyncio.to_thread(self._scope, caller)
        if scope is None:
            jobs = await asyncio.to_thread(self._jobs().list, request.state or None, request.agent_id or None, limit)
        else:   # the team's among the newest MAX_LIMIT jobs that match
            jobs = await asyncio.to_thread(
                self._jobs().list, request.state or None, request.agent_id or None, self._jobs().MAX_LIMIT)
            jobs = (await asyncio.to_thread(scope.jobs, jobs))[:limit]
        return admin_pb2.ListJobsResponse(jobs=[convert.job_out(j) for j in jobs])

    def _jobs(self):  # noqa: ANN202
        return self.registry.jobs

    @unary
    async def GetJob(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, READ)
        return convert.job_out(await self._visible_job(caller, request.job_id, READ))

    @unary
    async def RetryJob(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, RENEW)
        await self._visible_job(caller, request.job_id, RENEW)
        job = await asyncio.to_thread(self._jobs().retry, request.job_id, self.clock(), f"{caller.role}:{caller.name}")
        self.hub.notify(job.agent_id)
        return convert.job_out(job)

    @unary
    async def CancelJob(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, RENEW)
        await self._visible_job(caller, request.job_id, RENEW)
        job = await asyncio.to_thread(
            self._jobs().cancel, request.job_id, self.clock(), f"{caller.role}:{caller.name}", request.reason or "cancelled")
        return convert.job_out(job)

    @unary
    async def RevokeCertificate(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, REVOKE)
        fp, issuer = await asyncio.to_thread(
            self._renewal().revoke, request.fingerprint_prefix, request.reason, f"{caller.role}:{caller.name}")
        log.info("certificate %s revoked through %s by %s (%s)", fp, issuer, caller.name, request.reason)
        return admin_pb2.RevokeCertificateResponse(fingerprint_sha256=fp, issuer=issuer)
