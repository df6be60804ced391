"""AdminService's issuance-authority calls (issue 11): names grant/allow/list/revoke/check,
propose/adopt, approvals list/show/approve/deny, agents label/rename.

A mixin of :class:`collector.api.admin.AdminServicer` (one servicer per gRPC service), thin as it
is: the caller's role (collector/api/auth.py), then the registry or a service. Role owner sees its
team's grants and the approvals of its team's names; auditors read everything; changing grants,
allows, names and labels is the admin's; deciding approvals is the admin's and the approver's.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from certfleet.v1 import admin_pb2
from collector import errors
from collector.api import convert
from collector.api.auth import APPROVE, NAMES, READ
from collector.api.errors import unary as _unary
from collector.domain.authority import Allow, Grant
from collector.services.approvals import ApprovalService
from collector.services.authority import AuthorityService

log = logging.getLogger(__name__)

__all__ = ["AuthorityRpcs"]


def unary(fn):  # type: ignore[no-untyped-def]
    """collector.api.errors.unary, naming the call ``AdminService.<name>`` (roles, audit trail): these
    are AdminService's calls, written in a mixin."""
    fn.__qualname__ = f"AdminServicer.{fn.__name__}"
    return _unary(fn)


def _grant_out(g: Grant) -> admin_pb2.NameRule:
    return admin_pb2.NameRule(kind="grant", id=g.id, pattern=g.pattern, owner=g.owner, wins=g.wins,
                              created_by=g.created_by, source=g.source)


def _allow_out(a: Allow) -> admin_pb2.NameRule:
    return admin_pb2.NameRule(kind="allow", id=a.id, pattern=a.pattern, hosts=a.hosts, agent_id=a.agent_id,
                              label=a.label, created_by=a.created_by)


def _proposal_out(p: Any) -> admin_pb2.NameProposal:
    return admin_pb2.NameProposal(proposal_id=p.proposal_id, name=p.name, owner=p.owner, hosts=list(p.hosts),
                                  agent_ids=list(p.agent_ids))


