"""The Service Control Manager and the event log through pywin32. Windows only; not run on Linux.

The boundary the service commands (:mod:`agent.cli.winservice`) use on Windows
(:class:`WindowsServiceManager`), and the service process itself
(:func:`host_windows_service`: the SCM starts ``certfleet-agent-service.exe service``, which
hands pywin32 the service class and runs :class:`~agent.cli.service_host.ServiceRunner`).
pywin32 is imported only inside these functions.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from agent.cli.service_host import (DESCRIPTION, DISPLAY_NAME, INFO, NOT_INSTALLED, RUNNING, SERVICE_NAME,
                                    START_PENDING, STOP_PENDING, STOP_WAIT_HINT_MS, STOPPED, LoggingEvents,
                                    ServiceError, ServiceRunner, ServiceSpec, WARNING)

__all__ = ["WindowsServiceManager", "WindowsEventLog", "host_windows_service"]


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
