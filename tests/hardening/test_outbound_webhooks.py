"""Outbound calls go only where configured: an owner's webhook pointed at a listener of the
attacker's choosing (loopback here) receives nothing, and never the channel's token; the channel's
own URL gets its token; a redirect to another host is not followed; an allowed https host works."""
from __future__ import annotations

import datetime as dt
import pathlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from collector.config.notify import NotifySettings
from collector.registry import Registry
from collector.registry.notify import NotifyStore
from collector.services.notifier import Notifier
from tests.helpers.registry_certs import T0, header, leaf, location, root_ca, store_report
from tests.helpers.install_sites import TestCA
from tests.helpers.registry_notify_servers import http_server
from tests.helpers.tls_servers import site_files

NOW = T0 + dt.timedelta(hours=1)
TOKEN = "channel-secret-token-123"


@pytest.fixture
def http() -> Iterator[Any]:
    yield from http_server()


def _settings(url: str, allowed: list[str] | None = None) -> NotifySettings:
    notify: dict[str, Any] = {"channel": [{"name": "hooks", "type": "webhook", "url": url,
                                           "token_env": "CF_TEST_HOOK_TOKEN"}]}
    if allowed is not None:
        notify["webhook_allowed"] = allowed
    return NotifySettings.from_config({"notify": notify})


def _expiring(registry: Registry, make_agent: Any, webhook: str) -> None:
    make_agent("agent-1", "web1.example.com")
    registry.owners.create_owner("web", T0, contacts=["web@example.com"], webhook=webhook)
    registry.owners.add_rule("all-web", T0, owner="web", criticality="high")
    cert = leaf("www.example.com", root_ca(), days=20)
    store_report(registry, "agent-1", header("r1", full=True, sequence=1), [location(cert, "/etc/ssl/www.pem")], now=T0)


def _auth_headers(sink: Any) -> list[str]:
    with sink.lock:
        return [h.get("Authorization", "") for _p, _b, h in sink.requests]


@pytest.mark.parametrize("webhook", [
    "https://127.0.0.1:{port}/steal",          # loopback, not listed
    "http://hooks.example.com/plain",          # not https
    "https://169.254.169.254/latest/meta-data",   # link-local metadata address
    "https://evil.example.net/x",              # a host not on the allow-list
])
def test_owner_webhook_outside_the_allow_list_gets_nothing(
        registry: Registry, make_agent: Any, http: Any, monkeypatch: pytest.MonkeyPatch, webhook: str) -> None:
    sink, port = http
    monkeypatch.setenv("CF_TEST_HOOK_TOKEN", TOKEN)
    _expiring(registry, make_agent, webhook.format(port=port))
    Notifier(registry, _settings(f"http://127.0.0.1:{port}/channel", ["hooks.example.com"])).run_once(NOW)
    assert sink.requests == []                      # nothing went anywhere, the token least of all
    (d,) = NotifyStore(registry.engine).list_deliveries()
    assert d.state == "failed" and d.last_error.startswith("refused: webhook ")
    assert "steal" not in d.last_error and "meta-data" not in d.last_error    # redacted


def test_channel_token_only_to_its_own_url(registry: Registry, make_agent: Any, http: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    sink, port = http
    monkeypatch.setenv("CF_TEST_HOOK_TOKEN", TOKEN)
    _expiring(registry, make_agent, "")             # no owner webhook: the channel's url
    Notifier(registry, _settings(f"http://127.0.0.1:{port}/channel")).run_once(NOW)
    assert len(sink.on("/channel")) == 1 and _auth_headers(sink) == [f"Bearer {TOKEN}"]


class _TlsSink:
    """An https server on 127.0.0.1 with a test CA's certificate; records requests' headers."""

    def __init__(self, tmp: pathlib.Path, redirect_to: str = "") -> None:
        ca = TestCA()
        site = site_files(tmp / "site", ca, ("localhost",))
        self.ca_file = tmp / "ca.pem"
        self.ca_file.write_bytes(ca.root_pem)
        self.headers: list[dict[str, str]] = []
        sink = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                sink.headers.append(dict(self.headers))
                if redirect_to:
                    self.send_response(307)
                    self.send_header("Location", redirect_to)
                else:
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.socket = site.server_context().wrap_socket(self.srv.socket, server_side=True)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


def test_listed_https_owner_webhook_delivered_without_the_channel_token(
        registry: Registry, make_agent: Any, http: Any, monkeypatch: pytest.MonkeyPatch,
        tmp_path: pathlib.Path) -> None:
    sink, port = http
    tls = _TlsSink(tmp_path)
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
        monkeypatch.setenv("CF_TEST_HOOK_TOKEN", TOKEN)
        _expiring(registry, make_agent, f"https://localhost:{tls.port}/team-hook")
        allowed = ["localhost", "127.0.0.0/8", "::1/128"]     # loopback: only because it is listed
        Notifier(registry, _settings(f"http://127.0.0.1:{port}/channel", allowed)).run_once(NOW)
        (d,) = NotifyStore(registry.engine).list_deliveries()
        assert d.state == "sent", d.last_error
        assert len(tls.headers) == 1 and "Authorization" not in tls.headers[0]
        assert sink.requests == []
    finally:
        tls.close()


def test_redirect_to_another_host_not_followed(registry: Registry, make_agent: Any, http: Any,
                                               monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    sink, port = http
    tls = _TlsSink(tmp_path, redirect_to=f"http://127.0.0.2:{port}/stolen")
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
        monkeypatch.setenv("CF_TEST_HOOK_TOKEN", TOKEN)
        _expiring(registry, make_agent, "")
        Notifier(registry, _settings(f"https://localhost:{tls.port}/channel")).run_once(NOW)
        assert len(tls.headers) == 1 and tls.headers[0]["Authorization"] == f"Bearer {TOKEN}"
        assert sink.requests == []                  # the redirect's target heard nothing
        (d,) = NotifyStore(registry.engine).list_deliveries()
        assert "redirected to another host" in d.last_error
    finally:
        tls.close()
