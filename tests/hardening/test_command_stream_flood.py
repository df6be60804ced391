"""A flood of messages on an agent's command stream: the collector holds a bounded number in hand
(backpressure on the stream), logs a few lines a minute instead of one per message, and keeps
serving other agents."""
from __future__ import annotations

import pathlib
import threading
import time

import grpc

from agent.identity import load_identity
from certfleet.v1 import agent_pb2, agent_pb2_grpc
from tests.e2e.harness import Agent, Collector

FLOOD = 20_000


def test_a_stream_flood_is_bounded_and_quietly_logged(tmp_path: pathlib.Path) -> None:
    c = Collector(tmp_path / "collector", extra_tables="[limits]\nconnect_queue = 16\n")
    c.start()
    try:
        assert c.init_admin().code == 0
        agents = []
        for name in ("flooder", "other"):
            (tmp_path / f"{name}-s").mkdir()
            a = Agent(tmp_path / name, f'[[store]]\nname = "c"\ntype = "pem"\npaths = ["{tmp_path}/{name}-s/*.pem"]\n')
            a.write_config(hostname=name)
            assert a.enroll(c, c.token()).code == 0
            agents.append(a)
        ident = load_identity(agents[0].workdir / "data" / "identity")
        creds = grpc.ssl_channel_credentials(ident.ca_pem, ident.key_pem, ident.cert_chain_pem)
        sent = [0]

        def messages():
            yield agent_pb2.AgentMessage(hello=agent_pb2.AgentHello(agent_version="flood"))
            for i in range(FLOOD):
                sent[0] += 1
                yield agent_pb2.AgentMessage(scan_progress=agent_pb2.NetworkScanProgress(
                    scan_id=f"no-such-scan-{i}", state="running"))

        with grpc.secure_channel(f"127.0.0.1:{c.port}", creds) as ch:
            call = agent_pb2_grpc.AgentServiceStub(ch).Connect(messages(), timeout=240)
            def read_all() -> None:
                try:
                    for _ in call:
                        pass
                except grpc.RpcError:
                    pass                              # cancelled at the end

            drain = threading.Thread(target=read_all, daemon=True)
            drain.start()
            time.sleep(3)
            r = agents[1].run_once()                  # another agent is served meanwhile
            assert r.code == 0, r.err
            deadline = time.monotonic() + 200
            while sent[0] < FLOOD and time.monotonic() < deadline:
                time.sleep(0.5)
            assert sent[0] == FLOOD
            time.sleep(2)
            call.cancel()
        log = (c.workdir / "collector.log").read_text()
        refused = log.count("network scan progress from")
        assert 0 < refused <= 60, refused            # a few lines a minute, not 20 000
        assert "not logged (rate limit)" in log or refused < 25
    finally:
        c.stop()
