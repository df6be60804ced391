"""The roles' config templates render Ansible data as TOML the programs read back unchanged.

Rendered by a real `ansible` (ansible.builtin.template, local connection, no root needed) with
values that break naive quoting: quotes, backslashes, `$`, `@`, newlines, non-ASCII; then parsed
by the agent's and the collector's own config loaders.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ANSIBLE = pathlib.Path(sys.executable).parent / "ansible"
ROLES = ROOT / "ansible/roles"
NASTY = 'pa"ss\\word $HOME @host `x` ünïcødé ✓\nsecond line'


def render(template: pathlib.Path, variables: dict, dest: pathlib.Path, work: pathlib.Path) -> str:
    if not ANSIBLE.exists():
        pytest.skip(f"needs {ANSIBLE} (pip install -e '.[test]')")
    varfile = work / "vars.json"
    varfile.write_text(json.dumps(variables))
    env = dict(os.environ, ANSIBLE_HOME=str(work / "ah"), ANSIBLE_LOCAL_TEMP=str(work / "at"),
               ANSIBLE_REMOTE_TEMP=str(work / "at"), ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=str(work / "none.cfg"))
    (work / "none.cfg").write_text("[defaults]\n")
    proc = subprocess.run(
        [str(ANSIBLE), "localhost", "-c", "local", "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}",
         "-e", f"@{varfile}", "-m", "ansible.builtin.template", "-a", f"src={template} dest={dest} mode=0600"],
        capture_output=True, text=True, env=env, cwd=work, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dest.read_text()


def test_agent_toml_round_trips_awkward_values(tmp_path):
    from agent.config import load_config

    stores = [{
        "name": "web", "type": "pem", "paths": [f"{tmp_path}/tls dir/*.pem", "/etc/ssl/private/it's.pem"],
        "exclude": ["**/dhparam.pem"], "labels": {"owner": "web-team", "note": NASTY}, "follow_symlinks": False,
        "reload": "nginx", "verify": [{"host": "127.0.0.1", "port": 443, "sni": "www.example.net"}],
        "verify_timeout": "15s",
    }]
    variables = {
        "certfleet_agent_data_dir": str(tmp_path / "data"), "certfleet_agent_hostname": "h\\ost",
        "certfleet_agent_scan_interval": "5m", "certfleet_agent_max_file_size": "1MB",
        "certfleet_agent_labels": {"environment": "prod", "quote\"key": NASTY},
        "certfleet_agent_stores": stores,
        "certfleet_agent_reload_actions": {"nginx": {"command": ["/usr/sbin/nginx", "-s", "reload", NASTY],
                                                     "timeout": "30s"}},
        "certfleet_agent_collector_address": "collector.example.net:7443",
        "certfleet_agent_endpoints": {"listeners": False, "targets": ["mail.example.net:25/smtp"], "timeout": "2s"},
        "certfleet_agent_discovery": {"stale_check": True},
        "certfleet_agent_windows": {},
    }
    text = render(ROLES / "certfleet_agent/templates/agent.toml.j2", variables, tmp_path / "agent.toml", tmp_path)
    raw = tomllib.loads(text)
    assert raw["store"][0]["labels"]["note"] == NASTY
    assert raw["store"][0]["follow_symlinks"] is False and raw["store"][0]["verify"][0]["port"] == 443
    cfg = load_config(tmp_path / "agent.toml")
    assert cfg.hostname == "h\\ost" and cfg.scan_interval == 300
    assert dict(cfg.labels) == {"environment": "prod", "quote\"key": NASTY}
    assert cfg.stores[0].paths[0] == f"{tmp_path}/tls dir/*.pem"
    assert cfg.reload_action("nginx").command == ("/usr/sbin/nginx", "-s", "reload", NASTY)
    assert cfg.collector["address"] == "collector.example.net:7443"
    endpoints = cfg.endpoints
    assert endpoints.listeners is False and [(t.host, t.port, t.starttls) for t in endpoints.targets] == [
        ("mail.example.net", 25, "smtp")]
    assert "[windows]" not in text   # an empty mapping keeps the agent's defaults

    dropin = render(ROLES / "certfleet_agent/templates/stores.conf.j2",
                    {**variables, "certfleet_agent_read_write_paths": ["/srv/app/keystore/"],
                     "certfleet_agent_stores": [*stores, {"name": "acme", "paths": ["/home/web/certs/cert.pem"],
                                                          "acme_webroot": "/var/www/acme"}]},
                    tmp_path / "stores.conf", tmp_path)
    lines = [line for line in dropin.splitlines() if line and not line.startswith("#")]
    assert lines == [
        "[Service]",
        "ReadWritePaths=-/etc/ssl/private",
        "ReadWritePaths=-/home/web/certs",
        "ReadWritePaths=-/srv/app/keystore",
        f'ReadWritePaths="-{tmp_path}/tls dir"',
        "ReadWritePaths=-/var/www/acme",
        "ProtectHome=read-only",
    ]


def test_collector_toml_round_trips_settings_tables(tmp_path):
    from collector.config.core import load_config

    settings = {
        "issuers": {"internal": {"type": "internal_ca", "common_name": NASTY}},
        "templates": {"web": {"issuer": "internal", "key_type": "ec", "curve": "P-256", "validity": "90d",
                              "extended_key_usage": ["serverAuth"], "allowed_san_patterns": ["*.example.net"]}},
        "renewal": {"default_template": "web", "auto": [{"template": "web", "match": {"service": "nginx"},
                                                         "hosts": ["web-*"], "jitter": 0.05}]},
        "notify": {"thresholds": [60, 30, 14, 7, 1], "escalate_at": 7},
    }
    variables = {
        "certfleet_collector_data_dir": str(tmp_path / "data"),
        "certfleet_collector_database_url": "postgresql+psycopg://certfleet:p%40ss@db.example.net/certfleet",
        "certfleet_collector_listen": "0.0.0.0:7443", "certfleet_collector_enroll_listen": "0.0.0.0:7444",
        "certfleet_collector_advertise": "collector.example.net:7443",
        "certfleet_collector_enroll_advertise": "collector.example.net:7444",
        "certfleet_collector_server_names": ["collector.example.net", "localhost", "127.0.0.1"],
        "certfleet_collector_token_ttl": "1h", "certfleet_collector_agent_cert_lifetime": "30d",
        "certfleet_collector_admin_cert_lifetime": "365d", "certfleet_collector_settings": settings,
    }
    render(ROLES / "certfleet_collector/templates/collector.toml.j2", variables, tmp_path / "collector.toml", tmp_path)
    cfg = load_config(tmp_path / "collector.toml")
    assert cfg.database_url.endswith("p%40ss@db.example.net/certfleet")
    assert cfg.agent_endpoint == "collector.example.net:7443" and cfg.enroll_endpoint == "collector.example.net:7444"
    assert cfg.server_names == ("collector.example.net", "localhost", "127.0.0.1")
    assert cfg.extra == settings


def test_collector_toml_for_several_collectors_on_one_database(tmp_path):
    """The multi-collector settings (issue 16): the shared KEK file, the CRL listener and its URL, an HSM."""
    from collector.config.core import load_config

    variables = {
        "certfleet_collector_data_dir": str(tmp_path / "data"),
        "certfleet_collector_database_url": "postgresql+psycopg://certfleet@db.example.net/certfleet",
        "certfleet_collector_listen": "0.0.0.0:7443", "certfleet_collector_enroll_listen": "0.0.0.0:7444",
        "certfleet_collector_advertise": "", "certfleet_collector_enroll_advertise": "",
        "certfleet_collector_server_names": ["collector.example.net"],
        "certfleet_collector_token_ttl": "1h", "certfleet_collector_agent_cert_lifetime": "30d",
        "certfleet_collector_admin_cert_lifetime": "365d", "certfleet_collector_settings": {},
        "certfleet_collector_kek": "c2VjcmV0", "certfleet_collector_kek_file": "/etc/certfleet/kek",
        "certfleet_collector_crl_listen": "0.0.0.0:8080",
        "certfleet_collector_crl_url": "http://collector.example.net:8080",
        "certfleet_collector_pkcs11": {"module": "/usr/lib/softhsm/libsofthsm2.so", "token": "certfleet",
                                       "pin_file": "/etc/certfleet/hsm.pin"},
    }
    render(ROLES / "certfleet_collector/templates/collector.toml.j2", variables, tmp_path / "collector.toml", tmp_path)
    text = (tmp_path / "collector.toml").read_text()
    assert "c2VjcmV0" not in text, "the KEK itself goes to its own 0600 file, never into the config"
    cfg = load_config(tmp_path / "collector.toml")
    assert cfg.keys["kek_file"] == "/etc/certfleet/kek"
    assert cfg.keys["pkcs11"]["token"] == "certfleet"
    assert cfg.crl == {"listen": "0.0.0.0:8080", "url": "http://collector.example.net:8080"}
