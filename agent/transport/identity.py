"""The agent's own identity at the collector: RenewIdentity, and the doctor's check that the collector accepts it."""
from __future__ import annotations

from dataclasses import dataclass

import grpc

from agent.identity import AgentIdentity
from agent.sync import SyncError
from agent.transport.channel import describe_rpc_error
from certfleet.v1 import agent_pb2, agent_pb2_grpc

__all__ = ["renew_identity", "check_identity", "IdentityCheck", "ACCEPTED", "REFUSED", "NO_ANSWER", "STORED",
           "CALL_FAILED"]

ACCEPTED, REFUSED, NO_ANSWER, STORED, CALL_FAILED = "accepted", "refused", "no_answer", "stored", "call_failed"


def renew_identity(channel: grpc.Channel, csr_der: bytes, timeout: float = 60.0) -> tuple[bytes, list[bytes]]:
    """A new certificate for the key of ``csr_der``: ``(certificate_der, ca_chain_der)``; SyncError when refused."""
    stub = agent_pb2_grpc.AgentServiceStub(channel)
    try:
        resp = stub.RenewIdentity(agent_pb2.RenewIdentityRequest(csr_der=csr_der), timeout=timeout)
    except grpc.RpcError as e:
        raise SyncError(f"identity renewal failed: {describe_rpc_error(e)}") from None
    return bytes(resp.certificate_der), [bytes(d) for d in resp.ca_chain_der]


@dataclass(frozen=True)
class IdentityCheck:
    """What the collector made of this agent's identity: ``verdict`` (one of the constants) and its words."""

    verdict: str
    code: str = ""          # the gRPC status code's name, when a call failed
    details: str = ""


def check_identity(identity: AgentIdentity, timeout: float) -> IdentityCheck:
    """A call the collector answers only after it checked the agent's identity against its registry.

    The call is an empty inventory report: refused as empty (INVALID_ARGUMENT) after the
    identity check and before anything is stored, so ``accepted`` changes nothing.
    """
    with grpc.secure_channel(identity.endpoint, identity.channel_credentials()) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        try:
            stub.Report(iter(()), timeout=timeout)
        except grpc.RpcError as e:
            code = e.code()
            if code == grpc.StatusCode.INVALID_ARGUMENT:   # "empty report": the identity passed
                return IdentityCheck(ACCEPTED, code.name, e.details() or "")
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                return IdentityCheck(REFUSED, code.name, e.details() or "")
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return IdentityCheck(NO_ANSWER, code.name, e.details() or "")
            return IdentityCheck(CALL_FAILED, code.name, e.details() or "")
    return IdentityCheck(STORED)
