"""EndpointSource: this host's listeners and configured targets become endpoint locations with their facts."""
from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest

from agent.config import load_config
from agent.discovery.listeners import local_listeners
from agent.sources.endpoints import EndpointSource
from agent.errors import ConfigError
from agent.service import build_sources
from agent.sources.base import SourceError
from agent.transport.wire import location_out

from tests.helpers.agent_stores import store_toml, write_config

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _config(tmp_path: Path, endpoints: str, stores: str = ""):  # noqa: ANN202
    return load_config(write_config(tmp_path / "cfg", stores + "\n[endpoints]\n" + endpoints))


def _ours(ip_prefix: str):  # noqa: ANN202
    """The real listener list, narrowed to this test's addresses (the host may run anything else)."""
    return lambda: [l for l in local_listeners() if l.ip.startswith(ip_prefix)]


def _prefix(loopback_ip) -> str:  # noqa: ANN001
    return loopback_ip(1).rsplit(".", 1)[0] + "."


def test_listeners_found_with_sni_names_from_the_stores(tmp_path, make_site, s_server, servers, loopback_ip,
                                                        tls_ca) -> None:
    default, mail = make_site("www.example.test"), make_site("mail.example.test", "imap.example.test")
    web = s_server(loopback_ip(1), default, sni_name="mail.example.test", sni_site=mail)
    smtp_ip = loopback_ip(2)
    smtp_site = make_site("smtp.example.test")
    smtp_port = servers.smtp_server(smtp_ip, smtp_site)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(tls_ca.root_pem)
    # the file stores hold mail's certificate: its SANs become SNI names to try
    stores = store_toml("mail", [mail.cert]) + store_toml("www", [default.fullchain])
    cfg = _config(tmp_path, f'ca_file = "{ca}"\nstarttls = {{ {smtp_port} = "smtp" }}\ntimeout = 5', stores)
    # own_pid=0: the SMTP server runs inside this test process, which would otherwise count as the agent
    src = EndpointSource(cfg, listeners=_ours(_prefix(loopback_ip)), own_pid=0)
    res = src.collect(NOW)
    assert res.problems == []
    by_key = {(e.key.path, e.key.alias, e.key.chain_index): e for e in res.entries}
    ep = f"{web.ip}:{web.port}"
    # s_server sends no intermediate for its second (-cert2) certificate
    assert set(k for k in by_key if k[0] == ep) == {(ep, "", 0), (ep, "", 1), (ep, "mail.example.test", 0)}
    # imap.example.test and www.example.test get the default certificate: no location of their own
    leaf = by_key[(ep, "", 0)]
    assert leaf.fingerprint == default.fingerprint and leaf.der == default.issued.cert_der
    assert leaf.endpoint.source == "local_listener" and leaf.endpoint.chain_valid and leaf.endpoint.sni == ""
    assert leaf.endpoint.protocol == "TLSv1.3" and leaf.endpoint.cipher
    inter = by_key[(ep, "", 1)]
    assert inter.der == default.issued.chain_ders[0] and inter.entry_type == "certificate"
    assert leaf.endpoint.chain_fingerprints == (inter.fingerprint,)
    sni = by_key[(ep, "mail.example.test", 0)]
    assert sni.fingerprint == mail.fingerprint and sni.endpoint.sni == "mail.example.test"
    assert not sni.endpoint.chain_valid and "does not validate for mail.example.test" in sni.endpoint.validation_error

    smtp = by_key[(f"{smtp_ip}:{smtp_port}", "", 0)]
    assert smtp.fingerprint == smtp_site.fingerprint and smtp.endpoint.starttls == "smtp"
    assert all(not e.has_private_key and e.key.store_type == "endpoint" for e in res.entries)

    # into the report: Locations with endpoint facts
    msg = location_out(sni)
    assert msg.key.store_type == "endpoint" and msg.key.path == ep and msg.key.alias == "mail.example.test"
    assert msg.fingerprint_sha256 == mail.fingerprint and msg.endpoint.sni == "mail.example.test"
    assert not msg.endpoint.chain_valid and msg.endpoint.validation_error == sni.endpoint.validation_error
    assert msg.endpoint.source == "local_listener" and msg.endpoint.port == web.port
    assert list(location_out(leaf).endpoint.chain_fingerprints) == [
        hashlib.sha256(default.issued.chain_ders[0]).hexdigest()]
    assert msg.HasField("endpoint") and msg.endpoint.handshake_seconds > 0


