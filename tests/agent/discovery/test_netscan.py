"""Network scan jobs over loopback ranges: planning, real probing, progress, records, idempotency."""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import stat
import threading
import time

import pytest

from agent.commands import CommandHandler
from agent.config import load_config
from agent.netscan.plan import ScanRefused, ScanRequest, plan_scan
from agent.netscan.records import ScanProgress, load_record
from agent.netscan.runner import NetworkScans, ReportGate
from agent.sources.endpoints import EndpointSource
from agent.transport.wire import command_in, scan_request_in
from certfleet.v1 import agent_pb2

from tests.helpers.agent_stores import write_config
from tests.helpers.tls_servers import free_port_on

#: these tests scan loopback listeners: the agent allows it only when listed ([endpoints] network_scan_allowed)
LOOPBACK = tuple(ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128"))


# ---------------------------------------------------------------- planning (pure)

def test_plan_expands_addresses_cidr_and_ranges() -> None:
    p = plan_scan("s1", ["10.0.0.5", "10.0.0.0/30", "10.0.0.10-10.0.0.11", "10.0.0.12-13", "fd00::1-fd00::2"],
                  [443, 25])
    hosts = [t.host for t in p.targets if t.port == 443]
    assert hosts == ["10.0.0.5", "10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.10", "10.0.0.11",
                     "10.0.0.12", "10.0.0.13", "fd00::1", "fd00::2"]
    assert {t.starttls for t in p.targets if t.port == 25} == {"smtp"} and len(p.targets) == 22
    assert p.timeout == 3.0 and p.concurrency == 64 and p.rate == 0.0


def test_plan_refuses_too_many_pairs_before_expanding() -> None:
    t0 = time.monotonic()
    with pytest.raises(ScanRefused, match=r"asks for 33554432 address x port pairs; this agent probes at most 4096"):
        plan_scan("big", ["10.0.0.0/8"], [443, 8443])
    assert time.monotonic() - t0 < 0.5                   # counted, not listed
    with pytest.raises(ScanRefused, match=r"asks for 512 .* at most 100"):
        plan_scan("s", ["10.0.0.0/24"], [443, 25], max_targets=100)
    # the command cannot raise the agent's own limit
    with pytest.raises(ScanRefused, match="at most 4096"):
        plan_scan("s", ["10.0.0.0/19"], [443], max_targets=100000)
    assert len(plan_scan("s", ["10.0.0.0/22"], [443], max_targets=100000).targets) == 1024


@pytest.mark.parametrize("targets, ports, message", [
    (["10.0.0.300"], [443], "is not an IP address"),
    (["10.0.0.9-10.0.0.1"], [443], "ends before it starts"),
    (["10.0.0.1-fd00::1"], [443], "mixes IPv4 and IPv6"),
    (["host.example"], [443], "is not an IP address, a CIDR range or a first-last range"),
    ([], [443], "names no targets"),
    (["10.0.0.1"], [], "names no ports"),
    (["10.0.0.1"], [70000], "not a port number"),
])
def test_plan_refuses_bad_input_with_a_reason(targets, ports, message) -> None:
    with pytest.raises(ScanRefused, match=message):
        plan_scan("s1", targets, ports)


def test_plan_refuses_ids_that_are_not_ids() -> None:
    with pytest.raises(ScanRefused, match="not an id"):
        plan_scan("../../etc/passwd", ["10.0.0.1"], [443])


def test_same_targets_same_identity() -> None:
    a = plan_scan("a", ["10.0.0.0/30", "10.0.1.1"], [443, 25])
    b = plan_scan("b", ["10.0.1.1", "10.0.0.0/30"], [25, 443])
    c = plan_scan("c", ["10.0.0.0/30"], [443, 25])
    assert a.identity == b.identity != c.identity


# ---------------------------------------------------------------- real scans on loopback

class Sent(list):
    def __call__(self, msg: ScanProgress) -> bool:
        self.append(msg)
        return True

    def finals(self) -> list[ScanProgress]:
        return [m for m in self if m.state in ("done", "failed")]


def _wire_cmd(scan_id: str, targets: list[str], ports: list[int], **kw: object) -> agent_pb2.NetworkScan:
    return agent_pb2.NetworkScan(scan_id=scan_id, targets=targets, ports=ports, **kw)


def _cmd(scan_id: str, targets: list[str], ports: list[int], **kw: object) -> ScanRequest:
    """The collector's NetworkScan command as it comes through the agent's door."""
    return scan_request_in(_wire_cmd(scan_id, targets, ports, **kw))


def test_scan_over_a_loopback_block_finds_exactly_the_servers(tmp_path, make_site, s_server, servers, silent,
                                                              loopback_ip) -> None:
    a, b = make_site("a.example.test"), make_site("b.example.test")
    p1 = free_port_on(loopback_ip(1))
    srv_a = s_server(loopback_ip(1), a, port=p1)
    srv_b = s_server(loopback_ip(5), b, port=p1)
    smtp_site = make_site("smtp.example.test")
    smtp_port = servers.smtp_server(loopback_ip(9), smtp_site)
    quiet = silent(loopback_ip(12))                        # accepts and says nothing: a timeout, not an error
    cfg = load_config(write_config(tmp_path / "cfg", "[endpoints]\nlisteners = false"))
    sent = Sent()
    scans = NetworkScans(cfg.data_dir, sent, progress_interval=0.2, allowed_ranges=LOOPBACK)
    block = loopback_ip.block
    rec = scans.run(_cmd("scan-1", [block], [p1, smtp_port, quiet.port], timeout_seconds=0.5,
                         starttls={smtp_port: "smtp"}, concurrency=32))
    found = sorted((o.target.host, o.target.port, o.fingerprint, o.target.starttls) for o in rec.results)
    assert found == sorted([(srv_a.ip, p1, a.fingerprint, ""), (srv_b.ip, p1, b.fingerprint, ""),
                            (loopback_ip(9), smtp_port, smtp_site.fingerprint, "smtp")])
    assert rec.state == "done" and rec.targets_total == 16 * 3 and rec.probed == 48 and rec.tls_found == 3
    assert rec.errors == 0 and "3 TLS endpoints among 48" in rec.reason
    final = sent.finals()
    assert [(m.state, m.tls_found, m.probed, m.targets_total) for m in final] == [("done", 3, 48, 48)]
    assert sent[0].state == "running" and sent[-1] is final[0]

    path = cfg.data_dir / "netscan" / "scan-1.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_bytes())["scan_id"] == "scan-1"

    # the EndpointSource reports them as network_scan locations
    entries = EndpointSource(cfg, names=lambda: []).collect(dt.datetime.now(dt.timezone.utc)).entries
    leaves = {(e.key.path, e.endpoint.source, e.endpoint.scan_id) for e in entries if e.key.chain_index == 0}
    assert leaves == {(f"{srv_a.ip}:{p1}", "network_scan", "scan-1"), (f"{srv_b.ip}:{p1}", "network_scan", "scan-1"),
                      (f"{loopback_ip(9)}:{smtp_port}", "network_scan", "scan-1")}
    assert any(e.key.chain_index == 1 for e in entries)            # the intermediates s_server sent


def test_resent_scan_id_is_answered_not_rerun(tmp_path, make_site, s_server, loopback_ip) -> None:
    srv = s_server(loopback_ip(2), make_site("www.example.test"))
    sent = Sent()
    scans = NetworkScans(tmp_path, sent, allowed_ranges=LOOPBACK)
    cmd = _cmd("again-1", [f"{loopback_ip(2)}-{loopback_ip(3)}"], [srv.port], timeout_seconds=1)
    scans.submit(cmd)
    assert scans.wait_idle(20)
    first = sent.finals()
    assert [(m.state, m.tls_found) for m in first] == [("done", 1)]
    srv.stop()                                           # a rerun would now find nothing
    before = len(sent)
    scans.submit(cmd)                                    # answered at once from the record
    assert sent[before:] == first
    assert load_record(tmp_path, "again-1").tls_found == 1


def test_range_too_large_is_refused_and_stays_refused(tmp_path) -> None:
    sent = Sent()
    scans = NetworkScans(tmp_path, sent, max_targets=64, allowed_ranges=LOOPBACK)
    cmd = _cmd("huge-1", ["127.0.0.0/16"], [443])
    scans.submit(cmd)
    assert scans.wait_idle(10)
    [final] = sent.finals()
    assert final.state == "failed" and "asks for 65536 address x port pairs" in final.reason
    assert "at most 64" in final.reason and final.probed == 0
    scans.submit(cmd)
    assert sent.finals() == [final, final]


def test_disabled_network_scans_fail_with_the_reason(tmp_path) -> None:
    sent = Sent()
    NetworkScans(tmp_path, sent, allowed=False, allowed_ranges=LOOPBACK).run(_cmd("off-1", ["127.0.0.1"], [443]))
    [final] = sent.finals()
    assert final.state == "failed" and "network_scans = false" in final.reason


def test_newer_scan_of_the_same_range_replaces_results(tmp_path, make_site, s_server, loopback_ip) -> None:
    p = free_port_on(loopback_ip(1))
    s1 = s_server(loopback_ip(1), make_site("one.example.test"), port=p)
    s2 = s_server(loopback_ip(2), make_site("two.example.test"), port=p)
    scans = NetworkScans(tmp_path, Sent(), allowed_ranges=LOOPBACK)
    rng = [f"{loopback_ip(1)}-{loopback_ip(2)}"]
    old = scans.run(_cmd("old-1", rng, [p], timeout_seconds=1))
    assert old.tls_found == 2
    s2.stop()
    time.sleep(0.01)
    new = scans.run(_cmd("new-1", rng, [p], timeout_seconds=1))
    assert new.tls_found == 1 and [o.target.host for o in new.results] == [s1.ip]
    kept_old = load_record(tmp_path, "old-1")
    assert kept_old is not None and kept_old.results == () and "replaced by scan new-1" in kept_old.reason
    assert kept_old.tls_found == 2                        # its final progress is still what a resend gets


def test_progress_about_every_interval(tmp_path, silent, loopback_ip) -> None:
    quiet = silent(loopback_ip(3))
    sent = Sent()
    scans = NetworkScans(tmp_path, sent, progress_interval=0.25, allowed_ranges=LOOPBACK)
    t0 = time.monotonic()
    rec = scans.run(_cmd("slow-1", [loopback_ip(3)], [quiet.port], timeout_seconds=1.2))
    elapsed = time.monotonic() - t0
    assert rec.probed == 1 and rec.tls_found == 0 and elapsed < 3
    running = [m for m in sent if m.state == "running"]
    assert len(running) >= 3 and all(m.targets_total == 1 for m in running)


def test_rate_limit_from_the_command(tmp_path, loopback_ip) -> None:
    scans = NetworkScans(tmp_path, Sent(), allowed_ranges=LOOPBACK)
    t0 = time.monotonic()
    rec = scans.run(_cmd("rate-1", [loopback_ip.block], [1], rate_per_second=20, timeout_seconds=1))
    assert rec.probed == 16 and time.monotonic() - t0 >= 15 / 20


def test_command_handler_runs_scans_off_the_stream_and_reports_before_done(tmp_path, make_site, s_server,
                                                                           loopback_ip) -> None:
    srv = s_server(loopback_ip(4), make_site("www.example.test"))
    cfg = load_config(write_config(tmp_path / "cfg", ""))
    handler = CommandHandler(cfg, installer=lambda *a: None)
    gate = ReportGate()
    events: list[str] = []
    sent = Sent()

    def send(msg: ScanProgress) -> bool:
        if msg.state == "done":
            events.append("done")
        return sent(msg)

    def report() -> None:        # what the service loop does when woken: one report, stored
        def run() -> None:
            t = gate.begin()
            events.append("report")
            gate.stored(t)
        threading.Thread(target=run).start()

    handler.network_scans = NetworkScans(tmp_path / "data", send, gate=gate, request_report=report,
                                           allowed_ranges=LOOPBACK)
    cmd = agent_pb2.CollectorCommand(command_id="c1", network_scan=_wire_cmd("cmd-1", [loopback_ip(4)], [srv.port]))
    t0 = time.monotonic()
    assert handler.handle(command_in(cmd)) == []
    assert time.monotonic() - t0 < 0.5                     # the stream thread is not held by the scan
    assert handler.network_scans.wait_idle(20)
    assert events[-2:] == ["report", "done"] and sent.finals()[0].tls_found == 1


def test_ipv6_loopback(tmp_path, make_site, servers) -> None:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    site = make_site("v6.example.test")
    port = servers.plain_tls_server("::1", site)
    rec = NetworkScans(tmp_path, Sent(), allowed_ranges=LOOPBACK).run(_cmd("v6-1", ["::1"], [port], timeout_seconds=2))
    assert [(o.target.endpoint, o.fingerprint) for o in rec.results] == [(f"[::1]:{port}", site.fingerprint)]
    assert ipaddress.ip_address(rec.results[0].target.host).version == 6
