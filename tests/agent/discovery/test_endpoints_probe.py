"""probe_many against real servers on loopback: openssl s_server, nginx, STARTTLS SMTP/IMAP/POP3, silent and non-TLS."""
from __future__ import annotations

import hashlib
import socket
import threading
import time
from pathlib import Path

import pytest

from agent.endpoints.survey import Observation, RateLimiter, Target, probe_many, survey
from agent.discovery.listeners import local_listeners

from tests.helpers.tls_servers import TestCA


def _ca_file(tmp_path: Path, ca: TestCA) -> str:
    p = tmp_path / "ca.pem"
    p.write_bytes(ca.root_pem)
    return str(p)


def test_s_server_fingerprint_protocol_cipher_and_chain(tmp_path, make_site, s_server, loopback_ip, tls_ca,
                                                       other_ca) -> None:
    site = make_site("www.example.test")
    srv = s_server(loopback_ip(1), site)
    t = Target(srv.ip, srv.port)

    [ok] = probe_many([t], ca_file=_ca_file(tmp_path, tls_ca))
    assert ok.ok and ok.error == "" and ok.fingerprint == site.fingerprint and ok.leaf_der == site.issued.cert_der
    assert ok.chain_ders == site.issued.chain_ders[:1]                       # the intermediate, sent by -cert_chain
    assert ok.protocol == "TLSv1.3" and ok.cipher.startswith("TLS_")
    # no SNI and a bare address: validated for the name the certificate claims
    assert ok.chain_valid and ok.validation_error == ""

    (tmp_path / "other").mkdir()
    [untrusted] = probe_many([t], ca_file=_ca_file(tmp_path / "other", other_ca))
    assert untrusted.ok and not untrusted.chain_valid
    assert "does not validate for www.example.test" in untrusted.validation_error

    [system] = probe_many([t])                                               # the host's trust store
    assert system.ok and system.fingerprint == site.fingerprint and not system.chain_valid

    [wrong_name] = probe_many([Target(srv.ip, srv.port, "other.example.test")], ca_file=_ca_file(tmp_path, tls_ca))
    assert wrong_name.ok and not wrong_name.chain_valid and "other.example.test" in wrong_name.validation_error


def test_sni_survey_keeps_only_names_that_change_the_answer(tmp_path, make_site, s_server, loopback_ip) -> None:
    default, mail = make_site("www.example.test"), make_site("mail.example.test")
    srv = s_server(loopback_ip(2), default, sni_name="mail.example.test", sni_site=mail)
    names = ["www.example.test", "mail.example.test", "api.example.test"]
    first, kept = survey([Target(srv.ip, srv.port)], lambda t: names)
    assert [o.fingerprint for o in first] == [default.fingerprint]
    assert [(o.target.sni, o.fingerprint) for o in kept] == [("mail.example.test", mail.fingerprint)]


def test_nginx(make_site, nginx, tmp_path, tls_ca) -> None:
    site = make_site("www.example.test")
    n = nginx(site.fullchain, site.key)
    [o] = probe_many([Target("127.0.0.1", n.port, "www.example.test")], ca_file=_ca_file(tmp_path, tls_ca))
    assert o.ok and o.fingerprint == site.fingerprint and o.chain_valid
    assert o.protocol in ("TLSv1.2", "TLSv1.3") and o.cipher
    assert o.chain_fingerprints == (hashlib.sha256(site.issued.chain_ders[0]).hexdigest(),)


@pytest.mark.parametrize("kind", ["smtp", "imap", "pop3"])
def test_starttls(kind, make_site, servers, loopback_ip, tmp_path, tls_ca) -> None:
    site = make_site("mail.example.test")
    ip = loopback_ip(3)
    port = servers.smtp_server(ip, site) if kind == "smtp" else servers.starttls_server(kind, ip, site)
    [o] = probe_many([Target(ip, port, "mail.example.test", kind)], timeout=5, ca_file=_ca_file(tmp_path, tls_ca))
    assert o.ok, o.detail
    assert o.fingerprint == site.fingerprint and o.chain_valid and o.protocol.startswith("TLSv1")
    # the same port without STARTTLS: plain text first, so not TLS
    [plain] = probe_many([Target(ip, port)], timeout=3)
    assert not plain.ok and plain.error in ("not_tls", "timeout"), plain


