"""The ``[metrics]`` (exporter mode, off by default) and ``[log]`` sections of the agent config.

::

    [metrics]
    listen = "127.0.0.1:9793"         # GET /metrics here; absent: no listener
    bearer_token_file = "/etc/certfleet/metrics.token"   # optional

    [log]
    format = "json"                   # the agent's log lines: "plain" (default) or "json"

:func:`parse_metrics` and :func:`parse_log` read the tables; :mod:`agent.config` composes them
into ``AgentConfig.metrics`` and ``AgentConfig.log``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - the reader is handed in by agent.config
    from agent.config.values import Table

__all__ = ["MetricsSettings", "LogSettings", "parse_metrics", "parse_log"]

_KEYS = {"listen", "bearer_token_file"}
_LOG_KEYS = {"format"}
LOG_FORMATS = ("plain", "json")


@dataclass(frozen=True)
class MetricsSettings:
    listen: str = ""
    bearer_token_file: Path | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.listen)

    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    def token(self) -> str | None:
        if self.bearer_token_file is None:
            return None
        return self.bearer_token_file.read_text(encoding="utf-8").strip() or None


def parse_metrics(table: Table) -> MetricsSettings:
    """Validate a ``[metrics]`` table (an empty one: no listener)."""
    table.reject_unknown(_KEYS)
    listen = table.get("listen", "")
    if listen:
        host, sep, port = str(listen).rpartition(":") if isinstance(listen, str) else ("", "", "")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise table.error("listen", f"{listen!r} is not HOST:PORT (such as \"127.0.0.1:9793\")")
    token = table.get("bearer_token_file")
    path = None
    if token is not None:
        if not isinstance(token, str) or not token.strip():
            raise table.error("bearer_token_file", "must be a path")
        path = Path(token).expanduser()
        path = path if path.is_absolute() else table.base / path
    return MetricsSettings(listen=listen or "", bearer_token_file=path)


@dataclass(frozen=True)
class LogSettings:
    format: str = "plain"


def parse_log(table: Table) -> LogSettings:
    """Validate a ``[log]`` table."""
    table.reject_unknown(_LOG_KEYS)
    fmt = table.get("format", "plain")
    if fmt not in LOG_FORMATS:
        raise table.error("format", f"must be one of {', '.join(LOG_FORMATS)}")
    return LogSettings(format=fmt)
