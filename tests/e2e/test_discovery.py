"""Discovery through the real programs: a network scan job over a loopback /29 with real
`openssl s_server` listeners, from `certfleet netscan start` to endpoints in the registry;
`certs show` with endpoint, process and stale facts; `certfleet stale`; an auditor may list
scans but not start one (refused and audited).

The scan itself runs in a real agent service (`certfleet-agent run`). The collector-side
checks that need facts a loopback test cannot make happen on demand (a process serving
another certificate than its file) use :class:`ScanningAgent`: an identity made by the real
`certfleet-agent enroll`, on the real mutual-TLS Connect stream and Report RPC, sending what
the contract in agent.proto says an agent sends (it also runs a scan: the collector's half
without the agent's).
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import pathlib
import queue
import socket
import ssl
import subprocess
import threading
import time
import uuid

import grpc
import pytest

from certfleet.v1 import agent_pb2, agent_pb2_grpc, common_pb2
from tests.conftest import free_port, need_tools
from tests.e2e.harness import BIN, Agent, Collector, run
from tests.e2e.test_sync_lifecycle import make_cert

HOSTNAME = "scanner-host"
NET = "127.0.0.8/29"                 # 127.0.0.8 .. 127.0.0.15
SERVERS = ["127.0.0.10", "127.0.0.11", "127.0.0.13"]


def wait_listening(host: str, port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {host}:{port}")


def fingerprint_of(pem: pathlib.Path) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.read_text())).hexdigest()


class ScanningAgent:
    """An enrolled agent identity on the real Connect stream that runs network scans."""

    def __init__(self, data_dir: pathlib.Path) -> None:
        from agent.identity import identity_dir, load_identity   # tests may use both halves

        self.identity = load_identity(identity_dir(data_dir))
        self.channel = grpc.secure_channel(self.identity.endpoint, self.identity.channel_credentials())
        self.stub = agent_pb2_grpc.AgentServiceStub(self.channel)
        self.out: queue.Queue[agent_pb2.AgentMessage | None] = queue.Queue()
        self.scans: list[agent_pb2.NetworkScan] = []
        self.sequence = 0
        self.extra: list[common_pb2.Location] = []      # file locations reported with every full report
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.call = None

    def _outgoing(self):  # noqa: ANN202
        yield agent_pb2.AgentMessage(hello=agent_pb2.AgentHello(agent_version="test"))
        while True:
            msg = self.out.get()
            if msg is None:
                return
            yield msg

    def start(self) -> None:
        self.call = self.stub.Connect(self._outgoing())
        self.thread.start()

    def _run(self) -> None:
        try:
            for cmd in self.call:
                if cmd.HasField("network_scan"):
                    self.scans.append(cmd.network_scan)
                    self.scan(cmd.network_scan)
        except grpc.RpcError:
            pass

    def stop(self) -> None:
        self.out.put(None)
        if self.call is not None:
            self.call.cancel()
        self.channel.close()

    def progress(self, scan: agent_pb2.NetworkScan, state: str, total: int, probed: int, found: int, reason: str = "") -> None:
        self.out.put(agent_pb2.AgentMessage(scan_progress=agent_pb2.NetworkScanProgress(
            scan_id=scan.scan_id, state=state, targets_total=total, probed=probed, tls_found=found, reason=reason)))

    def scan(self, scan: agent_pb2.NetworkScan) -> None:
        # every address of the network (the contract counts .8 and .15 of a /29 too)
        net_all = [(str(a), p) for t in scan.targets for a in ipaddress.ip_network(t) for p in scan.ports]
        found: list[common_pb2.Location] = []
        for i, (host, port) in enumerate(net_all):
            loc = self.handshake(scan, host, port, scan.timeout_seconds)
            if loc is not None:
                found.append(loc)
            if i == len(net_all) // 2:
                self.progress(scan, "running", len(net_all), i + 1, len(found))
        self.report(found)
        self.progress(scan, "done", len(net_all), len(net_all), len(found), f"{len(found)} TLS endpoints")

    @staticmethod
    def handshake(scan: agent_pb2.NetworkScan, host: str, port: int, timeout: float) -> common_pb2.Location | None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        t0 = time.perf_counter()
        try:
            with socket.create_connection((host, port), timeout=timeout) as raw, ctx.wrap_socket(raw) as tls:
                der = tls.getpeercert(binary_form=True)
                version, cipher = tls.version(), tls.cipher()[0]
        except OSError:
            return None
        return common_pb2.Location(
            key=common_pb2.LocationKey(store_type="endpoint", path=f"{host}:{port}"),
            certificate_der=der, fingerprint_sha256=hashlib.sha256(der).hexdigest(), entry_type="certificate",
            role="service",
            endpoint=common_pb2.EndpointInfo(
                host=host, port=port, protocol=version or "", cipher=cipher or "", chain_valid=False,
                validation_error="self-signed certificate", source="network_scan", scan_id=scan.scan_id,
                handshake_seconds=time.perf_counter() - t0))

    def report(self, locations: list[common_pb2.Location]) -> agent_pb2.ReportAck:
        self.sequence += 1
        header = agent_pb2.ReportHeader(report_id=str(uuid.uuid4()), full=True, sequence=self.sequence,
                                        host=common_pb2.HostInfo(hostname=HOSTNAME, os="Linux"))
        chunk = agent_pb2.ReportChunk(header=header, upserts=[*self.extra, *locations])
        ack = self.stub.Report(iter([chunk]), timeout=30)
        assert ack.stored, ack.message
        return ack


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    need_tools("openssl")
    work = tmp_path_factory.mktemp("discovery")
    c = Collector(work / "collector", extra_tables='[netscan]\nallowed_ranges = ["127.0.0.0/8"]\n')
    c.start()
    servers: list[subprocess.Popen] = []
    scanner: ScanningAgent | None = None
    try:
        assert c.init_admin().code == 0
        certs = work / "certs"
        certs.mkdir()
        p1, p2 = free_port(), free_port()
        listeners = [(SERVERS[0], p1), (SERVERS[1], p1), (SERVERS[2], p2)]
        for i, (host, port) in enumerate(listeners):
            pem = certs / f"svc{i}.pem"
            make_cert(pem, f"svc{i}.example.test")
            servers.append(subprocess.Popen(
                ["openssl", "s_server", "-accept", f"{host}:{port}", "-cert", str(pem), "-key", str(pem.with_suffix(".key")),
                 "-www", "-quiet"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for host, port in listeners:
            wait_listening(host, port)
        agent = Agent(work / "agent", "")
        agent.write_config(hostname=HOSTNAME)
        r = agent.enroll(c, c.token())
        assert r.code == 0, r.err
        scanner = ScanningAgent(agent.workdir / "data")
        # a file whose nginx still serves the previous certificate (reported by the agent's process probe)
        make_cert(certs / "www.pem", "www.example.test")
        der = ssl.PEM_cert_to_DER_cert((certs / "www.pem").read_text())
        scanner.extra = [common_pb2.Location(
            key=common_pb2.LocationKey(store_type="pem", path="/etc/nginx/tls/www.pem"), certificate_der=der,
            fingerprint_sha256=hashlib.sha256(der).hexdigest(), entry_type="certificate", file_owner="root",
            file_group="root", file_mode=0o644, role="service",
            processes=[common_pb2.ProcessLink(pid=4242, name="nginx", executable="/usr/sbin/nginx", user="root",
                                              service="nginx.service", listen=[f"{SERVERS[0]}:{p1}"],
                                              evidence="config:nginx", config_path="/etc/nginx/nginx.conf",
                                              suggested_reload="nginx")],
            stale=common_pb2.StaleService(endpoint=f"{SERVERS[0]}:{p1}", served_fingerprint=fingerprint_of(certs / "svc0.pem"),
                                          pid=4242, process_name="nginx"))]
        scanner.report([])
        scanner.start()
        yield c, work, scanner, listeners, certs
    finally:
        if scanner is not None:
            scanner.stop()
        for s in servers:
            s.terminate()
            s.wait(5)
        c.stop()


def test_network_scan_by_the_real_agent(fleet) -> None:  # type: ignore[no-untyped-def]
    c, work, _, listeners, certs = fleet
    p1, p2 = listeners[0][1], listeners[2][1]
    agent = Agent(work / "real-agent", "[endpoints]\nlisteners = false\nnetwork_scan_allowed = [\"127.0.0.0/8\"]\n")
    agent.write_config(hostname="real-scanner")
    r = agent.enroll(c, c.token())
    assert r.code == 0, r.err
    log = open(work / "real-agent.log", "w")
    proc = subprocess.Popen([str(BIN / "certfleet-agent"), "run", "--config", str(agent.config)],
                            stdout=log, stderr=subprocess.STDOUT, env=dict(c.env, PYTHONUNBUFFERED="1"))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:   # its first report is stored: it runs
            hosts = {a["hostname"]: a for a in c.cli("agents", "list", "--format", "json").json()}
            if hosts.get("real-scanner", {}).get("last_sequence"):
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the agent did not report: " + (work / "real-agent.log").read_text()[-2000:])
        r = c.cli("netscan", "start", "--agent", hosts["real-scanner"]["agent_id"], "--targets", NET,
                  "--ports", f"{p1},{p2}", "--rate", "200", "--timeout", "1", "--reason", "real agent", "--wait",
                  "--wait-timeout", "90")
        assert r.code == 0, r.out + r.err + (work / "real-agent.log").read_text()[-3000:]
        assert "= 16 probes" in r.out and "3 of 3 TLS endpoint(s) found are in the registry" in r.out, r.out
        scan_id = r.out.split()[2]
        data = json.loads(c.cli("netscan", "show", scan_id, "--format", "json").out)
        assert (data["state"], data["probed"], data["tls_found"], data["endpoints_in_registry"]) == ("done", 16, 3, 3)
        r = c.cli("netscan", "show", scan_id)
        for host, port in listeners:
            assert f"{host}:{port}" in r.out, r.out
        fp = fingerprint_of(certs / "svc1.pem")
        r = c.cli("certs", "show", fp[:16])
        assert f"real-scanner:{listeners[1][0]}:{p1}" in r.out and "(endpoint) served" in r.out, r.out
        assert f"endpoint {listeners[1][0]}:{p1} TLS" in r.out and f"found by network_scan {scan_id[:8]}" in r.out, r.out
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_network_scan_over_loopback_range(fleet) -> None:  # type: ignore[no-untyped-def]
    c, work, scanner, listeners, certs = fleet
    p1, p2 = listeners[0][1], listeners[2][1]
    r = c.cli("netscan", "start", "--agent", scanner.identity.agent_id[:8], "--targets", NET, "--ports", f"{p1},{p2}",
              "--rate", "200", "--timeout", "1", "--concurrency", "8", "--reason", "DMZ inventory", "--wait",
              "--wait-timeout", "60")
    assert r.code == 0, r.out + r.err
    assert "queued for scanner-host" in r.out and "= 16 probes" in r.out, r.out
    assert "done" in r.out and "3 of 3 TLS endpoint(s) found are in the registry" in r.out, r.out

    (cmd,) = scanner.scans
    assert list(cmd.targets) == [NET] and sorted(cmd.ports) == sorted([p1, p2])
    assert cmd.rate_per_second == 200 and cmd.timeout_seconds == 1 and cmd.concurrency == 8

    r = c.cli("netscan", "show", cmd.scan_id[:8])
    assert r.code == 0, r.err
    assert "State:        done - 3 TLS endpoints" in r.out, r.out
    assert "Progress:     16/16 probed (100%), 3 TLS, 0 errors" in r.out, r.out
    assert "In registry:  3 TLS endpoint(s) this scan found" in r.out, r.out
    for host, port in listeners:
        assert f"{host}:{port}" in r.out, r.out
    data = json.loads(c.cli("netscan", "show", cmd.scan_id, "--format", "json").out)
    assert (data["state"], data["probed"], data["tls_found"], data["endpoints_in_registry"]) == ("done", 16, 3, 3)
    assert data["requested_by"] == "admin:admin" and data["reason"] == "3 TLS endpoints"

    r = c.cli("netscan", "list", "--agent", scanner.identity.agent_id, "--format", "json")
    assert [s["scan_id"] for s in r.json()] == [cmd.scan_id]

    # the endpoint is a location of the certificate the server presented, with its handshake facts
    fp = fingerprint_of(certs / "svc2.pem")
    r = c.cli("certs", "show", fp[:16])
    assert r.code == 0, r.err
    assert f"scanner-host:{listeners[2][0]}:{p2}" in r.out and "(endpoint)" in r.out, r.out
    assert f"endpoint {listeners[2][0]}:{p2} TLS no SNI: TLSv1.3" in r.out, r.out
    assert f"found by network_scan {cmd.scan_id[:8]}" in r.out, r.out
    (loc,) = [loc for loc in json.loads(c.cli("certs", "show", fp, "--format", "json").out)["locations"]
              if loc["host"] == HOSTNAME]
    assert loc["endpoint"]["scan_id"] == cmd.scan_id and loc["endpoint"]["source"] == "network_scan"

    # the start is audited with its reason
    r = c.cli("audit", "list", "--action", "netscan", "--target", f"agent:{scanner.identity.agent_id}",
              "--format", "json")
    events = {e["action"]: e for e in r.json()}
    assert events["netscan.start"]["reason"] == "DMZ inventory"
    assert events["netscan.start"]["actor"] == "admin:admin"
    assert events["netscan.start"]["target"] == f"agent:{scanner.identity.agent_id}"
    assert events["netscan.finish"]["actor"] == f"agent:{scanner.identity.agent_id}"


def test_stale_service_shown(fleet) -> None:  # type: ignore[no-untyped-def]
    c, work, scanner, listeners, certs = fleet
    file_fp, served = fingerprint_of(certs / "www.pem"), fingerprint_of(certs / "svc0.pem")
    r = c.cli("stale", "--format", "json")
    assert r.code == 0, r.err
    (s,) = r.json()
    assert (s["host"], s["path"], s["file_fingerprint"], s["served_fingerprint"], s["process"], s["pid"]) == (
        HOSTNAME, "/etc/nginx/tls/www.pem", file_fp, served, "nginx", 4242)
    assert s["endpoint"] == f"{listeners[0][0]}:{listeners[0][1]}" and s["suggested_reload"] == "nginx" and s["since"]
    r = c.cli("stale", env=dict(c.env, COLUMNS="200"))
    assert "1 stale service" in r.out and "/etc/nginx/tls/www.pem" in r.out, r.out

    r = c.cli("certs", "show", file_fp[:16])
    assert r.code == 0, r.err
    assert f"STALE since {s['since']}: {s['endpoint']} by nginx pid 4242 serves {served[:16]}" in r.out, r.out
    assert "used by nginx pid 4242 (nginx.service) as root" in r.out and "reload: nginx" in r.out, r.out


def test_auditor_lists_but_may_not_start(fleet) -> None:  # type: ignore[no-untyped-def]
    c, work, scanner, listeners, _ = fleet
    out = work / "auditor"
    r = run("certfleet-collector", "init-admin", "--config", str(c.config), "--out", str(out), "--name", "audrey",
            "--role", "auditor", env=c.env)
    assert r.code == 0, r.err
    env = dict(c.env, CERTFLEET_CONFIG=str(out / "certfleet.toml"))
    r = c.cli("netscan", "list", env=env)
    assert r.code == 0 and "done" in r.out, r.out + r.err
    r = c.cli("stale", "--format", "json", env=env)
    assert r.code == 0 and len(r.json()) == 1, r.err
    before = len(c.cli("netscan", "list", "--format", "json").json())
    r = c.cli("netscan", "start", "--agent", scanner.identity.agent_id, "--targets", "127.0.0.9", "--ports", "443",
              env=env)
    assert r.code == 1 and "permission denied" in r.err and "role 'auditor' may not network scan" in r.err, r.err
    assert len(c.cli("netscan", "list", "--format", "json").json()) == before
    refused = c.cli("audit", "list", "--action", "call.refused", "--actor", "auditor:audrey", "--format", "json").json()
    assert refused and refused[0]["target"] == "DiscoveryService.StartNetworkScan", refused


def test_bad_scan_requests_are_refused_clearly(fleet) -> None:  # type: ignore[no-untyped-def]
    c, work, scanner, listeners, _ = fleet
    aid = scanner.identity.agent_id
    r = c.cli("netscan", "start", "--agent", aid, "--targets", "127.0.0.1/30", "--ports", "443")
    assert r.code == 1 and "has host bits set; did you mean 127.0.0.0/30?" in r.err, r.err
    r = c.cli("netscan", "start", "--agent", aid, "--targets", "10.0.0.0/8", "--ports", "443")
    assert r.code == 1 and "16777216 addresses" in r.err and "split it" in r.err, r.err
    r = c.cli("netscan", "start", "--agent", aid, "--targets", "127.0.0.9", "--ports", "443", "--starttls", "25=smtp")
    assert r.code == 1 and "port 25, which the scan does not probe" in r.err, r.err
    r = c.cli("netscan", "start", "--agent", "no-such-agent", "--targets", "127.0.0.9", "--ports", "443")
    assert r.code == 1 and "not found: no agent" in r.err, r.err


def test_unfinished_scan_is_sent_again_after_a_reconnect(fleet) -> None:  # type: ignore[no-untyped-def]
    c, work, _, _, _ = fleet
    agent = Agent(work / "flaky-agent", "")
    agent.write_config(hostname="flaky-host")
    assert agent.enroll(c, c.token()).code == 0
    from agent.identity import identity_dir, load_identity

    ident = load_identity(identity_dir(agent.workdir / "data"))

    def first_command(timeout: float = 20) -> agent_pb2.CollectorCommand:
        """Open a Connect stream, take the first command, hang up (the scan is never answered)."""
        channel = grpc.secure_channel(ident.endpoint, ident.channel_credentials())
        hello = iter([agent_pb2.AgentMessage(hello=agent_pb2.AgentHello(agent_version="test"))])

        def messages():  # noqa: ANN202 - keep the stream open until we hang up
            yield from hello
            time.sleep(timeout)

        call = agent_pb2_grpc.AgentServiceStub(channel).Connect(messages(), timeout=timeout)
        try:
            return next(iter(call))
        finally:
            call.cancel()
            channel.close()

    r = c.cli("netscan", "start", "--agent", ident.agent_id, "--targets", "127.0.0.20", "--ports", "443",
              "--format", "json")
    assert r.code == 0, r.err
    scan_id = r.json()["scan_id"]
    cmd = first_command()
    assert cmd.network_scan.scan_id == scan_id
    assert c.cli("netscan", "show", scan_id, "--format", "json").json()["state"] == "sent"
    again = first_command()                   # a new stream: the unfinished scan comes again
    assert again.network_scan.scan_id == scan_id and again.command_id == cmd.command_id
