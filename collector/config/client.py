"""The admin CLI's client config: where the collector is and which identity to present.

Written by ``certfleet-collector init-admin``; read from ``--config PATH`` or
``$CERTFLEET_CONFIG``. Relative paths are against the config file's folder.

```toml
[client]
collector = "collector.example:7443"
ca = "ca.pem"
certificate = "admin.pem"
key = "admin.key"
server_name = ""          # optional: the name to check in the collector's certificate
```
"""
from __future__ import annotations

import os
import pathlib
import tomllib
from dataclasses import dataclass

from collector.errors import CollectorError

ENV = "CERTFLEET_CONFIG"


class ClientConfigError(CollectorError):
    pass


@dataclass(frozen=True)
class ClientConfig:
    path: pathlib.Path
    collector: str
    ca: pathlib.Path
    certificate: pathlib.Path
    key: pathlib.Path
    server_name: str = ""


def locate(explicit: str | None) -> pathlib.Path:
    value = explicit or os.environ.get(ENV)
    if not value:
        raise ClientConfigError(
            f"no client config: pass --config PATH or set {ENV} "
            "(certfleet-collector init-admin writes one)"
        )
    return pathlib.Path(value)


def load_client_config(explicit: str | None) -> ClientConfig:
    path = locate(explicit)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ClientConfigError(f"{path}: no such client config") from None
    except OSError as e:
        raise ClientConfigError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ClientConfigError(f"{path}: not valid TOML: {e}") from None
    section = raw.get("client")
    if not isinstance(section, dict):
        raise ClientConfigError(f"{path}: needs a [client] table")
    missing = [k for k in ("collector", "ca", "certificate", "key") if not section.get(k)]
    if missing:
        raise ClientConfigError(f"{path}: [client] is missing {', '.join(missing)}")
    base = path.resolve().parent

    def rel(key: str) -> pathlib.Path:
        p = pathlib.Path(section[key])
        return p if p.is_absolute() else base / p

    return ClientConfig(
        path=path, collector=section["collector"], ca=rel("ca"), certificate=rel("certificate"), key=rel("key"),
        server_name=section.get("server_name", ""),
    )


def write_client_config(out: pathlib.Path, collector: str, server_name: str = "") -> pathlib.Path:
    path = out / "certfleet.toml"
    lines = [
        "# certfleet admin client config; use with: certfleet --config " + str(path),
        "[client]",
        f'collector = "{collector}"',
        'ca = "ca.pem"',
        'certificate = "admin.pem"',
        'key = "admin.key"',
    ]
    if server_name:
        lines.append(f'server_name = "{server_name}"')
    path.write_text("\n".join(lines) + "\n")
    return path
