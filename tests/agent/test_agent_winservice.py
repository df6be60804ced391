"""The Windows service's logic that does not need Windows (agent/cli/winservice.py), on Linux.

The Service Control Manager is replaced by a fake at the ServiceManager boundary that moves
through pending states like the real one; the run loop is the real AgentService.run_forever
against a real collector (tests/e2e/harness.py), stopped by the stop event.
"""
from __future__ import annotations

import io
import signal
import string
import sys
import threading
import time

import pytest

from agent.cli import service_host as host
from agent.cli import winservice as ws
from tests.e2e.harness import Agent, Collector

STOP_WITHIN = 5.0   # seconds from the stop request to run() returning


class FakeSCM:
    """A service control manager: states move through *_pending for `pending` status queries."""

    def __init__(self, state: str = host.NOT_INSTALLED, pending: int = 2, stuck: str | None = None) -> None:
        self.state = state
        self.pending = pending
        self.stuck = stuck           # a state the service never leaves (a hung service)
        self.calls: list[str] = []
        self.spec: host.ServiceSpec | None = None
        self._left = 0
        self._target: str | None = None
        self.hosted: host.ServiceRunner | None = None

    def _move(self, via: str, to: str) -> None:
        self.state, self._target, self._left = via, to, self.pending

    def install(self, spec: host.ServiceSpec) -> None:
        self.calls.append("install")
        self.spec, self.state = spec, host.STOPPED

    def remove(self, name: str) -> None:
        self.calls.append("remove")
        assert self.state == host.STOPPED, "the SCM removes a stopped service only (here)"
        self.state = host.NOT_INSTALLED

    def start(self, name: str) -> None:
        self.calls.append("start")
        assert self.state == host.STOPPED, f"start while {self.state}"
        self._move(host.START_PENDING, host.RUNNING)

    def stop(self, name: str) -> None:
        self.calls.append("stop")
        assert self.state == host.RUNNING, f"stop while {self.state}"
        self._move(host.STOP_PENDING, host.STOPPED)

    def status(self, name: str) -> str:
        assert name == host.SERVICE_NAME
        self.calls.append("status")
        if self._target and self.state != self.stuck:
            self._left -= 1
            if self._left <= 0:
                self.state, self._target = self._target, None
        return self.state

    def host(self, runner: host.ServiceRunner) -> int:
        self.calls.append("host")
        self.hosted = runner
        return 0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, s: float) -> None:
        self.now += s

    def __call__(self) -> float:
        return self.now


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str]] = []

    def write(self, level: str, event_id: int, message: str) -> None:
        self.seen.append((level, event_id, message))

    def ids(self) -> list[int]:
        return [e[1] for e in self.seen]


def run_cli(*argv: str, scm: FakeSCM | None = None) -> tuple[int, str, str, FakeSCM]:
    scm = scm if scm is not None else FakeSCM()
    out, err = io.StringIO(), io.StringIO()
    clock = FakeClock()
    code = ws.main(list(argv), manager=scm, out=out, err=err, sleep=clock.sleep, clock=clock)
    return code, out.getvalue(), err.getvalue(), scm


# --------------------------------------------------------------------------- command handling

def test_unknown_command_is_a_clear_usage_error_with_exit_code_2():
    scm = FakeSCM(host.RUNNING)
    code, out, err, _ = run_cli("frobnicate", scm=scm)
    assert code == 2
    assert "unknown command 'frobnicate'" in err and "install, start, stop, restart" in err
    assert "usage:" in err and out == ""
    assert scm.calls == []            # nothing was asked of the service manager


@pytest.mark.parametrize("argv, needle", [
    ((), "usage:"),
    (("start", "--timeout", "soon"), "invalid float value"),
    (("install", "--startup", "sometimes"), "invalid choice"),
    (("stop", "--no-such-option"), "unrecognized arguments"),
    (("service",), "service needs --config"),
])
def test_bad_invocations_exit_2_and_say_why(argv, needle):
    code, out, err, scm = run_cli(*argv, scm=FakeSCM(host.RUNNING))
    assert code == 2 and needle in err
    assert "stop" not in scm.calls and "start" not in scm.calls


def test_install_writes_a_windows_quoted_command_line_with_the_config():
    code, out, err, scm = run_cli(
        "install", "--config", r"C:\ProgramData\certfleet\agent.toml", "--startup", "delayed",
        "--executable", r"C:\Program Files\certfleet\agent\certfleet-agent-service.exe")
    assert code == 0, err
    spec = scm.spec
    assert spec is not None and spec.name == "certfleet-agent" and spec.startup == "delayed"
    assert spec.arguments == ("service", "--config", r"C:\ProgramData\certfleet\agent.toml")
    assert spec.command_line == (r'"C:\Program Files\certfleet\agent\certfleet-agent-service.exe" '
                                 r"service --config C:\ProgramData\certfleet\agent.toml")
    assert "installed (delayed start)" in out
    # installing twice is refused, with what to do instead
    code, out, err, _ = run_cli("install", scm=scm)
    assert code == 1 and "already installed" in err and "remove" in err


