"""ACME challenge solvers: what makes a challenge answerable while a CA validates it.

:class:`ChallengeSolver` is the contract :class:`~collector.issuers.acme.AcmeIssuer` uses;
three solvers implement it:

- :class:`StandaloneHttp01Solver`: an HTTP responder on the collector host (``http01_listen``);
- :class:`CallbackHttp01Solver`: two callables, e.g. the collector asking the agent on the host
  to place the file (collector/services/challenges.py);
- :class:`Dns01HookSolver`: an external hook command that publishes the TXT record.

Needs nothing of the ``acme`` package: the server's composition root makes the callback
solver whether or not ACME is installed.

The dns-01 hook is run without a shell, once with ``CERTFLEET_ACME_ACTION=present``
and once with ``cleanup``; the environment also carries ``CERTFLEET_ACME_DOMAIN``
(the domain being validated), ``CERTFLEET_ACME_TXT_NAME``
(``_acme-challenge.<domain>``) and ``CERTFLEET_ACME_TXT`` (the TXT value). A
non-zero exit or a timeout fails the issuance with the end of the hook's stderr.
"""
from __future__ import annotations

import base64
import hashlib
import http.server
import logging
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence, runtime_checkable

from collector.domain.templates import TemplateConfigError
from collector.errors import CollectorError, IssuerError

log = logging.getLogger(__name__)

#: where an http-01 challenge is served (RFC 8555 section 8.3)
HTTP01_PATH = ".well-known/acme-challenge"
STDERR_TAIL = 600

__all__ = ["CallbackHttp01Solver", "ChallengeSolver", "Dns01HookSolver", "StandaloneHttp01Solver", "dns01_txt_value"]


@runtime_checkable
class ChallengeSolver(Protocol):
    """Makes one ACME challenge answerable, then takes it away again.

    ``challenge_type`` is ``"http-01"`` or ``"dns-01"``. ``present`` gets the
    challenge token, the key authorization (``token.thumbprint``) and the
    domain being validated (for a wildcard name, the base domain). It returns
    when the challenge can be validated; raise :class:`IssuerError` (or any
    :class:`CollectorError`) with a user-safe message when it cannot.
    ``cleanup`` gets the same arguments; its failures are logged, not raised.
    """

    challenge_type: ClassVar[str]

    def present(self, token: str, key_authorization: str, domain: str) -> None: ...

    def cleanup(self, token: str, key_authorization: str, domain: str) -> None: ...


class StandaloneHttp01Solver:
    """Answers http-01 challenges itself on ``host:port`` while any are outstanding.

    For hosts whose name the collector host answers for (port 80 reaches it)
    and for tests. The HTTP server starts with the first ``present`` and stops
    when the last challenge is cleaned up; it serves
    ``/.well-known/acme-challenge/<token>`` and 404 for everything else.
    """

    challenge_type: ClassVar[str] = "http-01"

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self._server: _ReusableHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def present(self, token: str, key_authorization: str, domain: str) -> None:
        with self._lock:
            self._tokens[token] = key_authorization
            if self._server is None:
                self._start()

    def cleanup(self, token: str, key_authorization: str, domain: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)
            if not self._tokens:
                self._stop()

    def close(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._stop()

    def _start(self) -> None:
        tokens = self._tokens

        class Handler(http.server.BaseHTTPRequestHandler):
            prefix = "/" + HTTP01_PATH + "/"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?", 1)[0]
                body = tokens.get(path[len(self.prefix):]) if path.startswith(self.prefix) else None
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode("ascii")
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("http-01 responder: " + format, *args)

        try:
            server = _ReusableHTTPServer((self.host, self.port), Handler)
        except OSError as e:
            raise IssuerError(
                f"cannot listen on {self.host}:{self.port} to answer http-01 challenges: {e.strerror or e}"
            ) from None
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="acme-http01", daemon=True
        )
        self._thread.start()

    def _stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class _ReusableHTTPServer(http.server.ThreadingHTTPServer):
    allow_reuse_address = True  # start again right after the last stop
    daemon_threads = True