def test_configured_targets_and_their_problems(tmp_path, make_site, s_server, silent, loopback_ip) -> None:
    site = make_site("www.example.test")
    srv = s_server(loopback_ip(3), site)
    quiet = silent(loopback_ip(4))
    targets = f'targets = ["{srv.ip}:{srv.port}", "{quiet.ip}:{quiet.port}", "{loopback_ip(5)}:{srv.port}/imap"]'
    cfg = _config(tmp_path, f"listeners = false\ntimeout = 0.5\n{targets}")
    res = EndpointSource(cfg).collect(NOW)
    [leaf] = [e for e in res.entries if e.key.chain_index == 0]
    assert leaf.key.path == f"{srv.ip}:{srv.port}" and leaf.endpoint.source == "configured"
    assert not leaf.endpoint.chain_valid and leaf.endpoint.validation_error     # the system store does not know the test CA
    problems = {(p.path, p.reason) for p in res.problems}
    assert problems == {(f"{quiet.ip}:{quiet.port}", "timeout"), (f"{loopback_ip(5)}:{srv.port}", "refused")}
    assert all(p.store_type == "endpoint" and p.message for p in res.problems)


def test_non_tls_listeners_and_excluded_ports_are_skipped_silently(tmp_path, make_site, s_server, silent,
                                                                   loopback_ip) -> None:
    srv = s_server(loopback_ip(6), make_site("www.example.test"))
    other = s_server(loopback_ip(7), make_site("other.example.test"))
    quiet = silent(loopback_ip(8))
    cfg = _config(tmp_path, f"timeout = 0.5\nexclude_ports = [{other.port}]")
    res = EndpointSource(cfg, listeners=_ours(_prefix(loopback_ip))).collect(NOW)
    assert res.problems == []
    assert {e.key.path for e in res.entries} == {f"{srv.ip}:{srv.port}"}
    assert quiet.port not in {e.endpoint.port for e in res.entries}


def test_own_ports_are_not_probed(tmp_path, make_site, s_server, loopback_ip) -> None:
    srv = s_server(loopback_ip(9), make_site("www.example.test"))
    cfg = _config(tmp_path, "")
    src = EndpointSource(cfg, listeners=_ours(_prefix(loopback_ip)), own_pid=srv.pid)   # pretend openssl is us
    assert src.collect(NOW).entries == []


def test_unreadable_socket_table_keeps_the_last_report(tmp_path) -> None:
    def broken():  # noqa: ANN202
        raise PermissionError("no access to /proc/net/tcp")
    cfg = _config(tmp_path, "")
    with pytest.raises(SourceError) as e:
        EndpointSource(cfg, listeners=broken, names=lambda: []).collect(NOW)
    assert e.value.reason == "unreadable" and "listening sockets" in e.value.message


def test_build_sources_has_the_endpoint_source(tmp_path) -> None:
    cfg = _config(tmp_path, "listeners = false")
    assert any(isinstance(s, EndpointSource) for s in build_sources(cfg))


@pytest.mark.parametrize("text, line, message", [
    ('targets = ["no-port"]', 7, "target 1: 'no-port': expected host:port"),
    ('targets = ["x.example:25/ftp"]', 7, "unknown STARTTLS protocol 'ftp'"),
    ('targets = ["::1:443"]', 7, "write IPv6 endpoints as [address]:port"),
    ('timeout = "soon"', 7, "not a duration"),
    ("concurrency = 0", 7, "concurrency must be a whole number from 1 to 1024"),
    ('exclude_ports = ["ssh"]', 7, "exclude_ports must be a list of port numbers"),
    ('starttls = { 2525 = "ftp" }', 7, "starttls: port 2525: 'ftp' is not one of smtp, imap, pop3"),
    ("listners = true", 7, "unknown key 'listners'"),
    ("rate = -1", 7, "rate must be a number"),
])
def test_settings_errors_name_the_line(tmp_path, text, line, message) -> None:
    with pytest.raises(ConfigError) as e:
        _config(tmp_path, text)
    assert f"agent.toml:{line}: [endpoints]: " in str(e.value) and message in str(e.value)


def test_settings_parse(tmp_path) -> None:
    cfg = _config(tmp_path, 'targets = ["mail.example.test:25", "[::1]:993", { host = "10.0.0.7", port = 443, '
                            'sni = "www.example.test" }, "imap.example.test:1143/imap"]\nrate = 20\ntimeout = "2s"\n'
                            "max_sni_names = 4\nnetwork_scans = false")
    s = cfg.endpoints
    assert [(t.host, t.port, t.sni, t.starttls) for t in s.targets] == [
        ("mail.example.test", 25, "mail.example.test", ""), ("::1", 993, "", ""),
        ("10.0.0.7", 443, "www.example.test", ""), ("imap.example.test", 1143, "imap.example.test", "imap")]
    assert s.rate == 20 and s.timeout == 2 and s.max_sni_names == 4 and not s.network_scans and s.listeners
    default = load_config(write_config(tmp_path / "d", "")).endpoints
    assert default.listeners and default.targets == () and default.timeout == 3.0
