"""Servers in their own processes, for the process-link tests (the test process itself is never linked).

- :class:`SmtpProcess`: a STARTTLS SMTP server (aiosmtpd) started as
  ``python -m tests.helpers.agent_processes smtp IP PORT CERT KEY``: the certificate files are on its
  command line.
- :class:`FileHolder`: a process that keeps a file open (named in its environment, not on its command
  line) and listens on a TCP port: linked by ``open_file`` only.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers.tls_servers import free_port_on, wait_listening

_ROOT = Path(__file__).resolve().parents[2]
_MODULE = "tests.helpers.agent_processes"


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a server process: this checkout first on its import path (it runs as ``-m``)."""
    env = dict(os.environ, **(extra or {}))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


class _Proc:
    def __init__(self, args: list[str], ip: str, port: int, env: dict[str, str] | None = None) -> None:
        self.ip, self.port = ip, port
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env)
        try:
            wait_listening(ip, port, timeout=20, proc=self.proc)
        except RuntimeError:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class SmtpProcess(_Proc):
    def __init__(self, ip: str, cert: Path, key: Path) -> None:
        port = free_port_on(ip)
        super().__init__([sys.executable, "-m", _MODULE, "smtp", ip, str(port), str(cert), str(key)], ip, port,
                         _child_env())


class FileHolder(_Proc):
    def __init__(self, ip: str, path: Path) -> None:
        port = free_port_on(ip)
        super().__init__([sys.executable, "-m", _MODULE, "hold", ip, str(port)], ip, port,
                         _child_env({"HOLD_FILE": str(path)}))


def _serve_smtp(ip: str, port: int, cert: str, key: str) -> None:
    import ssl

    from aiosmtpd.controller import Controller

    class Sink:
        async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
            return "250 OK"

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)        # read once at start, like a real server: replacing the file needs a restart
    c = Controller(Sink(), hostname=ip, port=port, tls_context=ctx, require_starttls=False,
                   server_hostname="mail.example.test", ready_timeout=10)
    c.start()
    while True:
        time.sleep(3600)


def _hold(ip: str, port: int) -> None:
    import socket

    f = open(os.environ["HOLD_FILE"], "rb")  # noqa: SIM115 - kept open on purpose
    s = socket.socket()
    s.bind((ip, port))
    s.listen(8)
    while f:
        time.sleep(3600)


if __name__ == "__main__":
    if sys.argv[1] == "smtp":
        _serve_smtp(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif sys.argv[1] == "hold":
        _hold(sys.argv[2], int(sys.argv[3]))
