"""The collector's TOML configuration.

```toml
[collector]
data_dir = "/var/lib/certfleet-collector"   # relative paths: against the config file's folder
database_url = ""                  # default: sqlite:///<data_dir>/registry.db
listen = "127.0.0.1:7443"          # mutual TLS: agents and admin CLI
enroll_listen = "127.0.0.1:7444"   # TLS without client certificates: enrollment only
advertise = ""                     # host:port agents dial for the mutual-TLS listener (default: listen)
enroll_advertise = ""              # host:port printed with new tokens (default: enroll_listen)
server_names = ["localhost", "127.0.0.1"]   # names in the collector's TLS certificate
token_ttl = "1h"                   # default lifetime of enrollment tokens
agent_cert_lifetime = "30d"
admin_cert_lifetime = "365d"
```
"""
from __future__ import annotations

import pathlib
import tomllib
from dataclasses import dataclass, field

from certfleet.values import parse_duration as _duration
from collector.errors import CollectorError


class ConfigError(CollectorError):
    """The collector's config file is missing, malformed or inconsistent."""


def parse_duration(value: str | int | float, what: str = "duration") -> float:
    """Seconds in ``value`` by the product's one value grammar (certfleet/values.py: ``30s``, ``1h30m``,
    ``2d``, ``1w``, plain seconds); a ConfigError naming ``what`` when it is not one."""
    try:
        return _duration(value)
    except ValueError as e:
        raise ConfigError(f"{what}: {e}") from None


def split_hostport(value: str, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{what}: {value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


_KEYS = {
    "data_dir", "database_url", "listen", "enroll_listen", "advertise", "enroll_advertise",
    "server_names", "token_ttl", "agent_cert_lifetime", "admin_cert_lifetime",
}


@dataclass(frozen=True)
class CollectorConfig:
    path: pathlib.Path | None
    data_dir: pathlib.Path
    database_url: str
    listen: str = "127.0.0.1:7443"
    enroll_listen: str = "127.0.0.1:7444"
    advertise: str = ""
    enroll_advertise: str = ""
    server_names: tuple[str, ...] = ("localhost", "127.0.0.1")
    token_ttl: float = 3600.0
    agent_cert_lifetime: float = 30 * 86400.0
    admin_cert_lifetime: float = 365 * 86400.0
    extra: dict = field(default_factory=dict)

    @property
    def pki_dir(self) -> pathlib.Path:
        return self.data_dir / "pki"

    @property
    def agent_endpoint(self) -> str:
        return self.advertise or self.listen

    @property
    def enroll_endpoint(self) -> str:
        return self.enroll_advertise or self.enroll_listen


def load_config(path: str | pathlib.Path) -> CollectorConfig:
    p = pathlib.Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    return config_from_dict(raw, base=p.resolve().parent, path=p)


def config_from_dict(raw: dict, base: pathlib.Path, path: pathlib.Path | None = None) -> CollectorConfig:
    where = str(path) if path else "config"
    section = raw.get("collector", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: [collector] must be a table")
    unknown = sorted(set(section) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) in [collector]: {', '.join(unknown)}")
    data_dir = pathlib.Path(section.get("data_dir", "data"))
    if not data_dir.is_absolute():
        data_dir = base / data_dir
    url = section.get("database_url") or f"sqlite:///{data_dir / 'registry.db'}"
    listen = section.get("listen", "127.0.0.1:7443")
    enroll_listen = section.get("enroll_listen", "127.0.0.1:7444")
    for key, value in (("listen", listen), ("enroll_listen", enroll_listen)):
        split_hostport(value, f"{where}: [collector] {key}")
    for key in ("advertise", "enroll_advertise"):
        if section.get(key):
            split_hostport(section[key], f"{where}: [collector] {key}")
    names = section.get("server_names", ["localhost", "127.0.0.1"])
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names) or not names:
        raise ConfigError(f"{where}: [collector] server_names must be a non-empty list of names")
    return CollectorConfig(
        path=path,
        data_dir=data_dir,
        database_url=url,
        listen=listen,
        enroll_listen=enroll_listen,
        advertise=section.get("advertise", ""),
        enroll_advertise=section.get("enroll_advertise", ""),
        server_names=tuple(names),
        token_ttl=parse_duration(section.get("token_ttl", "1h"), f"{where}: token_ttl"),
        agent_cert_lifetime=parse_duration(section.get("agent_cert_lifetime", "30d"), f"{where}: agent_cert_lifetime"),
        admin_cert_lifetime=parse_duration(section.get("admin_cert_lifetime", "365d"), f"{where}: admin_cert_lifetime"),
        extra={k: v for k, v in raw.items() if k != "collector"},
    )
