"""A report stream cannot hold the database: an agent that sends a header and waits is cut with a
clear status, and meanwhile other agents' reports and an admin's calls go through (SQLite and
PostgreSQL, a real collector on loopback)."""
from __future__ import annotations

import pathlib
import threading
import time

import grpc
import pytest

from agent.identity import load_identity
from certfleet.v1 import agent_pb2, agent_pb2_grpc
from tests.e2e.harness import Agent, Collector

LIMITS = '[limits]\nmessage_timeout = "6s"\nstream_deadline = "20s"\nreport_max_chunks = 5\n'


def _store(path: pathlib.Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    return f'[[store]]\nname = "certs"\ntype = "pem"\npaths = ["{path}/*.pem"]\n'


@pytest.fixture()
def fleet(tmp_path: pathlib.Path, db_url: str):
    c = Collector(tmp_path / "collector", database_url=db_url, extra_tables=LIMITS)
    c.start()
    assert c.init_admin().code == 0
    agents = []
    for name in ("held", "other"):
        a = Agent(tmp_path / name, _store(tmp_path / f"{name}-stores"))
        a.write_config(hostname=f"{name}-host")
        r = a.enroll(c, c.token())
        assert r.code == 0, r.err
        agents.append(a)
    yield c, agents
    c.stop()


def _channel(c: Collector, agent: Agent) -> grpc.Channel:
    ident = load_identity(agent.workdir / "data" / "identity")
    creds = grpc.ssl_channel_credentials(root_certificates=ident.ca_pem, private_key=ident.key_pem,
                                         certificate_chain=ident.cert_chain_pem)
    return grpc.secure_channel(f"127.0.0.1:{c.port}", creds)


def _header(report_id: str) -> agent_pb2.ReportChunk:
    return agent_pb2.ReportChunk(header=agent_pb2.ReportHeader(report_id=report_id, full=True, sequence=1))


def test_a_held_report_stream_does_not_stop_other_writers(fleet) -> None:
    c, (held, other) = fleet
    release = threading.Event()

    def header_then_wait():
        yield _header("held-1")
        release.wait(60)          # an agent that sends its header and then nothing

    with _channel(c, held) as ch:
        stub = agent_pb2_grpc.AgentServiceStub(ch)
        call = stub.Report.future(header_then_wait(), timeout=90)
        time.sleep(1.5)           # the header is at the collector
        t0 = time.monotonic()
        r = other.run_once()      # another agent's report
        assert r.code == 0, r.err
        tok = c.cli("token", "create", "--ttl", "10m", "--format", "json")   # an admin's write
        assert tok.code == 0, tok.err
        assert time.monotonic() - t0 < 15, "other writers waited for the held stream"
        with pytest.raises(grpc.RpcError) as exc:
            call.result()
        release.set()
    assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "sent nothing for 6s" in exc.value.details()
    listed = {a["hostname"]: a for a in c.cli("agents", "list", "--format", "json").json()}
    assert listed["other-host"]["last_sequence"] >= 1, listed   # its report was stored


def test_second_report_in_flight_and_oversized_reports_refused(fleet) -> None:
    c, (held, _other) = fleet
    release = threading.Event()

    def header_then_wait():
        yield _header("first")
        release.wait(30)

    with _channel(c, held) as ch:
        stub = agent_pb2_grpc.AgentServiceStub(ch)
        first = stub.Report.future(header_then_wait(), timeout=60)
        time.sleep(1.0)
        with pytest.raises(grpc.RpcError) as second:
            stub.Report(iter([_header("second")]), timeout=20)
        assert second.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "already in flight" in second.value.details()
        release.set()
        assert first.result().stored   # the first, once it ends, is stored as usual
        too_many = [_header("many")] + [agent_pb2.ReportChunk() for _ in range(10)]
        with pytest.raises(grpc.RpcError) as big:
            stub.Report(iter(too_many), timeout=20)
        assert big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "more than 5 chunks" in big.value.details()
    # the well-behaved agent still reports
    r = held.run_once()
    assert r.code == 0, r.err
