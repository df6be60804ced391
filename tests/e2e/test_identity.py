"""Agent identities over the real wire: self-renewal, and expired or foreign certificates refused."""
from __future__ import annotations

import datetime as dt
import pathlib

import grpc
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from agent.identity import load_identity, make_key_and_csr
from certfleet.v1 import agent_pb2, agent_pb2_grpc
from collector.pki import CollectorCA
from tests.e2e.harness import Agent, Collector, collector_ca


def pem_store(path: pathlib.Path) -> str:
    return f'[[store]]\nname = "certs"\ntype = "pem"\npaths = ["{path}/*.pem"]\n'


@pytest.fixture()
def short_lived(tmp_path: pathlib.Path):
    # A one-day identity is inside the last seven days at once: the agent renews it on its next run.
    c = Collector(tmp_path / "collector", extra_config='agent_cert_lifetime = "1d"')
    c.start()
    assert c.init_admin().code == 0
    (tmp_path / "stores").mkdir()
    agent = Agent(tmp_path / "agent", pem_store(tmp_path / "stores"))
    agent.write_config(hostname="renew-host")
    assert agent.enroll(c, c.token()).code == 0
    yield c, agent
    c.stop()


def test_agent_renews_its_identity_and_keeps_working(short_lived) -> None:
    c, agent = short_lived
    ident_dir = agent.workdir / "data" / "identity"
    before = load_identity(ident_dir)
    r = agent.run_once()
    assert r.code == 0, r.err
    after = load_identity(ident_dir)
    assert after.serial != before.serial and after.agent_id == before.agent_id
    assert after.key_pem != before.key_pem            # a new key, made on the host
    r = agent.run_once()                               # the renewed identity is accepted
    assert r.code == 0, r.err
    agents = c.cli("agents", "list", "--format", "json").json()
    assert len(agents) == 1 and agents[0]["status"] == "active"


def _call_report(c: Collector, key_pem: bytes, cert_pem: bytes, ca_pem: bytes) -> grpc.RpcError:
    creds = grpc.ssl_channel_credentials(root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem)
    with grpc.secure_channel(f"127.0.0.1:{c.port}", creds) as ch:
        stub = agent_pb2_grpc.AgentServiceStub(ch)
        with pytest.raises(grpc.RpcError) as exc:
            stub.Report(iter([agent_pb2.ReportChunk(header=agent_pb2.ReportHeader(report_id="x", full=True, sequence=1))]),
                        timeout=10)
    return exc.value


def _key_pem(key) -> bytes:  # noqa: ANN001
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def test_expired_agent_certificate_refused(short_lived) -> None:
    c, agent = short_lived
    ident = load_identity(agent.workdir / "data" / "identity")
    ca = collector_ca(c)
    key, csr = make_key_and_csr()
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=60)
    cert = ca.issue_agent_certificate(csr, ident.agent_id, long_ago, lifetime=dt.timedelta(days=30))
    err = _call_report(c, _key_pem(key), cert.public_bytes(Encoding.PEM), ident.ca_pem)
    assert err.code() == grpc.StatusCode.UNAVAILABLE      # the TLS handshake fails


def test_unknown_agent_with_valid_certificate_refused(short_lived) -> None:
    c, agent = short_lived
    ident = load_identity(agent.workdir / "data" / "identity")
    ca = collector_ca(c)
    key, csr = make_key_and_csr()
    cert = ca.issue_agent_certificate(csr, "never-enrolled", dt.datetime.now(dt.timezone.utc))
    err = _call_report(c, _key_pem(key), cert.public_bytes(Encoding.PEM), ident.ca_pem)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "unknown, revoked" in err.details()


def test_certificate_from_another_ca_refused(short_lived, tmp_path: pathlib.Path) -> None:
    c, agent = short_lived
    ident = load_identity(agent.workdir / "data" / "identity")
    other = CollectorCA.load_or_create(tmp_path / "other-ca", dt.datetime.now(dt.timezone.utc))
    key, csr = make_key_and_csr()
    cert = other.issue_agent_certificate(csr, ident.agent_id, dt.datetime.now(dt.timezone.utc))
    err = _call_report(c, _key_pem(key), cert.public_bytes(Encoding.PEM), ident.ca_pem)
    assert err.code() == grpc.StatusCode.UNAVAILABLE