def test_starttls_against_a_plain_tls_port_is_not_tls(make_site, servers, loopback_ip) -> None:
    site = make_site("mail.example.test")
    ip = loopback_ip(4)
    port = servers.plain_tls_server(ip, site)
    [o] = probe_many([Target(ip, port, "", "smtp")], timeout=2)
    assert not o.ok and o.error in ("not_tls", "timeout")
    [tls] = probe_many([Target(ip, port)], timeout=2)
    assert tls.ok and tls.fingerprint == site.fingerprint


def test_silent_server_times_out_within_the_timeout(silent, loopback_ip) -> None:
    s = silent(loopback_ip(5))
    t0 = time.monotonic()
    obs = probe_many([Target(s.ip, s.port), Target(s.ip, s.port, "", "smtp")], timeout=0.5)
    elapsed = time.monotonic() - t0
    assert [o.error for o in obs] == ["timeout", "timeout"]
    assert "no TLS answer within 0.5 s" in obs[0].detail
    assert elapsed < 1.5


def test_trickling_server_cannot_stretch_the_timeout(loopback_ip) -> None:
    """A server that sends one byte every 0.2 s resets per-read timeouts, but not the handshake deadline."""
    ip = loopback_ip(6)
    srv = socket.socket()
    srv.bind((ip, 0))
    srv.listen(8)
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = srv.accept()
        with conn:
            for b in b"220-" + b"x" * 100:
                if stop.wait(0.2):
                    return
                try:
                    conn.send(bytes([b]))
                except OSError:
                    return
    threading.Thread(target=trickle, daemon=True).start()
    try:
        t0 = time.monotonic()
        [o] = probe_many([Target(ip, srv.getsockname()[1], "", "smtp")], timeout=1.0)
        assert o.error == "timeout" and time.monotonic() - t0 < 2.0
    finally:
        stop.set()
        srv.close()


def test_refused_and_not_tls(loopback_ip) -> None:
    ip = loopback_ip(7)
    banner = socket.socket()
    banner.bind((ip, 0))
    banner.listen(8)

    def ssh_like() -> None:
        try:
            conn, _ = banner.accept()
        except OSError:
            return
        with conn:
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
            conn.recv(1024)
    threading.Thread(target=ssh_like, daemon=True).start()
    with socket.socket() as s:
        s.bind((ip, 0))
        closed_port = s.getsockname()[1]          # bound, not listening: refused
        obs = probe_many([Target(ip, closed_port), Target(ip, banner.getsockname()[1])], timeout=2)
    banner.close()
    assert [o.error for o in obs] == ["refused", "not_tls"]
    assert all(not o.ok and o.detail.startswith(f"{ip}:") for o in obs)


def test_rate_limit_is_observed(make_site, s_server, loopback_ip) -> None:
    srv = s_server(loopback_ip(8), make_site("www.example.test"))
    n, rate = 12, 20.0
    t0 = time.monotonic()
    obs = probe_many([Target(srv.ip, srv.port)] * n, rate_per_second=rate, concurrency=12)
    elapsed = time.monotonic() - t0
    assert all(o.ok for o in obs)
    assert elapsed >= (n - 1) / rate          # the first connection starts at once, then one every 1/rate s


def test_rate_limiter_spaces_starts_across_threads() -> None:
    now = [0.0]
    slept: list[float] = []
    lim = RateLimiter(4.0, clock=lambda: now[0], sleep=slept.append)
    for _ in range(5):
        lim.acquire()
    assert slept == [0.25, 0.5, 0.75, 1.0]


def test_results_keep_target_order_and_progress_counts(make_site, s_server, loopback_ip) -> None:
    srv = s_server(loopback_ip(9), make_site("www.example.test"))
    seen: list[tuple[int, int]] = []
    targets = [Target(srv.ip, srv.port), Target(srv.ip, 1), Target(srv.ip, srv.port, "x.example.test")]
    obs = probe_many(targets, progress=lambda d, t, o: seen.append((d, t)), concurrency=3)
    assert [o.target for o in obs] == targets and [o.ok for o in obs] == [True, False, True]
    assert sorted(seen) == [(1, 3), (2, 3), (3, 3)]
    assert isinstance(obs[0], Observation)


def test_local_listeners_sees_a_server_and_its_process(make_site, s_server, loopback_ip) -> None:
    srv = s_server(loopback_ip(10), make_site("www.example.test"))
    found = [l for l in local_listeners() if l.ip == srv.ip and l.port == srv.port]
    assert len(found) == 1
    assert found[0].pid == srv.pid and found[0].process_name == "openssl"
