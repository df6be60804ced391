"""The agent as a Windows service, the part that needs no Windows: names, event-log messages, the run loop.

:class:`ServiceRunner` runs the real :meth:`agent.service.AgentService.run_forever` until a
stop request and maps what happens to event-log messages (:data:`EVENTS`);
:class:`ServiceManager` is the small boundary the commands (:mod:`agent.cli.winservice`) need
from the Service Control Manager, implemented with pywin32 in :mod:`agent.cli.winservice_scm`.
All of it is plain Python, tested on Linux.
"""
from __future__ import annotations

import logging
import os
import random
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from agent import __version__
from agent.errors import AgentError, ConfigError, IdentityError

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
        # start-up time: the service-management commands (install, start, status...) never load the agent itself
        from agent.config import load_config

        try:
            config = load_config(self.config_path)
        except ConfigError as e:
            emit(self.events, "config_error", error=e)
            return 1
        try:
            if self.service_factory is None:
                from agent.service import AgentService   # start-up time, as load_config above

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


# --------------------------------------------------------------------------- the Service Control Manager, as the commands need it

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
