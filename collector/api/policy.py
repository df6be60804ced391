"""PolicyService servicer: the policy document, violations and exceptions.

Thin: checks the caller's role (reading: READ; the policy: POLICY, admin only;
exceptions: EXCEPTIONS, admin and operator), turns messages into
``Registry.policies`` calls and records into messages. The semantics are in
collector/domain/policy.py and collector/registry/policies.py.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from typing import Any, Callable

from certfleet.v1 import policy_pb2 as pb
from certfleet.v1 import policy_pb2_grpc
from collector.domain import policy as pol
from collector.api import convert
from collector.api.paging import paged as _paged
from collector.api.auth import EXCEPTIONS, POLICY, READ, Authenticator
from collector.api.errors import streaming, unary
from collector.errors import InvalidInput
from collector.registry.policies import PolicyVersion, ViolationView
from collector.registry import Registry

log = logging.getLogger(__name__)


class PolicyServicer(policy_pb2_grpc.PolicyServiceServicer):
    def __init__(self, registry: Registry, auth: Authenticator, clock: Callable[[], dt.datetime],
                 on_new_violation: Callable[[Any], Any] | None = None) -> None:
        self.registry = registry
        self.on_new_violation = on_new_violation
        self.auth = auth
        self.clock = clock
        self._background: set[asyncio.Task] = set()

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))

    @unary
    async def GetPolicy(self, request, context):  # type: ignore[override]
        await self.auth.admin(context, READ)
        return policy_out(await self._call(self.registry.policies.current))

    @unary
    async def SetPolicy(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, POLICY)
        if not request.document.strip():
            raise InvalidInput("the policy document is empty")
        v = await self._call(self.registry.policies.set_policy, request.document, self.clock(), actor=caller.actor,
                             reason=request.reason)
        log.info("policy v%d set by %s", v.version, caller.name)
        # evaluate against the new policy in the background; the scheduled run would catch up anyway
        task = asyncio.create_task(self._call(self.registry.policies.evaluate_all, self.clock(),
                                              on_new_violation=self.on_new_violation))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)
        return policy_out(v)

    @streaming
    async def ListViolations(self, request, context):  # type: ignore[override]
        await self.auth.admin(context, READ)
        it = self.registry.policies.list_violations(
            self.clock(), rule=request.rule, owner=request.owner, include_excepted=request.include_excepted,
            include_cleared=request.include_cleared)
        async for page in _paged(it):
            yield pb.ViolationPage(violations=[violation_out(v) for v in page])

    @unary
    async def AddException(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, EXCEPTIONS)
        now = self.clock()
        e = await self._call(
            self.registry.policies.add_exception, request.rule, now,
            expires_at=convert.ts_to_dt(request.expires_at, request.HasField("expires_at")), reason=request.reason,
            fingerprint=request.fingerprint, owner=request.owner, pattern=request.pattern, actor=caller.actor)
        return exception_out(e, now)

    @streaming
    async def ListExceptions(self, request, context):  # type: ignore[override]
        await self.auth.admin(context, READ)
        now = self.clock()
        expired = True if request.expired_only else (None if request.include_expired else False)
        items = await self._call(self.registry.policies.list_exceptions, now, expired)
        async for page in _paged(iter(items)):
            yield pb.ExceptionPage(exceptions=[exception_out(e, now) for e in page])

    @unary
    async def RemoveException(self, request, context):  # type: ignore[override]
        caller = await self.auth.admin(context, EXCEPTIONS)
        now = self.clock()
        e = await self._call(self.registry.policies.remove_exception, int(request.id), now, actor=caller.actor,
                             reason=request.reason)
        return exception_out(e, now)


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("policy evaluation failed: %s", task.exception())


def policy_out(v: PolicyVersion) -> pb.PolicyInfo:
    return pb.PolicyInfo(
        version=v.version, document=v.doc.text, sha256=v.doc.sha256, source=v.source, created_by=v.created_by,
        reason=v.reason, created_at=convert.dt_to_ts(v.created_at), rules=list(pol.RULES),
    )


def violation_out(v: ViolationView) -> pb.ViolationInfo:
    return pb.ViolationInfo(
        id=v.id, fingerprint_sha256=v.fingerprint, subject=v.subject, not_after=convert.dt_to_ts(v.not_after),
        agent_id=v.agent_id, hostname=v.hostname, store_type=v.store_type, path=v.path, alias=v.alias,
        chain_index=v.chain_index, owner=v.owner, environment=v.environment, rule=v.rule, reason=v.reason,
        first_seen=convert.dt_to_ts(v.first_seen), last_seen=convert.dt_to_ts(v.last_seen),
        cleared_at=convert.dt_to_ts(v.cleared_at), exception_id=v.exception_id or 0,
    )


def exception_out(e: pol.PolicyException, now: dt.datetime) -> pb.ExceptionInfo:
    return pb.ExceptionInfo(
        id=e.id, rule=e.rule, fingerprint_sha256=e.fingerprint, owner=e.owner, pattern=e.pattern, reason=e.reason,
        granted_by=e.granted_by, created_at=convert.dt_to_ts(e.created_at), expires_at=convert.dt_to_ts(e.expires_at),
        expired=e.expired(now),
    )
