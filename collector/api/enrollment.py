"""Enrollment servicer: served on the TLS listener that needs no client certificate.

Thin: the single-use token in the request is the caller's only credential; the service
(collector/services/enrollment.py) checks it, issues and records.
"""
from __future__ import annotations

import asyncio
import logging

import grpc

from certfleet.v1 import agent_pb2, agent_pb2_grpc
from collector.api.convert import host_in
from collector.api.errors import unary
from collector.services.enrollment import Enrollment

log = logging.getLogger(__name__)


class EnrollmentServicer(agent_pb2_grpc.EnrollmentServicer):
    def __init__(self, enrollment: Enrollment, agent_endpoint: str) -> None:
        self.enrollment = enrollment
        self.agent_endpoint = agent_endpoint     # where enrolled agents dial the mutual-TLS listener

    @unary
    async def Enroll(self, request: agent_pb2.EnrollRequest, context: grpc.aio.ServicerContext) -> agent_pb2.EnrollResponse:
        host = host_in(request.host)
        issued = await asyncio.to_thread(self.enrollment.enroll, request.token, request.csr_der, host)
        log.info("enrolled agent %s (reports host %s) from %s", issued.agent_id, host.hostname, context.peer())
        return agent_pb2.EnrollResponse(
            agent_id=issued.agent_id, certificate_der=issued.certificate_der, ca_chain_der=list(issued.ca_chain_der),
            agent_endpoint=self.agent_endpoint,
        )
