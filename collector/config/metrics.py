"""The ``[metrics]`` and ``[log]`` tables of the collector config.

```toml
[metrics]
listen = "127.0.0.1:9792"                         # off when absent: GET /metrics on its own listener
bearer_token_file = "/etc/certfleet/metrics.token"  # optional: scrapers send Authorization: Bearer <token>
refresh = "2m"                                    # how often the expiry windows and violations are recounted
owner_refresh = "5m"                              # how often locations per owner/environment are recounted

[log]
format = "json"                                   # or "plain" (the default); --log-format overrides
```

The listener and the collectors: collector/metrics/, certfleet/metricshttp.py.
"""
from __future__ import annotations

import pathlib
from dataclasses import dataclass

from collector.config.reader import Table

__all__ = ["MetricsSettings", "LogSettings"]

KEYS = frozenset({"listen", "bearer_token_file", "refresh", "owner_refresh"})
LOG_KEYS = frozenset({"format"})
LOG_FORMATS = ("plain", "json")


@dataclass(frozen=True)
class MetricsSettings:
    listen: str = ""                            # "" = no /metrics
    bearer_token_file: pathlib.Path | None = None
    refresh: float = 120.0               # seconds
    owner_refresh: float = 300.0                # seconds

    @property
    def enabled(self) -> bool:
        return bool(self.listen)

    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    def token(self) -> str | None:
        """The bearer token, read from its file now (trailing newline dropped); None without one."""
        if self.bearer_token_file is None:
            return None
        return self.bearer_token_file.read_text(encoding="utf-8").strip() or None

    @classmethod
    def from_table(cls, t: Table, base: pathlib.Path) -> MetricsSettings:
        t.check_keys(KEYS)
        listen = t.get("listen", "")
        if listen:
            host, sep, port = str(listen).rpartition(":")
            if not isinstance(listen, str) or not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
                raise t.error(f"[metrics] listen: {listen!r} is not HOST:PORT", "listen")
        token_file = t.get("bearer_token_file")
        path = None
        if token_file:
            if not isinstance(token_file, str):
                raise t.error("[metrics] bearer_token_file must be a path", "bearer_token_file")
            path = pathlib.Path(token_file).expanduser()
            path = path if path.is_absolute() else base / path
            if not path.is_file():
                raise t.error(f"[metrics] bearer_token_file: {path} is not a readable file", "bearer_token_file")
        refresh = {}
        for key, default in (("refresh", "2m"), ("owner_refresh", "5m")):
            refresh[key] = t.duration(key, default)
            if refresh[key] < 1:
                raise t.error(f"[metrics] {key} must be at least 1s", key)
        return cls(listen=listen or "", bearer_token_file=path, **refresh)


@dataclass(frozen=True)
class LogSettings:
    format: str = "plain"

    @classmethod
    def from_table(cls, t: Table) -> LogSettings:
        t.check_keys(LOG_KEYS)
        fmt = t.get("format", "plain")
        if fmt not in LOG_FORMATS:
            raise t.error(f"[log] format must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}", "format")
        return cls(format=fmt)
