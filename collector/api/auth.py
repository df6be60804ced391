"""Who is calling: the client certificate of a mutual-TLS call, checked against the registry.

The TLS layer has already verified the certificate chains to the collector CA
and is within its validity. Here we map it to an identity and check the
registry: an agent must be enrolled, active and presenting its current
identity; an admin certificate must be known and not revoked, and its role
must allow the call. A refused admin call is audited (``call.refused``), in a
transaction of its own.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import grpc

from certfleet.logformat import set_log_fields
from collector import errors
from collector.api.errors import current_method
from collector.pki import Identity, identity_from_pem
from collector.registry import Registry

log = logging.getLogger(__name__)

# Which roles may make which admin calls. Roles: admin (everything), operator
# (renew, revoke, assign, manage agents), owner (read and renew its own),
# auditor (read everything, export reports and the audit trail, change nothing),
# approver (read, and approve or deny issuances that wait for an approval).
READ = "read"
MANAGE_AGENTS = "manage_agents"
ENROLL = "enroll"
RENEW = "renew"
REVOKE = "revoke"
ASSIGN = "assign"            # owners, assignment rules, explicit assignments
AUDIT_READ = "audit_read"     # verify, list and export the audit trail
POLICY = "change_policy"      # change the policy document (admin only)
EXCEPTIONS = "manage_exceptions"  # add and remove policy exceptions
NETWORK_SCAN = "network_scan"     # make an agent scan address ranges (admin only)
NAMES = "manage_names"        # name grants and allows, adoption, agents' recorded names and labels (admin only)
APPROVE = "approve"           # decide approvals (admin, approver; never one's own request)
PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({READ, MANAGE_AGENTS, ENROLL, RENEW, REVOKE, AUDIT_READ, ASSIGN, POLICY, EXCEPTIONS,
                        NETWORK_SCAN, NAMES, APPROVE}),
    "operator": frozenset({READ, MANAGE_AGENTS, ENROLL, RENEW, REVOKE, ASSIGN, EXCEPTIONS}),
    "auditor": frozenset({READ, AUDIT_READ}),
    "owner": frozenset({READ, RENEW}),   # narrowed to the team's certificates: OWNER_CALLS, collector/domain/scope.py
    "approver": frozenset({READ, APPROVE}),   # issue 11: decides approvals, changes nothing else
}

# Role owner acts for one team (its admin identity's ``team``) and may make only these
# calls; the servicers narrow each to the team's certificates and jobs (collector/domain/scope.py).
# Agents are not owned: ListAgents is read-only and shows every agent. GetReport: only the
# reports that have a team view (collector/reports ``owner_scoped``: expiring, violations,
# owners), built for the team; the servicer refuses the others (coverage, audit). Everything
# else (assignments, orphans, policy violations and exceptions, notifications) covers other
# teams' certificates and is refused to the role.
OWNER_CALLS = frozenset({
    "AdminService.ListCertificates", "AdminService.GetCertificate", "AdminService.ListAgents",
    "AdminService.Renew", "AdminService.ListJobs", "AdminService.GetJob", "AdminService.RetryJob",
    "AdminService.CancelJob",
    "GovernanceService.ListOwners", "GovernanceService.ListRules", "PolicyService.GetPolicy",
    "ReportService.GetReport",
    # stale services: only the team's locations (collector/api/netscan.py). Network scans are
    # of address ranges, not of a team's certificates: refused to the role.
    "DiscoveryService.ListStale",
    # issue 11: the team's grants and the approvals of its names (collector/api/authority.py narrows them)
    "AdminService.ListNameRules", "AdminService.ListApprovals", "AdminService.GetApproval",
})


@dataclass(frozen=True)
class AdminCaller:
    name: str
    role: str
    serial: str
    team: str | None = None     # role owner: the owner (team) it acts for

    @property
    def scoped(self) -> bool:
        """Whether what this caller sees and changes is narrowed to its team (role owner)."""
        return self.role == "owner"

    @property
    def actor(self) -> str:
        """Who this is in the audit trail and on jobs: ``role:name``."""
        return f"{self.role}:{self.name}"


def peer_identity(context: grpc.aio.ServicerContext) -> Identity:
    auth = context.auth_context()
    pems = auth.get("x509_pem_cert") or []
    if not pems:
        raise errors.Unauthenticated("a client certificate issued by the collector CA is required")
    try:
        return identity_from_pem(pems[0])
    except errors.CollectorError as e:
        raise errors.Unauthenticated(f"client certificate not usable: {e}") from None


class Authenticator:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def agent(self, context: grpc.aio.ServicerContext) -> str:
        ident = peer_identity(context)
        if ident.kind != "agent":
            raise errors.Unauthenticated("this call is for agents; the client certificate is not an agent's")
        ok = await asyncio.to_thread(self.registry.agent_identity_valid, ident.name, ident.serial)
        if not ok:
            raise errors.Unauthenticated(
                f"agent {ident.name} is unknown, revoked, or presents a replaced certificate; enroll it again"
            )
        set_log_fields(agent_id=ident.name)     # the rest of this call logs for this (verified) agent
        return ident.name

    async def admin(self, context: grpc.aio.ServicerContext, permission: str) -> AdminCaller:
        """The admin caller, if its role has ``permission``; a refusal is audited, then raised."""
        try:
            ident = peer_identity(context)
        except errors.Unauthenticated as e:
            await self._refused("unknown", permission, e, {"peer": context.peer()})
            raise
        if ident.kind != "admin":
            e = errors.PermissionDenied("admin calls need an admin certificate (certfleet-collector init-admin)")
            await self._refused(f"{ident.kind}:{ident.name}", permission, e, {"serial": ident.serial})
            raise e
        known = await asyncio.to_thread(self.registry.admin_identity, ident.serial)
        if known is None:
            e = errors.Unauthenticated("admin certificate unknown or revoked")
            await self._refused(f"admin:{ident.name}", permission, e, {"serial": ident.serial})
            raise e
        name, role, team = known
        caller = AdminCaller(name=name, role=role, serial=ident.serial, team=team)
        if permission not in PERMISSIONS.get(role, frozenset()):
            e = errors.PermissionDenied(f"role {role!r} may not {permission.replace('_', ' ')}")
            await self._refused(caller.actor, permission, e, {"role": role, "serial": ident.serial})
            raise e
        if role == "owner":
            method = current_method() or "unknown"
            if team is None:
                e = errors.PermissionDenied("this owner identity names no team; make it again with "
                                            "certfleet-collector init-admin --role owner --team TEAM")
                await self._refused(caller.actor, permission, e, {"role": role, "serial": ident.serial})
                raise e
            if method not in OWNER_CALLS:
                e = errors.PermissionDenied(
                    f"role owner (team {team}) may not call {method}: it covers other teams' certificates; "
                    "use certs list, certs show, renew and jobs, which show the team's own")
                await self._refused(caller.actor, permission, e,
                                    {"role": role, "team": team, "serial": ident.serial})
                raise e
        return caller

    async def refuse(self, caller: AdminCaller, permission: str, message: str, **detail: object) -> errors.PermissionDenied:
        """Audit a call refused after the role check (e.g. outside the owner's team); returns the error to raise."""
        e = errors.PermissionDenied(message)
        await self._refused(caller.actor, permission, e,
                            {"role": caller.role, "team": caller.team, "serial": caller.serial, **detail})
        return e

    async def _refused(self, actor: str, permission: str, exc: errors.CollectorError, detail: dict) -> None:
        """Audit a refused admin call; a failure to record it is logged and does not hide the refusal."""
        method = current_method() or "unknown"
        try:
            await asyncio.to_thread(
                self.registry.record_refused_call, actor, method, permission, str(exc),
                detail={"code": type(exc).__name__, **detail})
        except Exception:  # noqa: BLE001 - the caller still gets its refusal
            log.exception("could not audit the refused call %s by %s", method, actor)
