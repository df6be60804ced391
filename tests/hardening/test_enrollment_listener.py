"""The enrollment listener, which anyone who can reach it may call: a wrong token is refused before
anything is signed or written, a flood of guesses from one address is cut, a large message is
refused by the transport; a real agent with a good token still enrolls."""
from __future__ import annotations

import pathlib
import sqlite3

import grpc
import pytest

from agent.identity import make_key_and_csr
from certfleet.v1 import agent_pb2, agent_pb2_grpc, common_pb2
from tests.e2e.harness import Agent, Collector


@pytest.fixture()
def collector(tmp_path: pathlib.Path):
    c = Collector(tmp_path / "collector", extra_tables="[limits]\nenroll_per_minute = 5\n")
    c.start()
    assert c.init_admin().code == 0
    yield c
    c.stop()


def _stub(c: Collector) -> tuple[grpc.Channel, agent_pb2_grpc.EnrollmentStub]:
    ca = (c.workdir / "data" / "pki" / "ca.pem").read_bytes()
    ch = grpc.secure_channel(f"127.0.0.1:{c.enroll_port}", grpc.ssl_channel_credentials(root_certificates=ca))
    return ch, agent_pb2_grpc.EnrollmentStub(ch)


def _request(token: str, csr: bytes) -> agent_pb2.EnrollRequest:
    return agent_pb2.EnrollRequest(token=token, csr_der=csr, host=common_pb2.HostInfo(hostname="h1"))


def test_wrong_token_refused_before_the_csr_is_looked_at(collector: Collector) -> None:
    ch, stub = _stub(collector)
    with ch:
        with pytest.raises(grpc.RpcError) as e:
            stub.Enroll(_request("cfe_" + "A" * 43, b"not a CSR at all"), timeout=10)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED and "unknown enrollment token" in e.value.details()


def test_a_flood_of_guesses_is_cut_and_large_messages_refused(collector: Collector, tmp_path: pathlib.Path) -> None:
    _key, csr = make_key_and_csr()
    ch, stub = _stub(collector)
    codes = []
    with ch:
        for _ in range(8):
            try:
                stub.Enroll(_request("cfe_" + "B" * 43, csr), timeout=10)
            except grpc.RpcError as e:
                codes.append(e.code())
        with pytest.raises(grpc.RpcError) as big:
            stub.Enroll(agent_pb2.EnrollRequest(token="cfe_x", csr_der=b"x" * (1024 * 1024)), timeout=10)
    assert codes[:5] == [grpc.StatusCode.PERMISSION_DENIED] * 5
    assert set(codes[5:]) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # nothing was written for the guesses: no agent, and the audit trail holds no enrollment
    con = sqlite3.connect(collector.workdir / "data" / "registry.db")
    assert con.execute("SELECT count(*) FROM agents").fetchone()[0] == 0
    con.close()


def test_a_real_agent_still_enrolls(collector: Collector, tmp_path: pathlib.Path) -> None:
    (tmp_path / "s").mkdir()
    agent = Agent(tmp_path / "agent", f'[[store]]\nname = "c"\ntype = "pem"\npaths = ["{tmp_path}/s/*.pem"]\n')
    agent.write_config(hostname="good")
    r = agent.enroll(collector, collector.token())
    assert r.code == 0, r.err
