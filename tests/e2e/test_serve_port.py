"""``certfleet-collector serve`` where its address is taken: one line naming the address, a
non-zero exit, no traceback; also when the address is held by another collector (grpc would
otherwise share it through SO_REUSEPORT and start silently)."""
from __future__ import annotations

import pathlib
import socket
import subprocess

from tests.e2e.harness import BIN, Collector


def _serve(c: Collector, listen: str, enroll: str) -> subprocess.CompletedProcess:
    c.workdir.mkdir(parents=True, exist_ok=True)
    c.config.write_text(f'[collector]\ndata_dir = "{c.workdir / "data"}"\nlisten = "{listen}"\n'
                        f'enroll_listen = "{enroll}"\n')
    return subprocess.run([str(BIN / "certfleet-collector"), "serve", "--config", str(c.config)],
                          capture_output=True, text=True, timeout=60, env=c.env)


def _one_error_line(r: subprocess.CompletedProcess) -> str:
    lines = [x for x in r.stderr.splitlines() if " INFO " not in x]   # the log's start-up lines aside
    assert r.returncode != 0 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def test_a_port_in_use_is_one_line_naming_the_address(tmp_path: pathlib.Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        c = Collector(tmp_path / "c")
        line = _one_error_line(_serve(c, f"127.0.0.1:{port}", f"127.0.0.1:{c.enroll_port}"))
        assert line.startswith(f"certfleet-collector: cannot listen on 127.0.0.1:{port} (listen): "), line
        assert "already in use" in line
        line = _one_error_line(_serve(c, f"127.0.0.1:{c.port}", f"127.0.0.1:{port}"))
        assert f"cannot listen on 127.0.0.1:{port} (enroll_listen)" in line


def test_a_second_collector_on_the_same_address_does_not_start(tmp_path: pathlib.Path) -> None:
    first = Collector(tmp_path / "first")
    first.start()
    try:
        second = Collector(tmp_path / "second")
        line = _one_error_line(_serve(second, f"127.0.0.1:{first.port}", f"127.0.0.1:{second.enroll_port}"))
        assert f"cannot listen on 127.0.0.1:{first.port}" in line
        assert first.proc is not None and first.proc.poll() is None    # the first one keeps serving
    finally:
        first.stop()
