"""``certfleet-agent doctor``: every failure mode made real, and all green against a running collector.

The CLI runs as a subprocess (exit code, JSON); single checks run in-process where the
clock is injected or where a test drops root's power to read every file.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import pytest
from cryptography.hazmat.primitives import serialization

from agent.config import load_config
from agent.cli.doctor_checks import FAIL, OK, WARN, check_clock, check_data_dir, check_identity, check_stores
from agent.cli.doctor_collector import check_collector
from agent.identity import identity_dir, load_identity, make_key_and_csr, save_identity
from collector.pki import CollectorCA
from tests.conftest import free_port
from tests.e2e.harness import BIN, Agent, Collector
from tests.packaging.conftest import good_stores_toml

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def doctor(config: Path, *extra: str, timeout: float = 3) -> tuple[int, dict]:
    p = subprocess.run([str(BIN / "certfleet-agent"), "doctor", "--config", str(config), "--format", "json",
                        "--timeout", str(timeout), *extra], capture_output=True, text=True, timeout=120)
    assert p.stderr == "", p.stderr
    return p.returncode, json.loads(p.stdout)


def by_check(report: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for c in report["checks"]:
        out.setdefault(c["check"], []).append(c)
    return out


def write_config(directory: Path, body: str, data_dir: Path | None = None, mode: int = 0o600) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "agent.toml"
    path.write_text(f'[agent]\ndata_dir = "{data_dir or directory / "data"}"\nhostname = "doctor-test"\n\n{body}')
    path.chmod(mode)
    return path


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Without root's power to read every file (euid nobody), as an operator without sudo would be."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


# -------------------------------------------------------------------------------------- config


def test_toml_syntax_error_names_line_7(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        "[agent]\n"                                  # 1
        f'data_dir = "{tmp_path / "data"}"\n'        # 2
        'scan_interval = "15m"\n'                    # 3
        "\n"                                         # 4
        "[[store]]\n"                                # 5
        'name = "pem"\n'                             # 6
        "type = pem\n"                               # 7: a bare word is not a TOML value
        'paths = ["/etc/ssl/certs/*.pem"]\n'         # 8
    )
    cfg.chmod(0o600)
    code, report = doctor(cfg)
    assert code == 1
    [check] = report["checks"]                       # nothing else can be checked without a config
    assert check["check"] == "config" and check["status"] == FAIL and check["line"] == 7
    assert "line 7" in check["message"] and "line 7" in check["hint"]

    table = subprocess.run([str(BIN / "certfleet-agent"), "doctor", "--config", str(cfg)],
                           capture_output=True, text=True)
    assert table.returncode == 1 and "line 7" in table.stdout and "1 failed" in table.stdout


def test_unknown_key_names_its_line(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, '[[store]]\nname = "pem"\npathz = ["/etc/ssl/certs/*.pem"]\n')
    code, report = doctor(cfg)
    [check] = report["checks"]
    assert code == 1 and check["status"] == FAIL and check["line"] == 7, check
    assert "pathz" in check["message"]


def test_config_writable_by_others_fails(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "", mode=0o646)
    code, report = doctor(cfg)
    assert code == 1
    assert by_check(report)["config"][0]["status"] == FAIL
    assert "chmod 600" in by_check(report)["config"][0]["hint"]


# -------------------------------------------------------------------------------------- stores


def test_readable_stores_are_ok(samples: dict, tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, good_stores_toml(samples)))
    results = {r.message.split(":")[0]: r for r in check_stores(config)}
    assert {r.status for r in results.values()} == {OK}, results
    assert "3 files" not in results["store 'pem'"].message and "2 files" in results["store 'pem'"].message
    assert "1 file" in results["store 'p12'"].message and "1 file" in results["store 'jks'"].message


def test_store_failures_are_named_without_secrets(samples: dict, public_dir: Path) -> None:
    f, pw = samples["files"], samples["password_files"]
    private = public_dir / "private"
    private.mkdir(mode=0o700)
    (private / "p12.pass").write_bytes(Path(pw["p12"]).read_bytes())
    (private / "p12.pass").chmod(0o600)
    locked = public_dir / "locked.pem"
    locked.write_bytes(Path(f["fullchain"]).read_bytes())
    locked.chmod(0o600)
    readable_p12 = public_dir / "store.p12"
    readable_p12.write_bytes(Path(f["p12"]).read_bytes())
    readable_p12.chmod(0o644)
    other_p12 = public_dir / "other.p12"     # a file belongs to the first store that matches it
    other_p12.write_bytes(Path(f["p12"]).read_bytes())
    other_p12.chmod(0o644)
    wrong = public_dir / "wrong.pass"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o644)
    cfg = write_config(public_dir / "cfg", (
        f'[[store]]\nname = "missing"\ntype = "pem"\npaths = ["{public_dir}/nowhere/cert.pem"]\n\n'
        f'[[store]]\nname = "nomatch"\ntype = "pem"\npaths = ["{public_dir}/nothing-here/*.pem"]\n\n'
        f'[[store]]\nname = "denied"\ntype = "pem"\npaths = ["{locked}"]\n\n'
        f'[[store]]\nname = "pwfile"\ntype = "pkcs12"\npaths = ["{readable_p12}"]\n'
        f'password_file = "{private / "p12.pass"}"\n\n'
        f'[[store]]\nname = "wrongpw"\ntype = "pkcs12"\npaths = ["{other_p12}"]\npassword_file = "{wrong}"\n'
    ))
    (public_dir / "cfg").chmod(0o755)
    cfg.chmod(0o644)
    config = load_config(cfg)
    with unprivileged():
        results = check_stores(config)
    got = {r.message.split(":")[0].split(";")[0]: r for r in results}
    text = json.dumps([r.to_dict() for r in results])

    missing = next(r for r in results if "nowhere/cert.pem" in r.message)
    assert missing.status == FAIL and "does not exist" in missing.message
    nomatch = next(r for r in results if "nothing-here" in r.message)
    assert nomatch.status == WARN and "no file matches" in nomatch.message
    denied = next(r for r in results if str(locked) in r.message)
    assert denied.status == FAIL and "permission denied" in denied.message and "root" in denied.hint
    pwfile = next(r for r in results if str(private / "p12.pass") in r.message)
    assert pwfile.status == FAIL and "cannot be read" in pwfile.message and "password_file" in pwfile.hint
    wrongpw = next(r for r in results if "wrongpw" in r.message)
    assert wrongpw.status == FAIL and "password" in wrongpw.message.lower(), wrongpw
    for secret in (Path(pw["p12"]).read_text().strip(), "not-the-password"):
        assert secret not in text
    assert len(got) == 5


# -------------------------------------------------------------------------------------- data_dir


def test_data_dir_checks(public_dir: Path) -> None:
    private = public_dir / "private"
    private.mkdir(mode=0o700)
    assert check_data_dir(private).status == OK
    open_dir = public_dir / "open"
    open_dir.mkdir(mode=0o755)
    r = check_data_dir(open_dir)
    assert r.status == WARN and "chmod 700" in r.hint
    assert check_data_dir(public_dir / "later" / "data").status == WARN     # made on enrollment
    not_a_dir = public_dir / "file"
    not_a_dir.write_text("")
    assert check_data_dir(not_a_dir).status == FAIL
    with unprivileged():
        r = check_data_dir(open_dir)                 # root's directory, not writable for nobody
    assert r.status == FAIL and "not writable" in r.message and "Permission denied" in r.message


# -------------------------------------------------------------------------------------- identity and clock


def make_identity(data_dir: Path, issued: dt.datetime, lifetime: dt.timedelta, endpoint: str,
                  ca_dir: Path | None = None) -> CollectorCA:
    """An identity issued by a real collector CA (tests/pki's way), saved as enrollment would."""
    ca = CollectorCA.load_or_create(ca_dir or data_dir.parent / "ca", issued - dt.timedelta(days=1))
    key, csr = make_key_and_csr()
    cert = ca.issue_agent_certificate(csr, "agent-doctor-1", issued, lifetime=lifetime)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    save_identity(identity_dir(data_dir), key, cert.public_bytes(serialization.Encoding.DER), [ca.cert_der],
                  "agent-doctor-1", endpoint, now=issued)
    return ca


def test_expired_identity_and_unreachable_collector(tmp_path: Path) -> None:
    port = free_port()          # nothing listens there
    data = tmp_path / "data"
    make_identity(data, NOW - dt.timedelta(days=40), dt.timedelta(days=30), f"127.0.0.1:{port}")
    code, report = doctor(write_config(tmp_path, "", data_dir=data))
    checks = by_check(report)
    assert code == 1
    assert checks["identity"][0]["status"] == FAIL and "expired" in checks["identity"][0]["message"]
    assert "enroll again" in checks["identity"][0]["hint"]
    assert checks["collector"][0]["status"] == FAIL
    assert "connection refused" in checks["collector"][0]["message"] and str(port) in checks["collector"][0]["message"]


def test_identity_with_injected_clock(tmp_path: Path) -> None:
    issued = dt.datetime(2031, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    data = tmp_path / "data"
    make_identity(data, issued, dt.timedelta(days=30), "127.0.0.1:1")
    # valid from issued - 5 min (the collector's backdating) until issued + 30 days
    r, ident = check_identity(data, issued + dt.timedelta(days=1))
    assert r.status == OK and ident is not None and "29 days left" in r.message
    r, _ = check_identity(data, issued + dt.timedelta(days=26))
    assert r.status == WARN and "has not been renewed" in r.message
    r, _ = check_identity(data, issued + dt.timedelta(days=31))
    assert r.status == FAIL and "expired" in r.message
    r, _ = check_identity(data, issued - dt.timedelta(hours=2))
    assert r.status == FAIL and "clock is behind" in r.hint
    clock = check_clock(ident, None, issued - dt.timedelta(hours=2))
    assert clock.status == FAIL and "behind the collector's by at least 2 hours" in clock.message
    assert check_clock(ident, None, issued + dt.timedelta(days=1)).status == OK


def test_skew_at_issue_is_measured(tmp_path: Path) -> None:
    """The host recorded its own time when it stored the identity; the certificate carries the collector's."""
    issued = dt.datetime(2031, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    data = tmp_path / "data"
    make_identity(data, issued, dt.timedelta(days=30), "127.0.0.1:1")
    ident = load_identity(identity_dir(data))
    meta = json.loads(ident.meta_path.read_text())
    meta["enrolled_at"] = (issued + dt.timedelta(minutes=10)).isoformat()   # host 10 minutes ahead then
    ident.meta_path.write_text(json.dumps(meta))
    r = check_clock(ident, None, issued + dt.timedelta(days=1))
    assert r.status == WARN and "10 minutes ahead of the collector's" in r.message


def test_dns_failure_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_identity(data, NOW, dt.timedelta(days=30), "certfleet-collector.invalid:7443")
    r, _ = check_collector(load_identity(identity_dir(data)), timeout=3)
    assert r.status == FAIL and r.message.startswith("cannot resolve certfleet-collector.invalid"), r
    assert "DNS" in r.hint


class _TLSServer:
    """A TLS server on loopback that presents a given chain, completes handshakes, hangs up."""

    def __init__(self, chain: Path, key: Path) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(chain), str(key))
        self.ctx.set_alpn_protocols(["h2"])
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(3)
            with contextlib.suppress(OSError, ssl.SSLError):
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def test_server_of_another_ca_is_named(tmp_path: Path) -> None:
    other = CollectorCA.load_or_create(tmp_path / "other-ca", NOW)
    chain, key = other.server_identity(tmp_path / "other-ca", ["127.0.0.1"], NOW)
    server = _TLSServer(chain, key)
    try:
        data = tmp_path / "data"
        make_identity(data, NOW, dt.timedelta(days=30), f"127.0.0.1:{server.port}")
        r, server_der = check_collector(load_identity(identity_dir(data)), timeout=3)
    finally:
        server.close()
    assert r.status == FAIL and "does not present a certificate of the collector CA" in r.message, r
    assert server_der is not None          # still read (unverified) for the clock check


def test_not_a_tls_server_is_named(tmp_path: Path) -> None:
    plain = socket.create_server(("127.0.0.1", 0))
    port = plain.getsockname()[1]

    def answer() -> None:
        conn, _ = plain.accept()
        with conn:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            with contextlib.suppress(OSError):
                conn.recv(1024)

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    try:
        data = tmp_path / "data"
        make_identity(data, NOW, dt.timedelta(days=30), f"127.0.0.1:{port}")
        r, _ = check_collector(load_identity(identity_dir(data)), timeout=3)
    finally:
        plain.close()
    assert r.status == FAIL and "does not speak TLS" in r.message, r


# -------------------------------------------------------------------------------------- a real collector


@pytest.mark.slow
def test_all_green_then_revoked_then_down(samples: dict, tmp_path: Path) -> None:
    c = Collector(tmp_path / "collector")
    c.start()
    try:
        assert c.init_admin().code == 0
        agent = Agent(tmp_path / "agent", good_stores_toml(samples))
        agent.write_config(hostname="doctor-host")
        (agent.workdir / "data").mkdir(mode=0o700)
        enrolled = agent.enroll(c, c.token())
        assert enrolled.code == 0, enrolled.err
        assert agent.run_once().code == 0

        code, report = doctor(agent.config)
        assert code == 0, report
        assert report["ok"] is True and report["failed"] == 0 and report["warnings"] == 0, report
        assert [ch["check"] for ch in report["checks"]] == \
            ["config", "store", "store", "store", "data_dir", "identity", "collector", "clock"]
        assert {ch["status"] for ch in report["checks"]} == {OK}
        collector_check = by_check(report)["collector"][0]["message"]
        assert f"127.0.0.1:{c.port}" in collector_check and "accepts agent" in collector_check

        agent_id = load_identity(identity_dir(agent.workdir / "data")).agent_id
        revoked = c.cli("agents", "revoke", agent_id, "--reason", "doctor test")
        assert revoked.code == 0, revoked.err
        code, report = doctor(agent.config)
        assert code == 1
        check = by_check(report)["collector"][0]
        assert check["status"] == FAIL and f"refused agent {agent_id}" in check["message"], check
    finally:
        c.stop()
    code, report = doctor(agent.config)
    assert code == 1 and "connection refused" in by_check(report)["collector"][0]["message"]
