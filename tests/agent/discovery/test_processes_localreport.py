"""`certfleet-agent scan` shows which process uses each certificate, and stale services, without a collector."""
from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

from agent.config import load_config
from agent.cli.localreport import render_scan

from tests.helpers.install_sites import public_key_of


def test_local_scan_shows_processes_and_stale_services(tmp_path: Path, make_site, s_server, loopback_ip,
                                                       tls_ca) -> None:
    site = make_site("local.example.test")
    srv = s_server(loopback_ip(10), site)
    renewed = tls_ca.issue(public_key_of(site.key), ("local.example.test",))
    site.cert.write_bytes(renewed.cert_pem)                  # renewed on disk, s_server not restarted
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\ndata_dir = "{tmp_path / "data"}"\nhostname = "h"\n'
                   f'[[store]]\nname = "web"\npaths = ["{site.cert}"]\n')
    config = load_config(cfg)
    now = dt.datetime.now(dt.timezone.utc)

    out = io.StringIO()
    render_scan(config, "table", out, now)
    text = out.getvalue()
    assert all(len(line) <= 100 for line in text.splitlines())
    text = " ".join(line.strip() for line in text.splitlines())      # wrapped lines joined
    assert f"used by openssl (pid {srv.pid}, cmdline, listens {srv.ip}:{srv.port})" in text
    assert f": {srv.ip}:{srv.port} still serves {site.fingerprint[:12]} (openssl pid {srv.pid}); reload it" in text
    assert " STALE since 20" in text
    assert "1 STALE" in text
    assert not (tmp_path / "data" / "stale.json").exists()   # the local scan leaves the service's state alone

    out = io.StringIO()
    render_scan(config, "json", out, now)
    row = json.loads(out.getvalue())["certificates"][0]
    assert row["processes"][0]["pid"] == srv.pid and row["processes"][0]["evidence"] == "cmdline"
    assert row["stale"]["served_fingerprint"] == site.fingerprint
    assert row["stale"]["endpoint"] == f"{srv.ip}:{srv.port}"