def test_start_waits_until_running_and_is_idempotent():
    code, out, err, scm = run_cli("start", scm=FakeSCM(host.STOPPED, pending=3))
    assert code == 0 and "started" in out
    assert scm.state == host.RUNNING and scm.calls.count("start") == 1
    code, out, err, scm = run_cli("start", scm=scm)
    assert code == 0 and "already running" in out and scm.calls.count("start") == 1


def test_stop_waits_until_stopped_and_reports_a_hung_service():
    code, out, err, scm = run_cli("stop", scm=FakeSCM(host.RUNNING))
    assert code == 0 and scm.state == host.STOPPED and "stopped" in out
    code, out, err, scm = run_cli("stop", scm=scm)
    assert code == 0 and "not running" in out and scm.calls.count("stop") == 1
    hung = FakeSCM(host.RUNNING, stuck=host.STOP_PENDING)
    code, out, err, _ = run_cli("stop", "--timeout", "5", scm=hung)
    assert code == 1 and "did not stop within 5s (now stop_pending)" in err


def test_restart_is_stop_then_start():
    code, out, err, scm = run_cli("restart", scm=FakeSCM(host.RUNNING, pending=2))
    assert code == 0, err
    assert scm.state == host.RUNNING
    actions = [c for c in scm.calls if c != "status"]
    assert actions == ["stop", "start"]
    # start was asked only after the service had reached stopped
    i_start = scm.calls.index("start")
    assert scm.calls[i_start - 1] == "status" and "stopped" in out.splitlines()[0]
    # a stopped service: restart just starts it
    code, out, err, scm = run_cli("restart", scm=FakeSCM(host.STOPPED))
    assert code == 0 and [c for c in scm.calls if c != "status"] == ["start"]


def test_remove_stops_first_and_status_exit_codes():
    code, out, err, scm = run_cli("status", scm=FakeSCM(host.RUNNING))
    assert (code, out.strip()) == (0, "certfleet-agent: running")
    code, out, err, scm = run_cli("remove", scm=FakeSCM(host.RUNNING))
    assert code == 0 and [c for c in scm.calls if c != "status"] == ["stop", "remove"]
    assert "configuration and data are kept" in out
    code, out, err, _ = run_cli("status", scm=scm)
    assert (code, out.strip()) == (3, "certfleet-agent: not installed")
    code, out, err, _ = run_cli("start", scm=scm)
    assert code == 1 and "not installed" in err


def test_service_command_hands_the_runner_to_the_boundary(tmp_path):
    code, out, err, scm = run_cli("service", "--config", str(tmp_path / "agent.toml"), scm=FakeSCM(host.RUNNING))
    assert code == 0 and scm.calls == ["host"]
    assert scm.hosted is not None and scm.hosted.config_path == tmp_path / "agent.toml"


@pytest.mark.skipif(sys.platform == "win32", reason="checks the message given off Windows")
def test_without_a_manager_off_windows_the_error_says_so():
    err = io.StringIO()
    code = ws.main(["status"], out=io.StringIO(), err=err)
    assert code == 1 and "run on Windows only" in err.getvalue()


def test_winservice_imports_without_pywin32():
    assert "win32service" not in sys.modules and "servicemanager" not in sys.modules


# --------------------------------------------------------------------------- event log mapping

def test_every_event_has_a_level_a_unique_id_and_formats():
    ids = [e.event_id for e in host.EVENTS.values()]
    assert len(ids) == len(set(ids))
    fields = {"version": "1", "agent_id": "a", "endpoint": "h:1", "interval": "900", "config": "c",
              "reason": "r", "error": "e", "log_file": "l"}
    for name, ev in host.EVENTS.items():
        assert ev.level in (host.INFO, host.WARNING, host.ERROR)
        used = {f for _, f, _, _ in string.Formatter().parse(ev.text) if f}
        assert used <= set(fields), name
        ev.text.format(**fields)
    assert host.EVENTS["crashed"].level == host.ERROR and host.EVENTS["stopped"].level == host.INFO


