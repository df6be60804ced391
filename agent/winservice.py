"""The agent as a Windows service.

::

    certfleet-agent-service.exe install [--config PATH] [--startup auto|delayed|manual|disabled] [--log-file PATH]
    certfleet-agent-service.exe start | stop | restart | status | remove   [--timeout SECONDS]
    certfleet-agent-service.exe debug [--config PATH]     # in this console; Ctrl+C stops it
    certfleet-agent-service.exe service --config PATH     # what the Service Control Manager runs

Everything here except :class:`WindowsServiceManager` and :func:`host_windows_service` is plain
Python and is tested on Linux: the command handling (parsing, dispatch to a small
:class:`ServiceManager` boundary, exit codes), the run loop (:class:`ServiceRunner`: the real
:meth:`agent.service.AgentService.run_forever` with a stop event), and which event-log message
each happening writes (:data:`EVENTS`). pywin32 (``win32serviceutil``, ``win32service``,
``servicemanager``, ``win32evtlogutil``) is imported only inside the Windows-only boundary.

Exit codes: 0 done (also: ``start`` of a running service, ``stop`` of a stopped one);
1 the operation failed (the reason on stderr); 2 usage error (unknown command, bad option);
3 ``status`` of a service that is not running or not installed.
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, TextIO

from agent import __version__

log = logging.getLogger("certfleet.agent.winservice")

SERVICE_NAME = "certfleet-agent"
DISPLAY_NAME = "certfleet agent"
DESCRIPTION = (
    "Finds the certificates on this host, reports them to the certfleet collector and installs "
    "renewed certificates. Configuration: %ProgramData%\\certfleet\\agent.toml."
)
COMMANDS = ("install", "start", "stop", "restart", "status", "remove", "debug", "service")
STARTUP_TYPES = ("auto", "delayed", "manual", "disabled")
DEFAULT_TIMEOUT = 60.0
# How long the Service Control Manager is told a stop may take. The run loop checks the stop
# event at least once a second while it waits; a scan or report under way finishes first.
STOP_WAIT_HINT_MS = 30_000

# service states as the boundary reports them
RUNNING, STOPPED, START_PENDING, STOP_PENDING, NOT_INSTALLED = (
    "running", "stopped", "start_pending", "stop_pending", "not_installed")


def program_data() -> Path:
    return Path(os.environ.get("ProgramData") or r"C:\ProgramData") / "certfleet"


def default_config() -> Path:
    return program_data() / "agent.toml"


def default_log_file() -> Path:
    return program_data() / "logs" / "agent.log"


# --------------------------------------------------------------------------- event log messages

INFO, WARNING, ERROR = "info", "warning", "error"


@dataclass(frozen=True)
class Event:
    level: str        # info | warning | error: the event log entry type
    event_id: int     # stable, for monitoring rules
    text: str         # str.format template


EVENTS: dict[str, Event] = {
    "started": Event(INFO, 100, "certfleet agent {version} started as agent {agent_id}: reporting to {endpoint} "
                                "every {interval}s (config {config})"),
    "stopping": Event(INFO, 101, "certfleet agent stopping: {reason}"),
    "stopped": Event(INFO, 102, "certfleet agent stopped"),
    "config_error": Event(ERROR, 200, "certfleet agent cannot start: configuration error: {error}"),
    "not_enrolled": Event(ERROR, 201, "certfleet agent cannot start: {error}. Enroll this host first: "
                                      "certfleet-agent.exe enroll --config \"{config}\" --collector HOST:PORT "
                                      "--token TOKEN --ca-fingerprint SHA256"),
    "crashed": Event(ERROR, 202, "certfleet agent stopped on an unexpected error: {error} (details in {log_file})"),
}


class EventSink(Protocol):
    def write(self, level: str, event_id: int, message: str) -> None: ...


class LoggingEvents:
    """Events to the Python log (the console in debug mode, the log file as a service)."""

    def write(self, level: str, event_id: int, message: str) -> None:
        log.log({INFO: logging.INFO, WARNING: logging.WARNING}.get(level, logging.ERROR), "[%d] %s", event_id, message)


def emit(sink: EventSink, name: str, **fields: object) -> str:
    """Write event ``name`` (a key of :data:`EVENTS`) to ``sink``; returns the message."""
    ev = EVENTS[name]
    message = ev.text.format(**fields)
    sink.write(ev.level, ev.event_id, message)
    return message


# --------------------------------------------------------------------------- the run loop

class ServiceRunner:
    """Runs :meth:`AgentService.run_forever` until :meth:`request_stop`; maps outcomes to events.

    ``run`` returns 0 after a requested stop, 1 when the agent cannot start (config error, not
    enrolled) or stopped on an unexpected error. Nothing here needs Windows.
    """

    def __init__(
        self, config_path: Path, events: EventSink, *,
        service_factory: Callable | None = None, log_file: Path | None = None,
    ) -> None:
        self.config_path = Path(config_path)
        self.events = events
        self.stop_event = threading.Event()
        self.service_factory = service_factory
        self.log_file = log_file or default_log_file()
        self.ready = threading.Event()     # set once the agent runs (tests, debug output)

    def request_stop(self, reason: str = "stop requested") -> None:
        if not self.stop_event.is_set():
            emit(self.events, "stopping", reason=reason)
        self.stop_event.set()

    def run(self) -> int:
        from agent.config import load_config
        from agent.errors import AgentError, ConfigError, IdentityError

        try:
            config = load_config(self.config_path)
        except ConfigError as e:
            emit(self.events, "config_error", error=e)
            return 1
        try:
            if self.service_factory is None:
                from agent.service import AgentService

                service = AgentService(config)
            else:
                service = self.service_factory(config)
        except IdentityError as e:
            emit(self.events, "not_enrolled", error=e, config=self.config_path)
            return 1
        except AgentError as e:
            emit(self.events, "crashed", error=e, log_file=self.log_file)
            return 1
        emit(self.events, "started", version=__version__, agent_id=service.identity.agent_id,
             endpoint=service.identity.endpoint, interval=f"{float(config.scan_interval):.0f}", config=self.config_path)
        self.ready.set()
        try:
            service.run_forever(self.stop_event, rng=random.Random())
        except Exception as e:  # noqa: BLE001 - the event log must say why the service ended
            log.exception("the agent stopped on an unexpected error")
            emit(self.events, "crashed", error=f"{type(e).__name__}: {e}", log_file=self.log_file)
            return 1
        emit(self.events, "stopped")
        return 0


# --------------------------------------------------------------------------- the boundary

class ServiceError(Exception):
    """A service operation failed; the message is safe to show."""


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    display_name: str
    description: str
    executable: str             # the frozen certfleet-agent-service.exe
    arguments: tuple[str, ...]  # what the SCM passes it: ("service", "--config", PATH)
    startup: str = "auto"

    @property
    def command_line(self) -> str:
        """The service's ImagePath, quoted by Windows rules (paths with spaces stay one argument)."""
        return subprocess.list2cmdline([self.executable, *self.arguments])

    @property
    def argument_line(self) -> str:
        return subprocess.list2cmdline(list(self.arguments))


