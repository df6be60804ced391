"""Reload actions: argument lists, no shell, a timeout, a minimal environment, failures with their stderr."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from agent.config import ReloadAction
from agent.errors import ReloadFailed
from agent.reload import run_reload


def _py(code: str, timeout: float = 10.0) -> ReloadAction:
    return ReloadAction("test", (sys.executable, "-c", code), timeout)


def test_success_reports_time_and_output() -> None:
    out = run_reload(_py("print('reloaded')"))
    assert out.exit_code == 0 and out.stdout_tail == "reloaded" and 0 < out.seconds < 10


def test_non_zero_exit_fails_with_code_and_stderr_tail() -> None:
    code = "import sys\nfor i in range(500): sys.stderr.write(f'line {i}\\n')\nsys.exit(4)"
    with pytest.raises(ReloadFailed) as e:
        run_reload(_py(code))
    prog = os.path.basename(sys.executable)
    assert e.value.exit_code == 4 and not e.value.timed_out
    assert str(e.value) == f"{prog} exit 4: line 497 | line 498 | line 499"
    assert e.value.stderr_tail.endswith("line 499") and len(e.value.stderr_tail) <= 1504


def test_timeout_stops_the_command_and_what_it_started(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    code = ("import subprocess, sys, time\n"
            f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            f"open({str(marker)!r}, 'w').write(str(p.pid))\n"
            "time.sleep(60)")
    t0 = time.monotonic()
    with pytest.raises(ReloadFailed) as e:
        run_reload(_py(code, timeout=1.0))
    assert time.monotonic() - t0 < 8
    assert e.value.timed_out and e.value.exit_code is None
    assert "did not finish within 1 s (stopped)" in str(e.value)
    child = int(marker.read_text())
    for _ in range(100):                     # the grandchild was in the command's session: killed too
        try:
            state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            break
        if state in ("Z", "X"):              # killed, not yet reaped by init
            break
        time.sleep(0.05)
    else:
        pytest.fail("the reload command's child survived the timeout")


def test_no_shell_and_a_minimal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_KS_PASS", "s3cret-in-env")
    out = run_reload(_py("import os, sys; print(sorted(os.environ)); print(sys.argv[1:])"))
    assert "APP_KS_PASS" not in out.stdout_tail and "s3cret" not in out.stdout_tail
    assert out.stdout_tail.splitlines()[0] in ("['LANG', 'PATH']", "['LANG', 'LC_CTYPE', 'PATH']")
    # shell syntax is just an argument
    out = run_reload(ReloadAction("echo", ("echo", "a && rm -rf /nonexistent; $HOME"), 5))
    assert out.stdout_tail == "a && rm -rf /nonexistent; $HOME"


def test_missing_command() -> None:
    with pytest.raises(ReloadFailed, match=r"^no-such-reloader: command not found"):
        run_reload(ReloadAction("x", ("no-such-reloader", "reload"), 5))
    with pytest.raises(ReloadFailed, match=r"^missing: cannot be started"):
        run_reload(ReloadAction("x", ("/nonexistent/missing",), 5))
