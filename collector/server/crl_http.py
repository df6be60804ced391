"""The plain-HTTP CRL listener (``[crl] listen``): ``GET /<issuer>.crl`` answers the issuer's current
CRL (DER, ``application/pkix-crl``). A CRL is public and signed, so no TLS; relying parties fetch
it from the URL the internal CA writes into each certificate (``[crl] url`` + ``/<issuer>.crl``).

The bytes come from the registry (InternalCA.crl_der with the shared state): every collector
serves the same CRL; it is signed anew on each revocation and once half its validity has passed,
so it is replaced well before ``nextUpdate``. Only issuers that publish CRLs are served; anything
else is 404. Each request is answered in its own thread; a slow client holds only its thread.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping

log = logging.getLogger(__name__)
_PATH = re.compile(r"^/([A-Za-z0-9][A-Za-z0-9_.-]{0,127})\.crl$")


class CrlListener:
    def __init__(self, host: str, port: int, issuers: Mapping[str, Any], clock: Callable[[], dt.datetime]) -> None:
        publishing = {n: i for n, i in issuers.items() if hasattr(i, "crl_der")}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "certfleet-crl"
            sys_version = ""

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                m = _PATH.match(self.path.split("?", 1)[0])
                issuer = publishing.get(m.group(1)) if m else None
                if issuer is None:
                    self.send_error(404, "no such CRL")
                    return
                try:
                    der = issuer.crl_der(outer.clock())
                except Exception:  # noqa: BLE001 - the database is away: tell the client, keep serving
                    log.exception("CRL of %s could not be made", m.group(1) if m else "?")
                    self.send_error(503, "CRL not available now")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/pkix-crl")
                self.send_header("Content-Length", str(len(der)))
                self.send_header("Cache-Control", "max-age=60")
                self.end_headers()
                self.wfile.write(der)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
                log.debug("crl: " + format, *args)

        self.clock = clock
        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="crl-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
