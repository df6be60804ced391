"""Real TLS servers on loopback for the discovery tests.

- :class:`SServer`: ``openssl s_server`` on one 127.0.0.x address (optionally a
  second certificate for one SNI name, ``-servername``/``-cert2``).
- :class:`StartTlsServers`: STARTTLS SMTP (aiosmtpd with a ``tls_context``),
  IMAP and POP3 (small asyncio servers that speak just enough of the protocol:
  greeting, CAPABILITY/STARTTLS or STLS, then a real TLS upgrade) on one event
  loop in a background thread.
- :func:`silent_server`: accepts connections and never says anything.
- :func:`site_files`: a certificate (with its intermediate) for some names, as PEM files.

Every address is in 127.0.0.0/8; ports are free ports of that address.
"""
from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.install_sites import Issued, TestCA, openssl_key, public_key_of


def free_port_on(ip: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def wait_listening(ip: str, port: int, timeout: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {ip}:{port}")
        try:
            with socket.create_connection((ip, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {ip}:{port} after {timeout} s")


@dataclass
class Site:
    """One server certificate as files: cert.pem (leaf), chain.pem (intermediate), fullchain.pem, key.pem."""

    directory: Path
    issued: Issued
    names: tuple[str, ...]

    @property
    def cert(self) -> Path:
        return self.directory / "cert.pem"

    @property
    def chain(self) -> Path:
        return self.directory / "chain.pem"

    @property
    def fullchain(self) -> Path:
        return self.directory / "fullchain.pem"

    @property
    def key(self) -> Path:
        return self.directory / "key.pem"

    @property
    def fingerprint(self) -> str:
        return self.issued.fingerprint

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.fullchain), str(self.key))
        return ctx


def site_files(directory: Path, ca: TestCA, names: tuple[str, ...]) -> Site:
    directory.mkdir(parents=True, exist_ok=True)
    key = openssl_key(directory / "key.pem")
    issued = ca.issue(public_key_of(key), names)
    (directory / "cert.pem").write_bytes(issued.cert_pem)
    (directory / "chain.pem").write_bytes(issued.chain_pem())
    (directory / "fullchain.pem").write_bytes(issued.cert_pem + issued.chain_pem())
    return Site(directory, issued, names)


class SServer:
    """``openssl s_server`` on ``ip``: ``site`` by default, ``sni_site`` for the name ``sni_name``."""

    def __init__(self, ip: str, site: Site, sni_name: str = "", sni_site: Site | None = None,
                 port: int | None = None) -> None:
        self.ip = ip
        self.port = port or free_port_on(ip)
        args = ["openssl", "s_server", "-quiet", "-accept", f"{ip}:{self.port}", "-cert", str(site.cert),
                "-key", str(site.key), "-cert_chain", str(site.chain)]
        if sni_site is not None:
            args += ["-servername", sni_name, "-cert2", str(sni_site.cert), "-key2", str(sni_site.key)]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        try:
            wait_listening(ip, self.port, proc=self.proc)
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


# ---------------------------------------------------------------- STARTTLS servers on one asyncio loop


async def _imap_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: ssl.SSLContext) -> None:
    writer.write(b"* OK certfleet test IMAP ready\r\n")
    await writer.drain()
    while True:
        line = await reader.readline()
        if not line:
            return
        tag, _, command = line.decode().strip().partition(" ")
        command = command.upper()
        if command == "CAPABILITY":
            writer.write(b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n" + f"{tag} OK CAPABILITY done\r\n".encode())
        elif command == "STARTTLS":
            writer.write(f"{tag} OK begin TLS now\r\n".encode())
            await writer.drain()
            await writer.start_tls(ctx)
            await reader.read(1)          # until the client closes
            return
        elif command == "LOGOUT":
            writer.write(f"* BYE\r\n{tag} OK\r\n".encode())
            await writer.drain()
            return
        else:
            writer.write(f"{tag} BAD unknown command\r\n".encode())
        await writer.drain()


async def _pop3_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: ssl.SSLContext) -> None:
    writer.write(b"+OK certfleet test POP3 ready\r\n")
    await writer.drain()
    while True:
        line = await reader.readline()
        if not line:
            return
        command = line.decode().strip().upper()
        if command == "CAPA":
            writer.write(b"+OK\r\nSTLS\r\nUSER\r\n.\r\n")
        elif command == "STLS":
            writer.write(b"+OK begin TLS negotiation\r\n")
            await writer.drain()
            await writer.start_tls(ctx)
            await reader.read(1)
            return
        elif command == "QUIT":
            writer.write(b"+OK bye\r\n")
            await writer.drain()
            return
        else:
            writer.write(b"-ERR unknown command\r\n")
        await writer.drain()


class LoopThread:
    """An asyncio event loop in a daemon thread, for servers the tests start and stop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-servers", daemon=True)
        self.thread.start()
        self.servers: list[asyncio.AbstractServer] = []
        self.smtp_controllers: list[object] = []

    def call(self, coro, timeout: float = 10.0):  # noqa: ANN001, ANN201
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _session(self, kind: str, ctx: ssl.SSLContext):  # noqa: ANN202
        fn = {"imap": _imap_session, "pop3": _pop3_session}[kind]

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await fn(reader, writer, ctx)
            except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError):
                pass
            finally:
                writer.close()
        return handle

    def starttls_server(self, kind: str, ip: str, site: Site) -> int:
        """IMAP or POP3 with STARTTLS on ``ip``; returns the port."""
        port = free_port_on(ip)

        async def start() -> asyncio.AbstractServer:
            return await asyncio.start_server(self._session(kind, site.server_context()), ip, port)

        self.servers.append(self.call(start()))
        return port

    def smtp_server(self, ip: str, site: Site) -> int:
        """aiosmtpd with STARTTLS (its tls_context) on ``ip``; returns the port."""
        from aiosmtpd.controller import Controller

        class Sink:
            async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
                return "250 OK"

        port = free_port_on(ip)
        c = Controller(Sink(), hostname=ip, port=port, tls_context=site.server_context(), require_starttls=False,
                       server_hostname="mail.example.test", ready_timeout=10)
        c.start()
        self.smtp_controllers.append(c)
        return port

    def plain_tls_server(self, ip: str, site: Site) -> int:
        """TLS from the first byte (like 993/995/465) on ``ip``; returns the port."""
        port = free_port_on(ip)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.read(1)
            except (ConnectionError, ssl.SSLError, OSError):
                pass
            finally:
                writer.close()

        async def start() -> asyncio.AbstractServer:
            return await asyncio.start_server(handle, ip, port, ssl=site.server_context())

        self.servers.append(self.call(start()))
        return port

    def close(self) -> None:
        for c in self.smtp_controllers:
            try:
                c.stop()  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass

        async def shut() -> None:
            for s in self.servers:
                s.close()
            for s in self.servers:
                await s.wait_closed()

        try:
            self.call(shut(), timeout=5)
        except Exception:  # noqa: BLE001
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


class SilentServer:
    """Accepts connections (kernel backlog and accept()) and never sends a byte."""

    def __init__(self, ip: str) -> None:
        self.sock = socket.socket()
        self.sock.bind((ip, 0))
        self.sock.listen(64)
        self.ip, self.port = ip, self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self.sock.settimeout(0.1)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.accepted.append(conn)
            except (socket.timeout, OSError):
                continue

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=2)
        for c in self.accepted:
            c.close()
        self.sock.close()


def loopback_block(salt: int = 0) -> str:
    """A /28 in 127.0.0.0/8 that this test process has to itself (by pid), e.g. "127.83.19.16"."""
    n = (os.getpid() * 7 + salt) % (200 * 250 * 15)
    a, rest = divmod(n, 250 * 15)
    b, c = divmod(rest, 15)
    return f"127.{30 + a}.{b + 1}.{16 * (c + 1)}"