class ServiceManager(Protocol):
    """What the commands need from the Service Control Manager."""

    def install(self, spec: ServiceSpec) -> None: ...
    def remove(self, name: str) -> None: ...
    def start(self, name: str) -> None: ...
    def stop(self, name: str) -> None: ...                 # ask; do not wait
    def status(self, name: str) -> str: ...                # RUNNING, STOPPED, ... or NOT_INSTALLED
    def host(self, runner: ServiceRunner) -> int: ...      # be the service process (SCM start)


def wait_for(manager: ServiceManager, name: str, wanted: str, timeout: float,
             sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> str:
    """Poll until the service is in state ``wanted``; returns the last state seen."""
    deadline = clock() + timeout
    state = manager.status(name)
    while state != wanted and clock() < deadline:
        sleep(0.25)
        state = manager.status(name)
    return state


# --------------------------------------------------------------------------- commands

class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _parser(command: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"certfleet-agent-service {command}", add_help=False)
    if command in ("install", "debug", "service"):
        p.add_argument("--config", default=None, help="agent TOML config")
    if command == "install":
        p.add_argument("--startup", choices=STARTUP_TYPES, default="auto")
        p.add_argument("--executable", default=None, help=argparse.SUPPRESS)
    if command in ("install", "service", "debug"):
        p.add_argument("--log-file", default=None, help="the service log file (default: ProgramData/certfleet/logs/agent.log)")
    if command in ("start", "stop", "restart", "remove"):
        p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    return p


def usage() -> str:
    return (
        "usage: certfleet-agent-service COMMAND [options]\n"
        "  install [--config PATH] [--startup auto|delayed|manual|disabled] [--log-file PATH]\n"
        "  start | stop | restart | remove [--timeout SECONDS]\n"
        "  status\n"
        "  debug [--config PATH]          run in this console; Ctrl+C stops it\n"
        "  service --config PATH          (run by the Service Control Manager)\n"
    )


class Commands:
    def __init__(self, manager: ServiceManager, out: TextIO, err: TextIO, *,
                 events: EventSink | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.manager = manager
        self.out, self.err = out, err
        self.events = events or LoggingEvents()
        self.sleep, self.clock = sleep, clock

    def _wait(self, wanted: str, timeout: float) -> str:
        return wait_for(self.manager, SERVICE_NAME, wanted, timeout, self.sleep, self.clock)

    def install(self, ns: argparse.Namespace) -> int:
        config = Path(ns.config) if ns.config else default_config()
        executable = ns.executable or sys.executable
        if self.manager.status(SERVICE_NAME) != NOT_INSTALLED:
            raise ServiceError(f"service {SERVICE_NAME} is already installed: run `remove` first to change it, "
                               "or `restart` to pick up a changed configuration file")
        arguments = ("service", "--config", str(config)) + (("--log-file", ns.log_file) if ns.log_file else ())
        spec = ServiceSpec(SERVICE_NAME, DISPLAY_NAME, DESCRIPTION, str(executable), arguments, ns.startup)
        self.manager.install(spec)
        print(f"service {SERVICE_NAME} installed ({ns.startup} start): {spec.command_line}", file=self.out)
        return 0

    def start(self, ns: argparse.Namespace) -> int:
        state = self.manager.status(SERVICE_NAME)
        if state == NOT_INSTALLED:
            raise ServiceError(f"service {SERVICE_NAME} is not installed")
        if state == RUNNING:
            print(f"service {SERVICE_NAME} is already running", file=self.out)
            return 0
        self.manager.start(SERVICE_NAME)
        state = self._wait(RUNNING, ns.timeout)
        if state != RUNNING:
            raise ServiceError(f"service {SERVICE_NAME} did not start within {ns.timeout:.0f}s (now {state}); "
                               "see the Application event log, source certfleet-agent")
        print(f"service {SERVICE_NAME} started", file=self.out)
        return 0

    def stop(self, ns: argparse.Namespace) -> int:
        state = self.manager.status(SERVICE_NAME)
        if state == NOT_INSTALLED:
            raise ServiceError(f"service {SERVICE_NAME} is not installed")
        if state == STOPPED:
            print(f"service {SERVICE_NAME} is not running", file=self.out)
            return 0
        if state != STOP_PENDING:
            self.manager.stop(SERVICE_NAME)
        state = self._wait(STOPPED, ns.timeout)
        if state != STOPPED:
            raise ServiceError(f"service {SERVICE_NAME} did not stop within {ns.timeout:.0f}s (now {state})")
        print(f"service {SERVICE_NAME} stopped", file=self.out)
        return 0

    def restart(self, ns: argparse.Namespace) -> int:
        self.stop(ns)
        return self.start(ns)

    def status(self, ns: argparse.Namespace) -> int:
        state = self.manager.status(SERVICE_NAME)
        print(f"{SERVICE_NAME}: {state.replace('_', ' ')}", file=self.out)
        return 0 if state == RUNNING else 3

    def remove(self, ns: argparse.Namespace) -> int:
        state = self.manager.status(SERVICE_NAME)
        if state == NOT_INSTALLED:
            print(f"service {SERVICE_NAME} is not installed", file=self.out)
            return 0
        if state != STOPPED:
            self.stop(ns)
        self.manager.remove(SERVICE_NAME)
        print(f"service {SERVICE_NAME} removed (configuration and data are kept)", file=self.out)
        return 0

    def _runner(self, ns: argparse.Namespace) -> ServiceRunner:
        config = Path(ns.config) if ns.config else default_config()
        log_file = Path(ns.log_file) if ns.log_file else None
        return ServiceRunner(config, self.events, log_file=log_file)

    def debug(self, ns: argparse.Namespace) -> int:
        """Run the agent in this console: the same runner as the service, Ctrl+C is the stop request."""
        import signal

        runner = self._runner(ns)
        previous = signal.signal(signal.SIGINT, lambda *_: runner.request_stop("Ctrl+C"))
        try:
            return runner.run()
        finally:
            signal.signal(signal.SIGINT, previous)

    def service(self, ns: argparse.Namespace) -> int:
        if not ns.config:
            raise UsageError("service needs --config PATH (install writes it into the service's command line)")
        return self.manager.host(self._runner(ns))


def main(argv: list[str] | None = None, manager: ServiceManager | None = None,
         out: TextIO = sys.stdout, err: TextIO = sys.stderr, **kwargs: object) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        (out if args else err).write(usage())
        return 0 if args else 2
    if args[0] == "--version":
        print(f"certfleet-agent-service {__version__}", file=out)
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"certfleet-agent-service: unknown command {command!r}; use one of: {', '.join(COMMANDS)}", file=err)
        err.write(usage())
        return 2
    try:
        ns = _parser(command).parse_args(rest)
    except UsageError as e:
        print(f"certfleet-agent-service {command}: {e}", file=err)
        return 2
    try:
        if manager is None:
            manager = WindowsServiceManager()
        commands = Commands(manager, out, err, **kwargs)  # type: ignore[arg-type]
        return getattr(commands, command)(ns)
    except UsageError as e:
        print(f"certfleet-agent-service {command}: {e}", file=err)
        return 2
    except ServiceError as e:
        print(f"certfleet-agent-service {command}: {e}", file=err)
        return 1


# --------------------------------------------------------------------------- Windows only

class WindowsServiceManager:
    """The Service Control Manager through pywin32. Windows only; not run on Linux."""

    def __init__(self) -> None:
        if sys.platform != "win32":
            raise ServiceError("the Windows service commands run on Windows only "
                               "(on Linux the agent runs under systemd: certfleet-agent.service)")
        import win32service  # noqa: F401 - fail early and clearly when pywin32 is missing

    @staticmethod
    def _error(what: str, e: Exception) -> ServiceError:
        return ServiceError(f"{what}: {getattr(e, 'strerror', None) or e} (error {getattr(e, 'winerror', '?')})")

    def install(self, spec: ServiceSpec) -> None:
        import servicemanager
        import win32evtlogutil
        import win32service
        import win32serviceutil

        start = {"auto": win32service.SERVICE_AUTO_START, "delayed": win32service.SERVICE_AUTO_START,
                 "manual": win32service.SERVICE_DEMAND_START, "disabled": win32service.SERVICE_DISABLED}[spec.startup]
        try:
            win32serviceutil.InstallService(
                None, spec.name, spec.display_name, startType=start, exeName=spec.executable,
                exeArgs=spec.argument_line, description=spec.description,
                delayedstart=True if spec.startup == "delayed" else None,
            )
        except win32service.error as e:
            raise self._error(f"cannot install service {spec.name}", e) from None
        # the event source: messages of servicemanager's own message table (LogInfoMsg & co.)
        win32evtlogutil.AddSourceToRegistry(spec.name, servicemanager.__file__)

    def remove(self, name: str) -> None:
        import win32service
        import win32serviceutil

        try:
            win32serviceutil.RemoveService(name)     # also removes the event source
        except win32service.error as e:
            raise self._error(f"cannot remove service {name}", e) from None

    def start(self, name: str) -> None:
        import win32service
        import win32serviceutil

        try:
            win32serviceutil.StartService(name)
        except win32service.error as e:
            if getattr(e, "winerror", None) != 1056:    # ERROR_SERVICE_ALREADY_RUNNING
                raise self._error(f"cannot start service {name}", e) from None

    def stop(self, name: str) -> None:
        import win32service
        import win32serviceutil

        try:
            win32serviceutil.StopService(name)
        except win32service.error as e:
            if getattr(e, "winerror", None) != 1062:    # ERROR_SERVICE_NOT_ACTIVE
                raise self._error(f"cannot stop service {name}", e) from None

    def status(self, name: str) -> str:
        import win32service
        import win32serviceutil

        try:
            state = win32serviceutil.QueryServiceStatus(name)[1]
        except win32service.error as e:
            if getattr(e, "winerror", None) == 1060:    # ERROR_SERVICE_DOES_NOT_EXIST
                return NOT_INSTALLED
            raise self._error(f"cannot query service {name}", e) from None
        return {
            win32service.SERVICE_RUNNING: RUNNING, win32service.SERVICE_STOPPED: STOPPED,
            win32service.SERVICE_START_PENDING: START_PENDING, win32service.SERVICE_STOP_PENDING: STOP_PENDING,
        }.get(state, f"state {state}")

    def host(self, runner: ServiceRunner) -> int:
        host_windows_service(runner)
        return 0


class WindowsEventLog:
    """Events into the Application log, source certfleet-agent (registered by ``install``)."""

    def write(self, level: str, event_id: int, message: str) -> None:
        import servicemanager

        LoggingEvents().write(level, event_id, message)
        text = f"[{event_id}] {message}"
        {INFO: servicemanager.LogInfoMsg, WARNING: servicemanager.LogWarningMsg}.get(
            level, servicemanager.LogErrorMsg)(text)


def host_windows_service(runner: ServiceRunner) -> None:
    """Be the service process the SCM started: hand it our service class and run until stopped."""
    import servicemanager
    import win32service
    import win32serviceutil

    runner.events = WindowsEventLog()
    _setup_file_logging(runner.log_file)

    class CertfleetAgentService(win32serviceutil.ServiceFramework):
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION

        def SvcStop(self) -> None:  # noqa: N802 - pywin32's name
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=STOP_WAIT_HINT_MS)
            runner.request_stop("stop requested by the Service Control Manager")

        def SvcShutdown(self) -> None:  # noqa: N802
            self.SvcStop()

        def SvcDoRun(self) -> None:  # noqa: N802
            code = runner.run()
            if code != 0:
                # an exception makes the SCM record a failure, so its recovery actions restart us
                raise RuntimeError(f"certfleet agent exited with code {code}; see the Application event log")

    servicemanager.Initialize()
    servicemanager.PrepareToHostSingle(CertfleetAgentService)
    servicemanager.StartServiceCtrlDispatcher()


def _setup_file_logging(path: Path) -> None:
    from logging.handlers import RotatingFileHandler

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(path, maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
