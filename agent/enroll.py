"""Enrollment: a key made here, a CSR and a single-use token sent over TLS that trusts only the pinned CA."""
from __future__ import annotations

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from agent.config import AgentConfig
from agent.errors import AgentError, IdentityError
from agent.identity import AgentIdentity, identity_dir, load_identity, make_key_and_csr, save_identity
from agent.pinning import fetch_pinned_ca
from agent.sync import describe_rpc_error, host_info
from certfleet.v1 import agent_pb2, agent_pb2_grpc


class EnrollError(AgentError):
    pass


def split_endpoint(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise EnrollError(f"--collector {value!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def enroll(
    config: AgentConfig, collector: str, token: str, ca_fingerprint: str, *, force: bool = False, timeout: float = 30.0,
) -> AgentIdentity:
    directory = identity_dir(config.data_dir)
    if not force:
        try:
            existing = load_identity(directory)
        except IdentityError:
            existing = None
        if existing is not None:
            raise EnrollError(
                f"this host is already enrolled as agent {existing.agent_id} (identity in {directory}); "
                "pass --force to enroll again"
            )
    host, port = split_endpoint(collector)
    ca_der = fetch_pinned_ca(host, port, ca_fingerprint, timeout)
    ca_pem = x509.load_der_x509_certificate(ca_der).public_bytes(Encoding.PEM)
    key, csr_der = make_key_and_csr()
    creds = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    with grpc.secure_channel(collector, creds) as channel:
        stub = agent_pb2_grpc.EnrollmentStub(channel)
        try:
            resp = stub.Enroll(
                agent_pb2.EnrollRequest(token=token, csr_der=csr_der, host=host_info(config.hostname, dict(config.labels))),
                timeout=timeout,
            )
        except grpc.RpcError as e:
            raise EnrollError(f"enrollment refused: {e.details()}" if e.code() in (
                grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT) else describe_rpc_error(e)) from None
    endpoint = resp.agent_endpoint or f"{host}:{port}"
    ep_host, _, ep_port = endpoint.rpartition(":")
    if ep_host in ("0.0.0.0", "::", "[::]", ""):
        endpoint = f"{host}:{ep_port}"   # the collector listens on all addresses: reach it where we enrolled
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return save_identity(directory, key, resp.certificate_der, list(resp.ca_chain_der), resp.agent_id, endpoint)
