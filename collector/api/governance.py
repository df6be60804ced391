"""GovernanceService servicer: owners, assignment rules, explicit assignments and orphans.

Thin: checks the caller's role (reading: READ; changes: ASSIGN), turns messages
into ``Registry.owners`` calls and records into messages. The semantics are in
collector/domain/ownership.py and collector/registry/owners.py.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from typing import Any, Callable

from certfleet.v1 import governance_pb2 as pb
from certfleet.v1 import governance_pb2_grpc
from collector.domain import ownership as own
from collector.domain.outbound import redact_url
from collector.api import convert
from collector.api.paging import paged as _paged
from collector.api.auth import ASSIGN, READ, Authenticator
from collector.api.errors import streaming, unary
from collector.registry import Registry
from collector.registry.types import LocationSelector

log = logging.getLogger(__name__)


class GovernanceServicer(governance_pb2_grpc.GovernanceServiceServicer):
    def __init__(self, registry: Registry, auth: Authenticator, clock: Callable[[], dt.datetime]) -> None:
        self.registry = registry
        self.auth = auth
        self.clock = clock

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))

    # -- owners ----------------------------------------------------------------------

    @unary
    async def CreateOwner(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, ASSIGN)
        o = await self._call(
            self.registry.owners.create_owner, request.name, self.clock(), contacts=list(request.contacts),
            webhook=request.webhook, escalation=request.escalation, description=request.description,
            actor=caller.actor, reason=request.reason,
        )
        log.info("owner %s created by %s", o.name, caller.name)
        return owner_out(o, caller)

    @unary
    async def UpdateOwner(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, ASSIGN)

        def opt(field: str) -> str | None:
            return getattr(request, field) if request.HasField(field) else None

        o = await self._call(
            self.registry.owners.update_owner, request.name, self.clock(), new_name=opt("new_name"),
            contacts=list(request.contacts) if request.replace_contacts else None,
            add_contacts=list(request.add_contacts), remove_contacts=list(request.remove_contacts),
            webhook=opt("webhook"), escalation=opt("escalation"), description=opt("description"),
            actor=caller.actor, reason=request.reason,
        )
        return owner_out(o, caller)

    @streaming
    async def ListOwners(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, READ)
        owners = await self._call(self.registry.owners.list_owners)
        async for page in _paged(iter(owners)):
            yield pb.OwnerPage(owners=[owner_out(o, caller) for o in page])

    @unary
    async def DeleteOwner(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, ASSIGN)
        await self._call(self.registry.owners.delete_owner, request.name, self.clock(), actor=caller.actor,
                         reason=request.reason)
        return pb.DeleteOwnerResponse(deleted=True)

    # -- rules -------------------------------------------------------------------------

    @unary
    async def AddRule(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, ASSIGN)
        r = await self._call(
            self.registry.owners.add_rule, request.name, self.clock(), owner=request.owner,
            environment=request.environment, criticality=request.criticality, service=request.service,
            host=request.host, path=request.path, san=request.san, issuer=request.issuer,
            labels=dict(request.labels), priority=request.priority if request.HasField("priority") else None,
            description=request.description, actor=caller.actor, reason=request.reason,
        )
        return rule_out(r)

    @streaming
    async def ListRules(self, request, context):  # type: ignore[override]
        await self.auth.admin(context, READ)
        rules = await self._call(self.registry.owners.list_rules)
        async for page in _paged(iter(rules)):
            yield pb.RulePage(rules=[rule_out(r) for r in page])

    @unary
    async def RemoveRule(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, ASSIGN)
        r = await self._call(self.registry.owners.remove_rule, request.name, self.clock(), actor=caller.actor,
                             reason=request.reason)
        return rule_out(r)

    @unary
    async def ReorderRules(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, ASSIGN)
        rules = await self._call(self.registry.owners.reorder_rules, list(request.names), self.clock(),
                                 actor=caller.actor, reason=request.reason)
        return pb.RulePage(rules=[rule_out(r) for r in rules])

    # -- explicit assignments -------------------------------------------------------------

    @unary
    async def Assign(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, ASSIGN)

        def opt(field: str) -> str | None:
            return getattr(request, field) if request.HasField(field) else None

        done = await self._call(
            self.registry.owners.assign, request.fingerprint_prefix, self.clock(), owner=opt("owner"),
            environment=opt("environment"), criticality=opt("criticality"), service=opt("service"),
            where=selector_in(request.where), reason=request.reason, actor=caller.actor,
        )
        log.info("%s assigned %s: %d explicit assignment(s)", caller.name, request.fingerprint_prefix, len(done))
        return pb.AssignResponse(assignments=[explicit_out(e) for e in done])

    @unary
    async def Unassign(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, ASSIGN)
        n = await self._call(self.registry.owners.unassign, request.fingerprint_prefix, self.clock(),
                             where=selector_in(request.where), actor=caller.actor, reason=request.reason)
        return pb.UnassignResponse(removed=n)

    @streaming
    async def ListAssignments(self, request, context):  # type: ignore[override]
        await self.auth.admin(context, READ)
        async for page in _paged(self.registry.owners.list_explicit()):
            yield pb.ExplicitAssignmentPage(assignments=[explicit_out(e) for e in page])

    @unary
    async def GetAssignment(self, request, context):  # type: ignore[override]
        await self.auth.admin(context, READ)
        ca = await self._call(self.registry.owners.assignment_for, request.fingerprint_prefix)
        c = ca.certificate
        return pb.CertificateAssignmentInfo(
            fingerprint_sha256=c.fingerprint, subject=c.subject, issuer=c.issuer,
            not_after=convert.dt_to_ts(c.not_after), certificate=assignment_out(ca.certificate_assignment),
            locations=[
                pb.LocatedAssignmentInfo(
                    agent_id=la.location.agent_id, hostname=la.location.hostname,
                    store_type=la.location.store_type, path=la.location.path, alias=la.location.alias,
                    chain_index=la.location.chain_index, status=la.location.status,
                    labels=dict(la.location.labels), assignment=assignment_out(la.assignment),
                )
                for la in ca.locations
            ],
            explicit=[explicit_out(e) for e in ca.explicit],
        )

    @streaming
    async def ListOrphans(self, request, context):  # type: ignore[override]
        await self.auth.admin(context, READ)
        async for page in _paged(self.registry.owners.orphans(self.clock())):
            yield pb.OrphanPage(orphans=[orphan_out(o) for o in page])


# -- records to messages (and back) ---------------------------------------------------------


def selector_in(msg: pb.LocationSelection) -> LocationSelector | None:
    sel = LocationSelector(agent_id=msg.agent_id, hostname=msg.hostname, store_type=msg.store_type,
                           path=msg.path, alias=msg.alias)
    return None if sel == LocationSelector() else sel


def owner_out(o: own.Owner, caller: Any) -> pb.OwnerInfo:
    """An owner as ``caller`` may see it: the webhook in full for the admin role only (its path
    and query often hold a secret), scheme and host for every other role."""
    webhook = o.webhook if caller.role == "admin" else redact_url(o.webhook)
    return pb.OwnerInfo(
        name=o.name, contacts=list(o.contacts), webhook=webhook, escalation=o.escalation,
        description=o.description, working_contact=o.working,
        created_at=convert.dt_to_ts(o.created_at), updated_at=convert.dt_to_ts(o.updated_at),
    )


def rule_out(r: own.Rule) -> pb.AssignmentRuleInfo:
    return pb.AssignmentRuleInfo(
        name=r.name, priority=r.priority, owner=r.owner, environment=r.environment, criticality=r.criticality,
        service=r.service, host=r.host, path=r.path, san=r.san, issuer=r.issuer, labels=dict(r.labels),
        description=r.description, created_by=r.created_by,
        created_at=convert.dt_to_ts(r.created_at), updated_at=convert.dt_to_ts(r.updated_at),
    )


def explicit_out(e: own.Explicit) -> pb.ExplicitAssignmentInfo:
    return pb.ExplicitAssignmentInfo(
        scope=e.scope, fingerprint_sha256=e.fingerprint, agent_id=e.agent_id, hostname=e.hostname,
        store_type=e.store_type, path=e.path, alias=e.alias, owner=e.owner, environment=e.environment,
        criticality=e.criticality, service=e.service, reason=e.reason, assigned_by=e.assigned_by,
        created_at=convert.dt_to_ts(e.created_at), updated_at=convert.dt_to_ts(e.updated_at),
    )


def assignment_out(a: own.Assignment) -> pb.AssignmentInfo:
    return pb.AssignmentInfo(
        owner=a.owner or "", environment=a.environment or "", criticality=a.criticality or "",
        service=a.service or "", source=a.source or "", sources=dict(a.sources),
    )


def orphan_out(o: own.Orphan) -> pb.OrphanInfo:
    c = o.certificate
    return pb.OrphanInfo(
        fingerprint_sha256=c.fingerprint, subject=c.subject, issuer=c.issuer,
        not_after=convert.dt_to_ts(c.not_after), reason=o.reason, detail=o.detail,
        locations=[
            pb.OrphanLocationInfo(
                agent_id=ol.location.agent_id, hostname=ol.location.hostname, store_type=ol.location.store_type,
                path=ol.location.path, alias=ol.location.alias, chain_index=ol.location.chain_index,
                reason=ol.reason, detail=ol.detail, assignment=assignment_out(ol.assignment),
            )
            for ol in o.locations
        ],
    )
