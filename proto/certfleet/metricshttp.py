"""The ``/metrics`` listener: its own address (``[metrics] listen``), an optional bearer token.

A small threaded HTTP server (http.server) in a daemon thread: ``GET /metrics`` answers the
Prometheus text format of one prometheus_client registry (``generate_latest``; the custom
collectors query the database in the request's thread, not in the event loop). With a token
(read from ``bearer_token_file``), a request without ``Authorization: Bearer <token>`` gets
401 and nothing else; the token is compared in constant time and never logged.
"""
from __future__ import annotations

import hmac
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["MetricsServer"]

log = logging.getLogger(__name__)


class MetricsServer:
    def __init__(self, registry: CollectorRegistry, host: str, port: int, token: str | None = None) -> None:
        self.registry = registry
        expected = f"Bearer {token}".encode() if token else None

        class Handler(BaseHTTPRequestHandler):
            server_version = "certfleet-metrics"
            sys_version = ""

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.split("?", 1)[0] not in ("/metrics", "/metrics/"):
                    self._answer(404, b"not found: try /metrics\n", "text/plain")
                    return
                if expected is not None:
                    got = (self.headers.get("Authorization") or "").encode()
                    if not hmac.compare_digest(got, expected):
                        self.send_response(401)
                        self.send_header("WWW-Authenticate", 'Bearer realm="certfleet metrics"')
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                try:
                    body = generate_latest(registry)
                except Exception:  # noqa: BLE001 - answer 500, keep serving
                    log.exception("metrics: the scrape failed")
                    self._answer(500, b"the scrape failed; see the collector's log\n", "text/plain")
                    return
                self._answer(200, body, CONTENT_TYPE_LATEST)

            def _answer(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
                log.debug("metrics %s %s", self.address_string(), format % args)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
