"""Fixtures for the discovery tests: real TLS servers on loopback addresses.

- ``tls_ca`` / ``other_ca``: test CAs (root + intermediate), session-wide.
- ``make_site(names)``: a certificate with its chain and key as PEM files.
- ``s_server(ip, site, sni_name=..., sni_site=...)``: ``openssl s_server``.
- ``servers``: one asyncio loop with STARTTLS SMTP (aiosmtpd), IMAP, POP3 and
  plain TLS servers (``servers.smtp_server(ip, site)`` and so on).
- ``silent(ip)``: accepts and says nothing.
- ``nginx(cert, key)``: real nginx on 127.0.0.1 (tests/helpers/install_sites.py).
- ``loopback_ip(n)``: distinct 127.x addresses for this test process.

Everything started here is stopped when the test ends; tests needing a tool
that is missing are skipped with the reason.
"""
from __future__ import annotations

import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.helpers.install_sites import Nginx, nginx_binary
from tests.helpers.tls_servers import LoopThread, SServer, SilentServer, Site, TestCA, loopback_block, site_files


@pytest.fixture(scope="session")
def tls_ca() -> TestCA:
    return TestCA("Certfleet Discovery Test")


@pytest.fixture(scope="session")
def other_ca() -> TestCA:
    return TestCA("Certfleet Discovery Other")


@pytest.fixture(scope="session")
def openssl_bin() -> str:
    found = shutil.which("openssl")
    if found is None:
        pytest.skip("needs openssl (Debian package: openssl)")
    return found


@pytest.fixture
def make_site(tmp_path: Path, tls_ca: TestCA, openssl_bin: str) -> Callable[..., Site]:
    counter = iter(range(1000))

    def make(*names: str, ca: TestCA | None = None) -> Site:
        return site_files(tmp_path / f"site{next(counter)}", ca or tls_ca, names or ("www.example.test",))
    return make


@pytest.fixture
def s_server(openssl_bin: str) -> Iterator[Callable[..., SServer]]:
    started: list[SServer] = []

    def start(ip: str, site: Site, **kw: object) -> SServer:
        s = SServer(ip, site, **kw)  # type: ignore[arg-type]
        started.append(s)
        return s
    try:
        yield start
    finally:
        for s in started:
            s.stop()


@pytest.fixture
def servers() -> Iterator[LoopThread]:
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.close()


@pytest.fixture
def silent() -> Iterator[Callable[[str], SilentServer]]:
    started: list[SilentServer] = []

    def start(ip: str) -> SilentServer:
        s = SilentServer(ip)
        started.append(s)
        return s
    try:
        yield start
    finally:
        for s in started:
            s.close()


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Callable[..., Nginx]]:
    binary = nginx_binary()
    if binary is None:
        pytest.skip("needs Debian's nginx (apt-get install nginx; packaging/dev/setup.sh installs it)")
    started: list[Nginx] = []

    def start(cert: Path, key: Path, server_name: str = "www.example.test") -> Nginx:
        n = Nginx(binary, Path(tempfile.mkdtemp(prefix="nginx-", dir=tmp_path)), cert, key, server_name)
        started.append(n)
        return n
    try:
        yield start
    finally:
        for n in started:
            n.stop()


@pytest.fixture
def loopback_ip(request: pytest.FixtureRequest) -> Callable[[int], str]:
    """``loopback_ip(n)``: the n-th address (1..14) of a /28 in 127/8 kept for this test."""
    base = loopback_block(zlib.crc32(request.node.nodeid.encode()) % 997)
    a, b, c, d = base.split(".")

    def ip(n: int) -> str:
        assert 0 < n < 15
        return f"{a}.{b}.{c}.{int(d) + n}"
    ip.block = f"{base}/28"  # type: ignore[attr-defined]
    return ip


# ---------------------------------------------------------------- servers in their own processes (process links)

class _ProcessServers:
    """``smtp(ip, cert, key)``: STARTTLS SMTP in a child process; ``hold(ip, path)``: a listener keeping a file open."""

    def __init__(self) -> None:
        self.started: list = []

    def smtp(self, ip: str, cert: Path, key: Path):  # noqa: ANN201
        from tests.helpers.agent_processes import SmtpProcess

        s = SmtpProcess(ip, cert, key)
        self.started.append(s)
        return s

    def hold(self, ip: str, path: Path):  # noqa: ANN201
        from tests.helpers.agent_processes import FileHolder

        s = FileHolder(ip, path)
        self.started.append(s)
        return s


@pytest.fixture
def process_servers() -> Iterator[_ProcessServers]:
    ps = _ProcessServers()
    try:
        yield ps
    finally:
        for s in ps.started:
            s.stop()
