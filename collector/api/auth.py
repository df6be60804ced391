"""Who is calling: the client certificate of a mutual-TLS call, checked against the registry.

The TLS layer has already verified the certificate chains to the collector CA
and is within its validity. Here we map it to an identity and check the
registry: an agent must be enrolled, active and presenting its current
identity; an admin certificate must be known and not revoked, and its role
must allow the call.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc

from collector import errors
from collector.pki import Identity, identity_from_pem
from collector.registry.repository import Registry

# Which roles may make which admin calls. Roles: admin (everything), operator
# (renew, revoke, assign, manage agents), owner (read and renew its own),
# auditor (read everything, change nothing).
READ = "read"
MANAGE_AGENTS = "manage_agents"
ENROLL = "enroll"
RENEW = "renew"
REVOKE = "revoke"
PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({READ, MANAGE_AGENTS, ENROLL, RENEW, REVOKE}),
    "operator": frozenset({READ, MANAGE_AGENTS, ENROLL, RENEW, REVOKE}),
    "auditor": frozenset({READ}),
    "owner": frozenset({READ, RENEW}),   # issue 4 narrows this to what the owner's team owns
}


@dataclass(frozen=True)
class AdminCaller:
    name: str
    role: str
    serial: str


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
        return ident.name

    async def admin(self, context: grpc.aio.ServicerContext, permission: str) -> AdminCaller:
        ident = peer_identity(context)
        if ident.kind != "admin":
            raise errors.PermissionDenied("admin calls need an admin certificate (certfleet-collector init-admin)")
        known = await asyncio.to_thread(self.registry.admin_identity, ident.serial)
        if known is None:
            raise errors.Unauthenticated("admin certificate unknown or revoked")
        name, role = known
        if permission not in PERMISSIONS.get(role, frozenset()):
            raise errors.PermissionDenied(f"role {role!r} may not {permission.replace('_', ' ')}")
        return AdminCaller(name=name, role=role, serial=ident.serial)
