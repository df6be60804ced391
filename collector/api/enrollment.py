"""Enrollment servicer: served on the TLS listener that needs no client certificate."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Callable

import grpc
from cryptography.hazmat.primitives.serialization import Encoding

from certfleet.v1 import agent_pb2, agent_pb2_grpc
from collector.services import enrollment
from collector.api.convert import host_in
from collector.api.errors import unary
from collector.pki import CollectorCA
from collector.registry.repository import Registry

log = logging.getLogger(__name__)


class EnrollmentServicer(agent_pb2_grpc.EnrollmentServicer):
    def __init__(
        self, registry: Registry, ca: CollectorCA, agent_endpoint: str,
        cert_lifetime: dt.timedelta, clock: Callable[[], dt.datetime],
    ) -> None:
        self.registry = registry
        self.ca = ca
        self.agent_endpoint = agent_endpoint
        self.cert_lifetime = cert_lifetime
        self.clock = clock

    @unary
    async def Enroll(self, request: agent_pb2.EnrollRequest, context: grpc.aio.ServicerContext) -> agent_pb2.EnrollResponse:
        host = host_in(request.host)
        result = await asyncio.to_thread(
            enrollment.enroll, self.registry, self.ca, request.token, request.csr_der, host,
            self.clock(), self.cert_lifetime,
        )
        log.info("enrolled agent %s (host %s) from %s", result.agent_id, host.hostname, context.peer())
        return agent_pb2.EnrollResponse(
            agent_id=result.agent_id,
            certificate_der=result.certificate.public_bytes(Encoding.DER),
            ca_chain_der=[self.ca.cert_der],
            agent_endpoint=self.agent_endpoint,
        )