class CallbackHttp01Solver:
    """http-01 through two callables, e.g. asking the agent on the host to serve
    or place ``/.well-known/acme-challenge/<token>``.

    ``present(token, key_authorization, domain)`` must return once the
    challenge is reachable; ``cleanup`` with the same arguments removes it.
    """

    challenge_type: ClassVar[str] = "http-01"

    def __init__(
        self,
        present: Callable[[str, str, str], None],
        cleanup: Callable[[str, str, str], None],
    ) -> None:
        self._present = present
        self._cleanup = cleanup

    def present(self, token: str, key_authorization: str, domain: str) -> None:
        try:
            self._present(token, key_authorization, domain)
        except CollectorError as e:
            raise IssuerError(f"could not place the http-01 challenge for {domain}: {e.message}") from None
        except Exception as e:  # noqa: BLE001 - a callback's failure is the issuance's failure
            log.exception("http-01 present callback failed for %s", domain)
            raise IssuerError(f"could not place the http-01 challenge for {domain}: {type(e).__name__}") from None

    def cleanup(self, token: str, key_authorization: str, domain: str) -> None:
        self._cleanup(token, key_authorization, domain)


def dns01_txt_value(key_authorization: str) -> str:
    """The TXT record value for a key authorization (RFC 8555 section 8.4)."""
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class Dns01HookSolver:
    """dns-01 through an external hook command (argument list, never a shell).

    The hook is run as ``command`` with the environment of the collector plus
    ``CERTFLEET_ACME_ACTION`` (``present`` or ``cleanup``),
    ``CERTFLEET_ACME_DOMAIN``, ``CERTFLEET_ACME_TXT_NAME`` and
    ``CERTFLEET_ACME_TXT``; stdin is empty. It must exit 0 within ``timeout``
    seconds once the record is published (``propagation_wait`` adds a pause
    after it).
    """

    challenge_type: ClassVar[str] = "dns-01"

    def __init__(
        self, command: Sequence[str], *, timeout: float = 60.0, propagation_wait: float = 0.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(command, str) or not command or not all(isinstance(a, str) and a for a in command):
            raise TemplateConfigError("dns01_hook must be a non-empty list of arguments, e.g. [\"/usr/local/bin/hook\"]")
        self.command = list(command)
        self.timeout = timeout
        self.propagation_wait = propagation_wait
        self.env = dict(env or {})

    def present(self, token: str, key_authorization: str, domain: str) -> None:
        self._run("present", domain, dns01_txt_value(key_authorization))
        if self.propagation_wait > 0:
            time.sleep(self.propagation_wait)

    def cleanup(self, token: str, key_authorization: str, domain: str) -> None:
        self._run("cleanup", domain, dns01_txt_value(key_authorization))

    def _run(self, action: str, domain: str, txt: str) -> None:
        env = {**os.environ, **self.env}
        env.update({
            "CERTFLEET_ACME_ACTION": action,
            "CERTFLEET_ACME_DOMAIN": domain,
            "CERTFLEET_ACME_TXT_NAME": f"_acme-challenge.{domain}",
            "CERTFLEET_ACME_TXT": txt,
        })
        hook = Path(self.command[0]).name
        try:
            proc = subprocess.run(
                self.command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                timeout=self.timeout, check=False, shell=False,
            )
        except subprocess.TimeoutExpired:
            raise IssuerError(
                f"the dns-01 hook {hook} did not finish '{action}' for {domain} within {self.timeout:g}s"
            ) from None
        except OSError as e:
            raise IssuerError(f"cannot run the dns-01 hook {self.command[0]}: {e.strerror or e}") from None
        if proc.returncode != 0:
            tail = proc.stderr.decode("utf-8", "replace").strip()[-STDERR_TAIL:]
            raise IssuerError(
                f"the dns-01 hook {hook} failed '{action}' for {domain} (exit {proc.returncode})"
                + (f": {tail}" if tail else "")
            )
