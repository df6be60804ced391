"""Renewal through a real ACME server (Debian's pebble), the http-01 challenge placed by the agent
in the web root that nginx serves, and the new certificate seen in a real handshake."""
from __future__ import annotations

import os
import pathlib
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.conftest import free_port, need_tools
from tests.e2e.harness import Agent, Collector
from tests.e2e.test_renewal import Service, old_site, registry_fingerprint, wait_for
from tests.helpers.install_sites import nginx_binary, served_fingerprint

NGINX_CONF = """\
{user}daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log notice;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    server {{
        listen 127.0.0.1:{http_port};
        location /.well-known/acme-challenge/ {{ root {webroot}; default_type text/plain; }}
    }}
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        server_name www.example.test;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        return 200 "ok\\n";
    }}
}}
"""


class WebServer:
    """nginx answering http-01 from a web root on pebble's http port, and TLS with the managed files."""

    def __init__(self, binary: str, prefix: pathlib.Path, http_port: int, webroot: pathlib.Path,
                 cert: pathlib.Path, key: pathlib.Path) -> None:
        (prefix / "tmp").mkdir(parents=True)
        self.tls_port = free_port()
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(user="user root;\n" if os.geteuid() == 0 else "", prefix=prefix,
                                               http_port=http_port, tls_port=self.tls_port, webroot=webroot,
                                               cert=cert, key=key))
        self.base = [binary, "-c", str(self.conf), "-p", f"{prefix}/", "-e", f"{prefix}/error.log"]
        self.proc = subprocess.Popen(self.base, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                served_fingerprint(self.tls_port)
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError((prefix / "error.log").read_text())
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture()
def acme_world(tmp_path: pathlib.Path):
    need_tools("openssl")
    binary = nginx_binary()
    if binary is None:
        pytest.skip("needs nginx (packaging/dev/setup.sh installs it)")
    from tests.helpers.collector_issuers import CHALLTESTSRV, PEBBLE, start_pebble

    import shutil

    if not (shutil.which(PEBBLE) and shutil.which(CHALLTESTSRV)):
        pytest.skip("needs Debian's pebble (packaging/dev/setup.sh installs it)")
    pebble = start_pebble(tmp_path / "pebble")
    root_pem = x509.load_der_x509_certificate(pebble.root_der()).public_bytes(Encoding.PEM)
    (tmp_path / "pebble-root.pem").write_bytes(root_pem)
    cert, key = old_site(tmp_path / "site")
    webroot = tmp_path / "webroot"
    webroot.mkdir()
    web = WebServer(binary, tmp_path / "nginx", pebble.http01_port, webroot, cert, key)
    c = Collector(tmp_path / "collector", extra_tables=f"""
[issuers.pebble]
type = "acme"
directory_url = "{pebble.directory_url}"
ca_bundle = "{pebble.ca_bundle}"
challenge = "http-01"

[templates.public]
issuer = "pebble"
key_type = "ec"
curve = "P-256"
validity = "90d"
allowed_san_patterns = ["*.example.test"]

[renewal]
default_template = "public"
""")
    c.start()
    assert c.init_admin().code == 0
    c.authorize("*.example.test")
    agent = Agent(tmp_path / "agent", f"""[[store]]
name = "web"
type = "pem"
paths = ["{tmp_path / 'site'}/*.pem"]
reload = "nginx"
acme_webroot = "{webroot}"
verify = [{{ host = "127.0.0.1", port = {web.tls_port}, sni = "www.example.test", ca_file = "{tmp_path / 'pebble-root.pem'}" }}]

[reload.nginx]
command = {[*web.base, "-s", "reload"]!r}
""".replace("'", '"'))
    agent.write_config(hostname="web-acme")
    agent.config.write_text(agent.config.read_text().replace("[agent]\n", '[agent]\nscan_interval = "2s"\n', 1))
    assert agent.enroll(c, c.token()).code == 0
    svc = Service(agent)
    yield c, web, pebble
    svc.stop()
    c.stop()
    web.stop()
    pebble.stop()


def test_renew_through_pebble_with_agent_placed_http01(acme_world) -> None:
    c, web, pebble = acme_world
    old = wait_for(lambda: registry_fingerprint(c, "web-acme"), what="first report")
    r = c.cli("renew", old[:12], "--template", "public", "--wait", "--timeout", "90")
    assert r.code == 0, r.out + r.err + pebble.logs()
    job_id = r.out.split()[1]
    job = c.cli("jobs", "show", job_id, "--format", "json").json()
    assert job["state"] == "verified"
    assert served_fingerprint(web.tls_port) == job["new_fingerprint"] != old
    wait_for(lambda: registry_fingerprint(c, "web-acme") == job["new_fingerprint"],
             what="registry to see the ACME certificate")
    shown = c.cli("certs", "show", job["new_fingerprint"][:12], "--format", "json").json()
    assert "Pebble" in shown["issuer"]
