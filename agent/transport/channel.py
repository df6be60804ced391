"""The agent's channel to the collector (gRPC over mutual TLS) and what its failures mean, in words."""
from __future__ import annotations

import grpc

from agent.identity import AgentIdentity

__all__ = ["collector_channel", "describe_rpc_error", "MAX_MESSAGE"]

MAX_MESSAGE = 32 * 1024 * 1024


def collector_channel(identity: AgentIdentity, keepalive: bool = False) -> grpc.Channel:
    """A channel to the collector of ``identity``, authenticated with its certificate against the pinned CA.

    ``keepalive``: for the long-lived command stream (pings every 30 s, also without calls).
    """
    options = [("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)]
    if keepalive:
        options += [("grpc.keepalive_time_ms", 30000), ("grpc.keepalive_permit_without_calls", 1)]
    return grpc.secure_channel(identity.endpoint, identity.channel_credentials(), options=options)


def describe_rpc_error(e: grpc.RpcError) -> str:
    code = e.code() if hasattr(e, "code") else None
    details = e.details() if hasattr(e, "details") else str(e)
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"collector unreachable: {details}"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return f"the collector refused this agent's identity: {details}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "the collector did not answer in time"
    return f"{code.name if code else 'error'}: {details}"
