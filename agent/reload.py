"""Run a reload action from the agent's own configuration.

Only ``[reload.<name>]`` actions exist (see :class:`agent.config.ReloadAction`):
an argument list run without a shell, with a timeout, a minimal environment
(PATH and LANG only: nothing of the agent's environment, which may hold
password variables, leaks into it), stdin from /dev/null and its output
captured in temporary files (so a command that leaves a daemon holding its
output open cannot hang the agent). A non-zero exit, a timeout or a command
that cannot start raises :class:`~agent.errors.ReloadFailed` with the exit
code and the end of its stderr: a failed reload fails the install.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass

from agent.config import ReloadAction
from agent.errors import ReloadFailed

__all__ = ["ReloadOutcome", "run_reload", "SAFE_PATH", "tail"]

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_TAIL_CHARS = 1500


@dataclass(frozen=True)
class ReloadOutcome:
    """A reload that succeeded (exit 0)."""

    action: str
    command: tuple[str, ...]
    exit_code: int
    seconds: float
    stdout_tail: str
    stderr_tail: str


def tail(raw: bytes, limit: int = _TAIL_CHARS) -> str:
    """The end of a command's output as text: at most ``limit`` characters, whole lines where possible."""
    text = raw.decode("utf-8", "replace").strip()
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    nl = cut.find("\n")
    return "..." + (cut[nl + 1:] if 0 <= nl < len(cut) - 1 else cut)


def _environment() -> dict[str, str]:
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8"}
    if os.name == "nt":  # pragma: no cover - Windows needs these to start anything
        for k in ("SYSTEMROOT", "WINDIR", "COMSPEC", "PATHEXT"):
            if k in os.environ:
                env[k] = os.environ[k]
        env["PATH"] = os.environ.get("PATH", "")
    return env


def _short(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return " | ".join(lines[-3:]) if lines else "(no error output)"


def run_reload(action: ReloadAction) -> ReloadOutcome:
    """Run ``action``; return its outcome, or raise ReloadFailed (exit code, stderr tail, timed out)."""
    argv = list(action.command)
    prog = os.path.basename(argv[0])
    env = _environment()
    if os.sep not in argv[0] and (os.altsep is None or os.altsep not in argv[0]):
        found = shutil.which(argv[0], path=env["PATH"])
        if found is None:
            raise ReloadFailed(f"{prog}: command not found (searched {env['PATH']})")
        argv[0] = found
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, shell=False,
                close_fds=True, start_new_session=(os.name == "posix"),
            )
        except OSError as e:
            raise ReloadFailed(f"{prog}: cannot be started: {e.strerror or e}") from None
        try:
            code = proc.wait(timeout=action.timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            err.seek(0)
            stderr = tail(err.read())
            raise ReloadFailed(
                f"{prog} did not finish within {action.timeout:g} s (stopped)", None, stderr, timed_out=True,
            ) from None
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = tail(out.read()), tail(err.read())
    if code != 0:
        shown = f"signal {-code}" if code < 0 else f"exit {code}"
        raise ReloadFailed(f"{prog} {shown}: {_short(stderr)}", code, stderr)
    return ReloadOutcome(action.name, tuple(action.command), code, seconds, stdout, stderr)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Stop a timed-out reload command and whatever it started in its session."""
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)     # its own session: the group id is its pid
        else:  # pragma: no cover
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover
        pass
