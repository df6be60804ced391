"""A PostgreSQL server of the test's own, to stop and start under a running collector.

The machine's PostgreSQL (CERTFLEET_TEST_PG_URL) is shared and never touched; chaos tests make
their own: ``initdb`` into a temporary directory, ``postgres`` on a free loopback port, stopped
and started again by its process id (:meth:`OwnPostgres.stop`, :meth:`OwnPostgres.start`).
As root, the server runs as the ``postgres`` user (PostgreSQL refuses to run as root).

If no PostgreSQL binaries are installed the test is skipped with the reason, or fails when
CERTFLEET_REQUIRE_POSTGRES=1 (as in CI).
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.helpers.registry_backends import REQUIRE_PG


def _bindir() -> Path | None:
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if os.access(os.path.join(d, "initdb"), os.X_OK) and os.access(os.path.join(d, "postgres"), os.X_OK):
            return Path(d)
    return None


class OwnPostgres:
    def __init__(self) -> None:
        bindir = _bindir()
        if bindir is None:
            msg = "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb)"
            if REQUIRE_PG:
                pytest.fail(msg + " (CERTFLEET_REQUIRE_POSTGRES=1)", pytrace=False)
            pytest.skip(msg)
        self.bindir = bindir
        # a directory of its own under the system's temporary directory: the server's user must
        # reach it (pytest's tmp_path is private to the user running the tests)
        self.root = root = Path(tempfile.mkdtemp(prefix="certfleet-pg-"))
        self.data = root / "pgdata"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(root, pw.pw_uid, pw.pw_gid)
        subprocess.run([str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                        "--no-sync", "-E", "UTF8"], check=True, capture_output=True, user=self.user, cwd=root)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        assert self.proc is None, "already running"
        log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 - the server's, closed with it
        self.proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
             "-k", str(self.root), "-c", "fsync=off", "-c", "max_connections=100"],
            stdout=log, stderr=log, user=self.user, cwd=self.root)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = subprocess.run([str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
                               check=False)
            if r.returncode == 0:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.root / 'postgres.log').read_text()[-2000:]}")
            time.sleep(0.1)
        raise RuntimeError("postgres did not start in 30 s")

    def stop(self) -> None:
        """Stop the server by its process id (fast shutdown: open sessions are cut)."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGQUIT)
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
