"""The command stream and the report intake as services (collector/services/agent_session.py,
inventory.py) against a real registry, and every agent command's wire form (collector/api/convert.py).

The servicer around them only reads and writes the stream: tests/e2e runs it with real agents."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Iterator

import pytest

from certfleet.v1 import agent_pb2, common_pb2
from collector.api import convert
from collector.domain import commands as cmd
from collector.domain import netscan
from collector.domain.jobstates import AgentJobUpdate
from collector.errors import InvalidInput
from collector.registry import Registry
from collector.registry.types import CertFilter
from collector.services.agent_session import AgentSessions
from collector.services.inventory import Inventory, ReportChunkIn
from tests.helpers.registry_certs import T0, header, host, leaf, location, root_ca

WHERE = cmd.LocationKey(store_type="pem", path="/etc/nginx/cert.pem", alias="", chain_index=0)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry.open(f"sqlite:///{tmp_path / 'registry.db'}")
    reg.create_token("00" * 32, T0 + dt.timedelta(hours=1), "test", T0)
    reg.enroll_agent("00" * 32, "agent-1", host("web1.example.com"), "a1b2", T0 + dt.timedelta(days=30), T0)
    try:
        yield reg
    finally:
        reg.close()


def test_every_command_has_its_wire_form() -> None:
    key = common_pb2.LocationKey(store_type="pem", path="/etc/nginx/cert.pem")
    prepare = convert.command_out(cmd.PrepareRenewal("j:prepare:0", "j", WHERE, "ec-p256", "www.example.test",
                                                     ("www.example.test",), ("10.0.0.5",)))
    assert prepare == agent_pb2.CollectorCommand(command_id="j:prepare:0", prepare_renewal=agent_pb2.PrepareRenewal(
        job_id="j", location=key, key_spec="ec-p256", common_name="www.example.test",
        dns_names=["www.example.test"], ip_addresses=["10.0.0.5"]))
    install = convert.command_out(cmd.InstallCertificate("j:install:0", "j", WHERE, b"leaf", (b"int",), "ab" * 32,
                                                         b"root"))
    assert install == agent_pb2.CollectorCommand(
        command_id="j:install:0", install_certificate=agent_pb2.InstallCertificate(
            job_id="j", location=key, certificate_der=b"leaf", chain_der=[b"int"], expected_old_fingerprint="ab" * 32,
            trust_anchor_der=b"root"))
    place = convert.command_out(cmd.PlaceChallenge("j:challenge:t", "j", WHERE, "t", "t.thumb", "www.example.test"))
    assert place.place_challenge == agent_pb2.PlaceChallenge(job_id="j", location=key, token="t",
                                                             key_authorization="t.thumb", domain="www.example.test")
    remove = convert.command_out(cmd.RemoveChallenge("j:challenge-cleanup:t", "j", WHERE, "t"))
    assert remove.WhichOneof("body") == "remove_challenge" and remove.remove_challenge.token == "t"
    scan = convert.command_out(cmd.NetworkScan("s:netscan", "s", ("10.0.0.0/30",), (443, 25), 50.0, 3.0, 64,
                                               ("www.example.test",), {25: "smtp"}, netscan.MAX_PROBES))
    assert scan.network_scan == agent_pb2.NetworkScan(
        scan_id="s", targets=["10.0.0.0/30"], ports=[443, 25], rate_per_second=50.0, timeout_seconds=3.0,
        concurrency=64, sni_names=["www.example.test"], starttls={25: "smtp"}, max_addresses=netscan.MAX_PROBES)


def test_a_session_sends_each_scan_once_and_again_after_a_reconnect(registry: Registry) -> None:
    plan = netscan.plan_scan(["10.0.0.0/30"], [443])
    started = registry.discovery.start_scan("agent-1", plan, "admin:test", "inventory", T0)
    sessions = AgentSessions(registry, lambda: T0)          # renewal not configured
    first = sessions.open("agent-1")
    (sent,) = first.commands()
    assert isinstance(sent, cmd.NetworkScan) and sent.scan_id == started.scan_id
    assert (sent.targets, sent.ports, sent.max_addresses) == (("10.0.0.0/30",), (443,), netscan.MAX_PROBES)
    assert first.commands() == []                            # claimed: not sent twice on one stream
    again = sessions.open("agent-1").commands()               # a new stream: the unfinished scan again
    assert [c.scan_id for c in again] == [started.scan_id]
    first.on_scan_progress(started.scan_id, netscan.Progress(state="done", targets_total=4, probed=4))
    assert registry.discovery.get_scan(started.scan_id).state == "done"
    assert sessions.open("agent-1").commands() == []
    first.on_scan_progress("no-such-scan", netscan.Progress(state="running"))   # refused, logged, no raise


def test_challenge_answers_are_taken_at_once_and_job_updates_without_renewal_are_ignored(registry: Registry) -> None:
    session = AgentSessions(registry, lambda: T0).open("agent-1")
    assert session.take_answer(AgentJobUpdate(job_id="j", state="challenge_ready", challenge_token="t"))
    assert session.take_answer(AgentJobUpdate(job_id="j", state="challenge_failed", reason="no webroot"))
    assert not session.take_answer(AgentJobUpdate(job_id="j", state="csr_ready"))
    session.on_job_update(AgentJobUpdate(job_id="j", state="csr_ready"))    # nothing to renew with: ignored


def test_a_report_is_one_transaction_fed_chunk_by_chunk(registry: Registry) -> None:
    cert = leaf("www.example.test", root_ca())
    inventory = Inventory(registry, lambda: T0)
    report = inventory.receive("agent-1")
    with pytest.raises(InvalidInput, match="first chunk of a report must carry its header"):
        report.add(ReportChunkIn(upserts=[location(cert, "/etc/nginx/cert.pem")]))
    with pytest.raises(InvalidInput, match="empty report"):
        inventory.receive("agent-1").finish()
    report = inventory.receive("agent-1")
    report.add(ReportChunkIn(header=header("r1", full=True, sequence=1)))
    report.add(ReportChunkIn(upserts=[location(cert, "/etc/nginx/cert.pem")]))
    result = report.finish()
    assert result.stored and result.locations_upserted == 1 and result.certificates_new == 1
    report.abort()                                           # after finishing: nothing to roll back
    report.evaluate()                                        # the policy, on what was stored
    assert registry.get_certificate(cert.fingerprint, False).fingerprint == cert.fingerprint
    # a report that breaks off is rolled back: nothing of it stays
    broken = inventory.receive("agent-1")
    broken.add(ReportChunkIn(header=header("r2", full=True, sequence=2),
                             upserts=[location(leaf("db.example.test", root_ca()), "/etc/db.pem")]))
    broken.abort()
    assert [c.fingerprint for c in registry.list_certificates(CertFilter())] == [cert.fingerprint]
