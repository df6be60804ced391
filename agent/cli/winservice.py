"""The agent as a Windows service.

::

    certfleet-agent-service.exe install [--config PATH] [--startup auto|delayed|manual|disabled] [--log-file PATH]
    certfleet-agent-service.exe start | stop | restart | status | remove   [--timeout SECONDS]
    certfleet-agent-service.exe debug [--config PATH]     # in this console; Ctrl+C stops it
    certfleet-agent-service.exe service --config PATH     # what the Service Control Manager runs

This module is the command handling (parsing, dispatch to a small
:class:`~agent.cli.service_host.ServiceManager` boundary, exit codes); the run loop and the
event-log messages are :mod:`agent.cli.service_host`; both are plain Python and tested on
Linux. pywin32 (``win32serviceutil``, ``win32service``, ``servicemanager``,
``win32evtlogutil``) is imported only inside the Windows-only boundary,
:mod:`agent.cli.winservice_scm`.

Exit codes: 0 done (also: ``start`` of a running service, ``stop`` of a stopped one);
1 the operation failed (the reason on stderr); 2 usage error (unknown command, bad option);
3 ``status`` of a service that is not running or not installed.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Callable, TextIO

from agent import __version__
from agent.cli.service_host import (COMMANDS, DEFAULT_TIMEOUT, DESCRIPTION, DISPLAY_NAME, NOT_INSTALLED, RUNNING,
                                    SERVICE_NAME, STARTUP_TYPES, STOP_PENDING, STOPPED, EventSink, LoggingEvents,
                                    ServiceError, ServiceManager, ServiceRunner, ServiceSpec, default_config, wait_for)

__all__ = ["main", "Commands", "UsageError", "usage"]


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
            from agent.cli.winservice_scm import WindowsServiceManager   # Windows-only code (pywin32)

            manager = WindowsServiceManager()
        commands = Commands(manager, out, err, **kwargs)  # type: ignore[arg-type]
        return getattr(commands, command)(ns)
    except UsageError as e:
        print(f"certfleet-agent-service {command}: {e}", file=err)
        return 2
    except ServiceError as e:
        print(f"certfleet-agent-service {command}: {e}", file=err)
        return 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