class AuthorityRpcs:
    """The calls; the servicer provides ``registry``, ``auth``, ``clock``, ``hub`` and ``approvals``."""

    registry: Any
    auth: Any
    clock: Any
    hub: Any
    approvals: ApprovalService | None

    def _authority(self) -> AuthorityService:
        return AuthorityService(self.registry, self.clock)

    def _approvals(self) -> ApprovalService:
        if getattr(self, "approvals", None) is None:
            self.approvals = ApprovalService(self.registry, self.clock)
        return self.approvals

    def _approval_out(self, v: Any) -> admin_pb2.ApprovalInfo:
        try:
            host = self.registry.authority.host(v.agent_id).name
        except errors.NotFound:
            host = ""
        return admin_pb2.ApprovalInfo(
            approval_id=v.approval_id, job_id=v.job_id, state=v.state, requested_by=v.requested_by, owner=v.owner,
            agent_id=v.agent_id, hostname=host, fingerprint=v.fingerprint, names=list(v.names),
            reasons=list(v.reasons), created_at=convert.dt_to_ts(v.created_at),
            expires_at=convert.dt_to_ts(v.expires_at), decided_by=v.decided_by,
            decided_at=convert.dt_to_ts(v.decided_at), decision_reason=v.decision_reason)

    # -- names --------------------------------------------------------------------------------

    @unary
    async def GrantNames(self, request, context):  # type: ignore[no-untyped-def]
        caller = await self.auth.admin(context, NAMES)
        g = await asyncio.to_thread(self.registry.authority.grant, request.owner, request.pattern, caller.actor,
                                    self.clock(), wins=request.wins, reason=request.reason)
        return _grant_out(g)

    @unary
    async def AllowNames(self, request, context):  # type: ignore[no-untyped-def]
        caller = await self.auth.admin(context, NAMES)
        agent_id = request.agent_id
        if agent_id:
            agent_id = await asyncio.to_thread(self.registry.authority.find_agent, agent_id)
        a = await asyncio.to_thread(self.registry.authority.allow, request.pattern, caller.actor, self.clock(),
                                    hosts=request.hosts, agent_id=agent_id, label=request.label,
                                    reason=request.reason)
        return _allow_out(a)

    @unary
    async def ListNameRules(self, request, context):  # type: ignore[no-untyped-def]
        caller = await self.auth.admin(context, READ)
        owner = caller.team if caller.scoped else (request.owner or None)
        grants = await asyncio.to_thread(self.registry.authority.grants, owner)
        allows = await asyncio.to_thread(self.registry.authority.allows)
        if owner is not None:   # the allows of the owner's patterns only
            mine = {g.pattern for g in grants}
            allows = [a for a in allows if a.pattern in mine]
        return admin_pb2.ListNameRulesResponse(grants=[_grant_out(g) for g in grants],
                                               allows=[_allow_out(a) for a in allows])

    @unary
    async def RevokeNameRule(self, request, context):  # type: ignore[no-untyped-def]
        caller = await self.auth.admin(context, NAMES)
        await asyncio.to_thread(self.registry.authority.revoke, request.kind, request.id, caller.actor, self.clock(),
                                request.reason)
        return admin_pb2.RevokeNameRuleResponse()

    @unary
    async def CheckNames(self, request, context):  # type: ignore[no-untyped-def]
        await self.auth.admin(context, READ)
        d = await asyncio.to_thread(self._authority().check, request.host, list(request.names))
        return admin_pb2.CheckNamesResponse(
            authorized=d.authorized, agent_id=d.host.agent_id, hostname=d.host.name,
            verdicts=[admin_pb2.NameVerdict(name=v.name, authorized=v.ok, explanation=v.reason,
                                            grant_id=v.grant.id if v.grant else 0,
                                            allow_id=v.allow.id if v.allow else 0,
                                            owner=v.grant.owner if v.grant else "") for v in d.verdicts])

    @unary
    async def ProposeNames(self, request, context):  # type: ignore[no-untyped-def]
        await self.auth.admin(context, NAMES)
        props = await asyncio.to_thread(self._authority().propose)
        return admin_pb2.ProposeNamesResponse(proposals=[_proposal_out(p) for p in props])

    @unary
    async def AdoptNames(self, request, context):  # type: ignore[no-untyped-def]
        caller = await self.auth.admin(context, NAMES)
        adopted, skipped = await asyncio.to_thread(
            self._authority().adopt, caller.actor, list(request.proposal_ids), all_matching=request.all_matching,
            owner=request.owner, name_glob=request.name_glob, wins=request.wins)
        return admin_pb2.AdoptNamesResponse(adopted=[_proposal_out(p) for p in adopted], skipped=skipped)

    # -- approvals ------------------------------------------------------------------------------

    @unary
    async def ListApprovals(self, request, context):  # type: ignore[no-untyped-def]
        caller = await self.auth.admin(context, READ)
        state = None if request.state == "all" else (request.state or "pending")
        views = await asyncio.to_thread(self.registry.approvals.list, state, caller.team if caller.scoped else None)
        return admin_pb2.ListApprovalsResponse(approvals=[self._approval_out(v) for v in views])

    @unary
    async def GetApproval(self, request, context):  # type: ignore[no-untyped-def]
        caller = await self.auth.admin(context, READ)
        v = await asyncio.to_thread(self.registry.approvals.get, request.approval_id)
        if caller.scoped and v.owner != caller.team:
            raise errors.NotFound(f"no approval {request.approval_id} for the names of team {caller.team}")
        return self._approval_out(v)

    @unary
    async def DecideApproval(self, request, context):  # type: ignore[no-untyped-def]
        caller = await self.auth.admin(context, APPROVE)
        try:
            v = await asyncio.to_thread(self._approvals().decide, request.approval_id, request.approve, caller.actor,
                                        request.reason)
        except errors.PermissionDenied as e:   # four eyes: audited by the store (approval.refused)
            raise await self.auth.refuse(caller, APPROVE, str(e), approval_id=request.approval_id)
        if v.state == "approved":
            self.hub.notify(v.agent_id)
        return self._approval_out(v)

    # -- agents: recorded names and collector-side labels ------------------------------------------

    @unary
    async def LabelAgent(self, request, context):  # type: ignore[no-untyped-def]
        caller = await self.auth.admin(context, NAMES)
        agent_id = await asyncio.to_thread(self.registry.authority.find_agent, request.agent_id)
        await asyncio.to_thread(self.registry.authority.label_agent, agent_id, dict(request.set),
                                list(request.remove), caller.actor, self.clock())
        return convert.agent_out(await asyncio.to_thread(self.registry.get_agent, agent_id))

    @unary
    async def RenameAgent(self, request, context):  # type: ignore[no-untyped-def]
        caller = await self.auth.admin(context, NAMES)
        agent_id = await asyncio.to_thread(self.registry.authority.find_agent, request.agent_id)
        await asyncio.to_thread(self.registry.authority.rename_agent, agent_id, request.hostname, caller.actor,
                                self.clock(), request.reason)
        return convert.agent_out(await asyncio.to_thread(self.registry.get_agent, agent_id))