def test_runner_reports_a_config_error_and_a_host_not_enrolled(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[agent]\nscan_interval = \"soon\"\n")
    events = Events()
    assert host.ServiceRunner(bad, events).run() == 1
    assert events.seen[0][:2] == (host.ERROR, 200) and "scan_interval" in events.seen[0][2]

    good = tmp_path / "agent.toml"
    good.write_text(f'[agent]\ndata_dir = "{tmp_path / "data"}"\n')
    events = Events()
    assert host.ServiceRunner(good, events).run() == 1
    level, event_id, message = events.seen[0]
    assert (level, event_id) == (host.ERROR, 201)
    assert "not enrolled" in message and f'--config "{good}"' in message


# --------------------------------------------------------------------------- the run loop, for real

@pytest.fixture(scope="module")
def enrolled(tmp_path_factory):
    """A real collector and an agent enrolled with it (one certificate in a PEM store)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import datetime as dt

    work = tmp_path_factory.mktemp("winservice")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "winservice.test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=10)).sign(key, hashes.SHA256()))
    (work / "stores").mkdir()
    (work / "stores/web.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    collector = Collector(work / "collector")
    collector.start()
    try:
        assert collector.init_admin().code == 0
        agent = Agent(work / "agent", f'[[store]]\nname = "web"\ntype = "pem"\npaths = ["{work / "stores"}/*.pem"]\n')
        agent.write_config(hostname="winservice-test-host")
        r = agent.enroll(collector, collector.token())
        assert r.code == 0, r.err
        yield collector, agent
    finally:
        collector.stop()


def run_in_thread(runner: host.ServiceRunner) -> tuple[threading.Thread, dict]:
    result: dict = {}
    t = threading.Thread(target=lambda: result.setdefault("code", runner.run()), daemon=True)
    t.start()
    assert runner.ready.wait(30), "the agent did not start"
    return t, result


def stop_and_time(runner: host.ServiceRunner, t: threading.Thread) -> float:
    started = time.monotonic()
    runner.request_stop("test")
    t.join(STOP_WITHIN + 10)
    return time.monotonic() - started


def test_stop_event_ends_run_forever_after_it_reported(enrolled):
    collector, agent = enrolled
    events = Events()
    runner = host.ServiceRunner(agent.config, events)
    t, result = run_in_thread(runner)
    # the real service loop reports to the real collector
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        agents = collector.cli("agents", "list", "--format", "json").json()
        if agents and agents[0]["locations"] >= 1:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the service did not report: {agents}")
    took = stop_and_time(runner, t)
    assert not t.is_alive() and result["code"] == 0
    assert took < STOP_WITHIN, f"run_forever returned {took:.1f}s after the stop request"
    assert events.ids() == [100, 101, 102]            # started, stopping, stopped
    assert agents[0]["hostname"] == "winservice-test-host"


def test_stop_event_ends_run_forever_while_the_collector_is_away(enrolled, tmp_path):
    collector, agent = enrolled
    # the same identity, but a collector endpoint nobody listens on: every sync fails, the loop backs off
    import json
    import shutil

    data = tmp_path / "data"
    shutil.copytree(agent.workdir / "data" / "identity", data / "identity")
    meta = json.loads((data / "identity/collector.json").read_text())
    meta["endpoint"] = "127.0.0.1:9"
    (data / "identity/collector.json").write_text(json.dumps(meta))
    config = tmp_path / "agent.toml"
    config.write_text(agent.config.read_text().replace(str(agent.workdir / "data"), str(data)))
    events = Events()
    runner = host.ServiceRunner(config, events)
    t, result = run_in_thread(runner)
    time.sleep(3)                                      # first sync failed; now in backoff
    took = stop_and_time(runner, t)
    assert not t.is_alive() and result["code"] == 0
    assert took < STOP_WITHIN, f"run_forever returned {took:.1f}s after the stop request"
    assert events.ids() == [100, 101, 102]


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs POSIX signals")
def test_debug_command_runs_in_the_console_and_ctrl_c_stops_it(enrolled):
    collector, agent = enrolled
    out, err = io.StringIO(), io.StringIO()
    handler_in_place = threading.Event()
    main_thread = threading.get_ident()

    def press_ctrl_c() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            time.sleep(0.05)
        handler_in_place.set()
        time.sleep(1.5)
        signal.pthread_kill(main_thread, signal.SIGINT)

    events = Events()
    threading.Thread(target=press_ctrl_c, daemon=True).start()
    started = time.monotonic()
    code = ws.main(["debug", "--config", str(agent.config)], manager=FakeSCM(), out=out, err=err, events=events)
    assert handler_in_place.is_set()
    assert code == 0 and events.ids() == [100, 101, 102]
    assert "Ctrl+C" in events.seen[1][2]
    assert time.monotonic() - started < 30
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # put back
