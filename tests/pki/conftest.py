"""Fixtures for the PKI tests: a real collector CA in a temporary directory,
and a real TLS server presenting the collector's server chain."""
from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest

from collector.pki import CollectorCA


@pytest.fixture
def now() -> dt.datetime:
    """The real current time: certificates used in real handshakes must be valid now."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    return tmp_path / "pki"


@pytest.fixture
def ca(ca_dir: Path, now: dt.datetime) -> CollectorCA:
    return CollectorCA.load_or_create(ca_dir, now)


@pytest.fixture
def server_files(ca: CollectorCA, ca_dir: Path, now: dt.datetime) -> tuple[Path, Path]:
    return ca.server_identity(ca_dir, ["localhost", "127.0.0.1"], now)


class TLSServer:
    """A minimal TLS server on 127.0.0.1 that completes handshakes and hangs up."""

    def __init__(self, cert_chain: Path, key: Path) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert_chain), str(key))
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            conn.settimeout(5)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    try:
                        tls.recv(1)  # wait for the client to hang up
                    except (OSError, ssl.SSLError):
                        pass
            except (OSError, ssl.SSLError):
                conn.close()

    def __enter__(self) -> "TLSServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def start_tls_server() -> Iterator[Callable[[Path, Path], TLSServer]]:
    """Start a :class:`TLSServer` with a given chain and key; stopped after the test."""
    started: list[TLSServer] = []

    def start(cert_chain: Path, key: Path) -> TLSServer:
        server = TLSServer(cert_chain, key).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)


@pytest.fixture
def tls_server(server_files: tuple[Path, Path], start_tls_server: Callable[[Path, Path], TLSServer]) -> TLSServer:
    """A TLS server presenting the collector's chain from ``server_identity``."""
    return start_tls_server(*server_files)
