"""AgentService servicer: inventory reports, the command stream and identity renewal, over mutual TLS.

Thin: who is calling (collector/api/auth.py), then the service, with messages converted at the
door (collector/api/convert.py):

- ``Report``: the chunks are received whole within the ``[limits]`` (deadlines, caps; one report
  in flight per agent) into a spool, then stored in one short transaction
  (collector/services/inventory.py); the policy evaluation of a stored report runs in the background;
- ``Connect``: the agent's session (collector/services/agent_session.py) says what to send; this
  servicer writes it, reads what the agent sends back and hands it over, and waits (woken by the
  hub when a job is made for the agent, else polling);
- ``RenewIdentity``: collector/services/enrollment.py.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Callable

import grpc

from certfleet.v1 import agent_pb2, agent_pb2_grpc
from collector import errors
from collector.api import convert
from collector.api.auth import Authenticator
from collector.api.errors import status_for, unary
from collector.api.hub import AgentHub
from collector.api.streams import Spool, bounded
from collector.config.limits import StreamLimits
from collector.services.agent_session import AgentSession, AgentSessions
from collector.services.enrollment import Enrollment
from collector.services.inventory import Inventory

log = logging.getLogger(__name__)


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(
        self, auth: Authenticator, inventory: Inventory, sessions: AgentSessions, enrollment: Enrollment,
        hub: AgentHub | None = None, poll_seconds: float = 2.0, limits: StreamLimits | None = None,
    ) -> None:
        self.auth = auth
        self.inventory = inventory
        self.sessions = sessions
        self.enrollment = enrollment
        self.hub = hub or AgentHub()
        self.poll_seconds = poll_seconds
        self._background: set[asyncio.Task] = set()
        self.limits = limits or StreamLimits()
        self._reporting: set[str] = set()   # agents with a report in flight (one each)

    def _in_background(self, fn: Callable[..., Any], *args: Any) -> asyncio.Task:
        """Run a blocking call off the event loop without waiting for it (the task is kept until done)."""
        task = asyncio.create_task(asyncio.to_thread(fn, *args))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    @unary
    async def Report(
        self, request_iterator: AsyncIterator[agent_pb2.ReportChunk], context: grpc.aio.ServicerContext
    ) -> agent_pb2.ReportAck:
        agent_id = await self.auth.agent(context)
        if agent_id in self._reporting:
            raise errors.ResourceExhausted(f"a report from agent {agent_id} is already in flight; send one at a time")
        self._reporting.add(agent_id)
        try:
            # Received whole first (deadlines and caps: collector/api/streams.py), into a spool: a slow
            # or silent agent holds a spool, never the database. Then stored in one short transaction.
            with await Spool.fill(bounded(request_iterator, self.limits, "report")) as spool:
                report = self.inventory.receive(agent_id)
                chunks = (convert.report_chunk_in(c) for c in spool.read(agent_pb2.ReportChunk))
                result = await asyncio.to_thread(report.store, chunks)
        finally:
            self._reporting.discard(agent_id)
        self._in_background(report.evaluate)
        return convert.report_ack_out(result)

    @unary
    async def RenewIdentity(
        self, request: agent_pb2.RenewIdentityRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.RenewIdentityResponse:
        agent_id = await self.auth.agent(context)
        issued = await asyncio.to_thread(self.enrollment.renew_identity, agent_id, request.csr_der)
        return agent_pb2.RenewIdentityResponse(
            certificate_der=issued.certificate_der, ca_chain_der=list(issued.ca_chain_der),
            not_after=convert.dt_to_ts(issued.not_after),
        )

    async def Connect(self, request_iterator, context: grpc.aio.ServicerContext) -> None:  # noqa: ANN001
        """Commands down, job updates and scan progress up, until the agent hangs up."""
        try:
            agent_id = await self.auth.agent(context)
        except errors.CollectorError as e:
            await context.abort(status_for(e), str(e))
            return
        session = self.sessions.open(agent_id)
        wake = self.hub.register(agent_id)
        log.info("agent %s connected its command stream from %s", agent_id, context.peer())
        reader = asyncio.create_task(self._read(context, session, wake))
        try:
            while not reader.done():
                wake.clear()   # before looking: a wake-up during the look is not lost
                for command in await asyncio.to_thread(session.commands):
                    await context.write(convert.command_out(command))
                    log.info("sent %s to agent %s", command.command_id, agent_id)
                waiter = asyncio.create_task(wake.wait())
                await asyncio.wait({waiter, reader}, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
        finally:
            reader.cancel()
            self.hub.unregister(agent_id, wake)
            log.info("agent %s command stream closed", agent_id)

    async def _read(self, context: grpc.aio.ServicerContext, session: AgentSession, wake: asyncio.Event) -> None:
        """Hand every message the agent sends to its session. Job updates and scan progress are applied
        in the background: issuing may wait for this same stream (an ACME challenge to place). At most
        ``[limits] connect_queue`` of them are in hand at once: beyond that this stops reading, and the
        transport's flow control holds the agent back (backpressure), instead of a task per message."""
        room = asyncio.Semaphore(self.limits.connect_queue)

        def apply(fn: Callable[..., Any], *args: Any) -> asyncio.Task:
            task = self._in_background(fn, *args)
            task.add_done_callback(lambda _: room.release())
            return task

        while True:
            msg = await context.read()
            if msg is grpc.aio.EOF:
                return
            if msg.HasField("scan_progress"):
                p = msg.scan_progress
                await room.acquire()
                apply(session.on_scan_progress, p.scan_id, convert.scan_progress_in(p))
            elif msg.HasField("job_update"):
                update = convert.job_update_in(msg.job_update)
                if not session.take_answer(update):   # an ACME challenge answer is taken at once
                    await room.acquire()
                    task = apply(session.on_job_update, update)
                    task.add_done_callback(lambda _: wake.set())   # its next command goes out now
