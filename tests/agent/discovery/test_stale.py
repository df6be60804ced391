"""Stale services: a certificate renewed on disk while the process still serves the old one.

Pure decisions first, then real servers on loopback: nginx through the agent's report (Syncer), openssl
s_server with two virtual hosts, and a STARTTLS SMTP server.
"""
from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import grpc
import pytest

from agent.config import load_config
from agent.discovery.annotate import STATE_FILE, FileAnnotator
from agent.discovery.stale import OK, STALE, UNKNOWN, Served, StaleState, Verdict, cert_names, decide, probe_names
from agent.scan.scanner import Scanner
from agent.state import key_str
from agent.sync import ReportPlan, Syncer
from agent.transport.report import GrpcReports, chunks


from tests.helpers.install_sites import public_key_of, served_fingerprint

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
FILE_FP, OLD_FP, OTHER_FP = "f" * 64, "0" * 64, "a" * 64


def _cfg(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "agent.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


# --------------------------------------------------------------------------- pure decisions

def _served(fp: str, *names: str, endpoint: str = "127.0.0.1:443", sni: str = "www.example.test") -> Served:
    return Served(endpoint, sni, fp, names)


def test_decide_ok_when_any_port_serves_the_file() -> None:
    obs = [_served(OLD_FP, "www.example.test", endpoint="127.0.0.1:8443"), _served(FILE_FP, "www.example.test")]
    assert decide(FILE_FP, ("www.example.test",), obs).state == OK


def test_decide_stale_when_a_port_serves_another_certificate_for_the_same_name() -> None:
    v = decide(FILE_FP, ("www.example.test", "example.test"), [_served(OLD_FP, "example.test")])
    assert v.state == STALE and v.served is not None and v.served.fingerprint == OLD_FP


def test_decide_does_not_flag_unrelated_vhosts_failed_handshakes_or_other_files() -> None:
    names = ("www.example.test",)
    assert decide(FILE_FP, names, [_served(OTHER_FP, "api.other.test")]).state == UNKNOWN
    assert decide(FILE_FP, names, [Served("127.0.0.1:443", "www.example.test", "", (), "timeout")]).state == UNKNOWN
    # the port serves the certificate of another file the same process uses (two vhosts sharing a name)
    assert decide(FILE_FP, names, [_served(OTHER_FP, "www.example.test")], {OTHER_FP}).state == UNKNOWN
    assert decide(FILE_FP, (), [_served(OTHER_FP, "www.example.test")]).state == UNKNOWN


def test_wildcards_match_one_label_and_become_a_probe_name() -> None:
    assert decide(FILE_FP, ("*.example.test",), [_served(OLD_FP, "www.example.test")]).state == STALE
    assert decide(FILE_FP, ("*.example.test",), [_served(OLD_FP, "a.b.example.test")]).state == UNKNOWN
    assert probe_names(("*.example.test", "example.test")) == ["certfleet-stale-check.example.test", "example.test"]
    assert probe_names(("ip:127.0.0.1",)) == [""]
    assert probe_names(tuple(f"n{i}.example.test" for i in range(10))) == [f"n{i}.example.test" for i in range(3)]


def test_cert_names_reads_sans_and_falls_back_to_the_cn(make_site) -> None:
    site = make_site("WWW.Example.test", "example.test")
    assert cert_names(site.issued.cert_der) == ("www.example.test", "example.test")
    assert cert_names(b"not a certificate") == ()


def test_state_keeps_since_across_restarts_and_clears_when_served(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE
    stale = Verdict(STALE, _served(OLD_FP, "www.example.test"))
    s1 = StaleState(path)
    first = s1.apply("k", FILE_FP, stale, 42, "nginx", now=1000.0)
    assert first is not None and first.since == 1000.0 and first.served_fingerprint == OLD_FP and first.pid == 42
    s1.save()
    s2 = StaleState(path)                                     # the agent restarted
    assert s2.apply("k", FILE_FP, stale, 42, "nginx", now=5000.0).since == 1000.0
    assert s2.apply("k", FILE_FP, Verdict(UNKNOWN), 42, "nginx", now=6000.0) is None   # unknown: nothing flagged
    assert s2.apply("k", FILE_FP, stale, 42, "nginx", now=7000.0).since == 1000.0      # ... and nothing cleared
    # another renewal on disk, still not served: a new mismatch, a new since
    assert s2.apply("k", OTHER_FP, stale, 42, "nginx", now=8000.0).since == 8000.0
    assert s2.apply("k", OTHER_FP, Verdict(OK), 42, "nginx", now=9000.0) is None
    s2.save()
    assert json.loads(path.read_text())["entries"] == {}
    path.write_text("{broken")
    assert StaleState(path).entries == {}                     # unreadable state: start again, do not fail


# --------------------------------------------------------------------------- nginx through the agent's report

class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _syncer(tmp_path: Path, store_glob: str, reload_command: list[str], clock: Clock) -> Syncer:
    toml = (f'[agent]\ndata_dir = "{tmp_path / "data"}"\nhostname = "h"\n'
            f'[[store]]\nname = "web"\npaths = ["{store_glob}"]\nreload = "nginx"\n'
            f'[reload.nginx]\ncommand = {json.dumps(reload_command)}\n'
            f'[discovery]\nprobe_timeout = "3s"\n')
    config = load_config(_cfg(tmp_path / "cfg", toml))
    return Syncer(Scanner(config), GrpcReports(grpc.insecure_channel("127.0.0.1:9")), config.data_dir / "state.json", "agent-1",
                  "h", {}, annotator=FileAnnotator.from_config(config, clock=clock))


def _report(syncer: Syncer, full: bool = False) -> dict:
    """Run one report's chunks (no collector) and acknowledge it; {path: Location} of the leaf upserts."""
    plan = ReportPlan(full=full or syncer.state.sequence == 0, sequence=syncer.state.sequence + 1)
    upserts = {}
    for chunk in chunks(syncer.report(plan, NOW)):       # what goes on the wire
        for loc in chunk.upserts:
            if loc.key.chain_index == 0:
                upserts[loc.key.path] = loc
    syncer.state.sequence, syncer.state.acked = plan.sequence, plan.current
    return upserts


def test_nginx_renewed_without_reload_is_stale_until_reloaded(tmp_path: Path, make_site, nginx, tls_ca) -> None:
    site = make_site("www.example.test")
    ng = nginx(site.fullchain, site.key)
    clock = Clock(1_800_000_000.0)
    syncer = _syncer(tmp_path, str(site.directory / "*.pem"), ng.reload_command, clock)

    first = _report(syncer)
    loc = first[str(site.fullchain)]
    assert [(p.pid, p.evidence, p.suggested_reload) for p in loc.processes] == [(ng.proc.pid, "config:nginx", "nginx")]
    assert list(loc.processes[0].listen) == [f"127.0.0.1:{ng.port}"]
    assert not loc.HasField("stale")
    assert _report(syncer) == {}                              # nothing changed: nothing sent again

    # renewal on disk (same key, new certificate), no reload: nginx still serves the old one
    old_fp = site.fingerprint
    renewed = tls_ca.issue(public_key_of(site.key), ("www.example.test",))
    site.fullchain.write_bytes(renewed.cert_pem + renewed.chain_pem())
    clock.t += 60
    loc = _report(syncer)[str(site.fullchain)]
    assert loc.fingerprint_sha256 == renewed.fingerprint and loc.certificate_der
    assert loc.stale.served_fingerprint == old_fp == served_fingerprint(ng.port)
    assert loc.stale.endpoint == f"127.0.0.1:{ng.port}" and loc.stale.pid == ng.proc.pid
    assert loc.stale.process_name == "nginx" and loc.stale.since.seconds == int(clock.t)
    since = loc.stale.since.seconds
    clock.t += 600
    assert _report(syncer) == {}                              # still stale, same since: nothing new to send

    # the agent restarts: a new Syncer and annotator over the same data_dir
    clock.t += 3600
    restarted = _syncer(tmp_path, str(site.directory / "*.pem"), ng.reload_command, clock)
    loc = _report(restarted, full=True)[str(site.fullchain)]
    assert loc.stale.since.seconds == since                   # since survived (data_dir/stale.json)
    assert json.loads((tmp_path / "data" / STATE_FILE).read_text())["entries"]

    # reload nginx: it serves the renewed certificate, the flag is cleared
    import subprocess
    subprocess.run(ng.reload_command, check=True, capture_output=True, timeout=30)
    # nginx's old workers finish gracefully and may answer a few more handshakes with the old
    # certificate: wait until the new one is served several times in a row
    deadline, in_a_row = time.monotonic() + 15, 0
    while in_a_row < 10 and time.monotonic() < deadline:
        in_a_row = in_a_row + 1 if served_fingerprint(ng.port) == renewed.fingerprint else 0
        time.sleep(0.05)
    loc = _report(restarted)[str(site.fullchain)]
    assert not loc.HasField("stale") and loc.certificate_der
    assert json.loads((tmp_path / "data" / STATE_FILE).read_text())["entries"] == {}


def test_annotation_change_on_an_unchanged_file_is_sent_with_its_certificate(tmp_path: Path, make_site,
                                                                             nginx) -> None:
    """The scanner's cache keeps no DER for unchanged files: a changed process link must still send it."""
    site = make_site("www.example.test")
    ng = nginx(site.fullchain, site.key)
    syncer = _syncer(tmp_path, str(site.directory / "*.pem"), ng.reload_command, Clock(1_800_000_000.0))
    assert _report(syncer)[str(site.fullchain)].processes
    ng.stop()                                                 # the file is unchanged; nobody uses it any more
    loc = _report(syncer)[str(site.fullchain)]
    assert list(loc.processes) == [] and loc.certificate_der and loc.fingerprint_sha256 == site.fingerprint


# --------------------------------------------------------------------------- several certificates on one port

def test_two_vhosts_on_one_port_only_the_renewed_one_is_flagged(tmp_path: Path, make_site, s_server,
                                                                 loopback_ip, tls_ca) -> None:
    a = make_site("www.a.test")
    b = make_site("www.b.test")
    unrelated = make_site("elsewhere.test")
    srv = s_server(loopback_ip(7), a, sni_name="www.b.test", sni_site=b)
    config = load_config(_cfg(tmp_path / "cfg", (
        f'[agent]\ndata_dir = "{tmp_path / "data"}"\n[[store]]\nname = "s"\n'
        f'paths = ["{a.cert}", "{b.cert}", "{unrelated.cert}"]\n')))
    annotator = FileAnnotator.from_config(config, clock=Clock(1_800_000_000.0))
    scanner = Scanner(config)

    def verdicts() -> dict[str, object]:
        report = annotator.begin()
        out = {}
        for fs in scanner.scan(force=True):
            for e in report.annotate(fs.entries):
                out[fs.path] = e
        report.finish()
        return out

    got = verdicts()
    assert got[str(a.cert)].processes and got[str(b.cert)].processes
    assert got[str(a.cert)].stale is None and got[str(b.cert)].stale is None
    assert got[str(unrelated.cert)].processes == ()            # not named by the server

    renewed_b = tls_ca.issue(public_key_of(b.key), ("www.b.test",))
    b.cert.write_bytes(renewed_b.cert_pem)
    got = verdicts()
    assert got[str(a.cert)].stale is None                      # its vhost is fine
    st = got[str(b.cert)].stale
    assert st is not None and st.served_fingerprint == b.fingerprint and st.endpoint == f"{srv.ip}:{srv.port}"


def test_starttls_smtp_server_renewed_without_restart_is_stale(tmp_path: Path, make_site, process_servers,
                                                               loopback_ip, tls_ca) -> None:
    site = make_site("mail.example.test")
    smtp = process_servers.smtp(loopback_ip(8), site.fullchain, site.key)
    config = load_config(_cfg(tmp_path / "cfg", (
        f'[agent]\ndata_dir = "{tmp_path / "data"}"\n[[store]]\nname = "mail"\npaths = ["{site.fullchain}"]\n'
        f'[endpoints]\nstarttls = {{ {smtp.port} = "smtp" }}\n')))
    annotator = FileAnnotator.from_config(config, clock=Clock(1_800_000_000.0))
    scanner = Scanner(config)

    def leaf() -> object:
        report = annotator.begin()
        entries = [e for fs in scanner.scan(force=True) for e in report.annotate(fs.entries)]
        report.finish()
        return next(e for e in entries if e.key.chain_index == 0)

    e = leaf()
    assert [p.pid for p in e.processes] == [smtp.pid] and e.stale is None
    renewed = tls_ca.issue(public_key_of(site.key), ("mail.example.test",))
    site.fullchain.write_bytes(renewed.cert_pem + renewed.chain_pem())
    e = leaf()
    assert e.stale is not None and e.stale.served_fingerprint == site.fingerprint
    assert e.stale.endpoint == f"{smtp.ip}:{smtp.port}" and e.stale.since == 1_800_000_000.0


def test_stale_check_can_be_switched_off(tmp_path: Path, make_site, s_server, loopback_ip, tls_ca) -> None:
    site = make_site("off.example.test")
    s_server(loopback_ip(9), site)
    renewed = tls_ca.issue(public_key_of(site.key), ("off.example.test",))
    site.cert.write_bytes(renewed.cert_pem)
    config = load_config(_cfg(tmp_path / "cfg", (
        f'[agent]\ndata_dir = "{tmp_path / "data"}"\n[[store]]\nname = "s"\npaths = ["{site.cert}"]\n'
        '[discovery]\nstale_check = false\n')))
    report = FileAnnotator.from_config(config).begin()
    e = [e for fs in Scanner(config).scan() for e in report.annotate(fs.entries)][0]
    assert e.processes and e.stale is None
    off = load_config(_cfg(tmp_path / "cfg2", (
        f'[agent]\ndata_dir = "{tmp_path / "data"}"\n[discovery]\nprocesses = false\n')))
    assert FileAnnotator.from_config(off) is None


def test_state_file_key_is_the_location(tmp_path: Path) -> None:
    from agent.inventory import LocationKey

    key = key_str(LocationKey("pem", "/etc/x.pem", "", 0))
    state = StaleState(tmp_path / STATE_FILE)
    state.apply(key, FILE_FP, Verdict(STALE, _served(OLD_FP, "www.example.test")), 1, "n", now=5.0)
    state.keep_only([])
    assert state.entries == {}


pytestmark = pytest.mark.timeout(120)
