"""Enrollment servicer: served on the TLS listener that needs no client certificate.

Thin: the single-use token in the request is the caller's only credential; the service
(collector/services/enrollment.py) checks it, issues and records. Each peer address gets a few
attempts a minute (collector/domain/ratelimit.py; ``[limits] enroll_per_minute``): a flood of
guesses is refused with RESOURCE_EXHAUSTED before anything is looked up. The listener's message
cap is small (collector/server/server.py).
"""
from __future__ import annotations

import asyncio
import logging
import time

import grpc

from certfleet.v1 import agent_pb2, agent_pb2_grpc
from collector.api.convert import host_in
from collector.api.errors import unary
from collector.domain.ratelimit import RateLimits, peer_address
from collector.errors import ResourceExhausted
from collector.services.enrollment import Enrollment

log = logging.getLogger(__name__)


class EnrollmentServicer(agent_pb2_grpc.EnrollmentServicer):
    def __init__(self, enrollment: Enrollment, agent_endpoint: str, per_minute: float = 10.0, burst: int = 10) -> None:
        self.enrollment = enrollment
        self.agent_endpoint = agent_endpoint     # where enrolled agents dial the mutual-TLS listener
        self.limits = RateLimits(per_minute, burst)

    @unary
    async def Enroll(self, request: agent_pb2.EnrollRequest, context: grpc.aio.ServicerContext) -> agent_pb2.EnrollResponse:
        address = peer_address(context.peer())
        if not self.limits.allow(address, time.monotonic()):
            log.warning("enrollment from %s refused: too many attempts", address)
            raise ResourceExhausted("too many enrollment attempts from this address; wait a minute")
        host = host_in(request.host)
        issued = await asyncio.to_thread(self.enrollment.enroll, request.token, request.csr_der, host)
        log.info("enrolled agent %s (reports host %s) from %s", issued.agent_id, host.hostname, context.peer())
        return agent_pb2.EnrollResponse(
            agent_id=issued.agent_id, certificate_der=issued.certificate_der, ca_chain_der=list(issued.ca_chain_der),
            agent_endpoint=self.agent_endpoint,
        )
