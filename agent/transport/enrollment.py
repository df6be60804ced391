"""The Enrollment RPC: a CSR and a single-use token, over TLS that trusts only the pinned collector CA."""
from __future__ import annotations

from dataclasses import dataclass

import grpc

from agent.errors import EnrollError
from agent.host import HostFacts
from agent.transport.channel import describe_rpc_error
from agent.transport.wire import host_out
from certfleet.v1 import agent_pb2, agent_pb2_grpc

__all__ = ["Enrolled", "enroll"]


@dataclass(frozen=True)
class Enrolled:
    """What the collector issued: the agent's id and certificate, its CA chain and where to report."""

    agent_id: str
    certificate_der: bytes
    ca_chain_der: tuple[bytes, ...]
    agent_endpoint: str                 # host:port of the mutual-TLS listener ("" : the enrollment endpoint's host)


def enroll(collector: str, ca_pem: bytes, token: str, csr_der: bytes, host: HostFacts, timeout: float) -> Enrolled:
    """Enroll at ``collector`` (HOST:PORT); :class:`~agent.errors.EnrollError` when refused or unreachable."""
    creds = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    with grpc.secure_channel(collector, creds) as channel:
        stub = agent_pb2_grpc.EnrollmentStub(channel)
        try:
            resp = stub.Enroll(agent_pb2.EnrollRequest(token=token, csr_der=csr_der, host=host_out(host)),
                               timeout=timeout)
        except grpc.RpcError as e:
            raise EnrollError(f"enrollment refused: {e.details()}" if e.code() in (
                grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT) else describe_rpc_error(e)) from None
    return Enrolled(resp.agent_id, bytes(resp.certificate_der), tuple(bytes(d) for d in resp.ca_chain_der),
                    resp.agent_endpoint)
