"""The ``[windows]`` section of the agent configuration.

::

    [windows]
    enabled = true                 # default: true on Windows, false elsewhere
    stores = ["Remote Desktop"]    # read in addition to My and WebHosting (LocalMachine)
    iis = true                     # read IIS sites (appcmd) and http.sys SSL bindings (netsh)
    remove_replaced = true         # after a verified install, remove the replaced certificate (and its key)
    verify_address = "127.0.0.1"   # where SNI (Hostname:port) bindings are checked after an install
    verify_timeout = "30s"         # how long an install waits for every binding to serve the new certificate
    labels = { service = "iis" }
"""
from __future__ import annotations

import ipaddress
import re
import sys
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # pragma: no cover - the reader is handed in by agent.config
    from agent.config.values import Table

__all__ = ["WindowsSettings", "parse_windows", "DEFAULT_STORES", "TRUST_STORES"]

DEFAULT_STORES = ("My", "WebHosting")
# System stores whose certificates are trust anchors or CA certificates: inventoried, never renewed.
TRUST_STORES = frozenset({"root", "authroot", "ca", "trustedpeople", "trustedpublisher", "disallowed"})
_KEYS = {"enabled", "stores", "iis", "remove_replaced", "verify_address", "verify_timeout", "labels"}
_STORE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}")


@dataclass(frozen=True)
class WindowsSettings:
    enabled: bool = sys.platform == "win32"
    stores: tuple[str, ...] = DEFAULT_STORES
    iis: bool = True
    remove_replaced: bool = True
    verify_address: str = "127.0.0.1"
    verify_timeout: float = 30.0
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def parse_windows(table: Table) -> WindowsSettings:
    """Validate the ``[windows]`` table (an empty one gives the defaults)."""
    raw, err = table.raw, table.error
    table.reject_unknown(_KEYS)
    out: dict[str, Any] = {}
    for key in ("enabled", "iis", "remove_replaced"):
        if key in raw:
            out[key] = table.boolean(key, True)
    stores = list(DEFAULT_STORES)
    if "stores" in raw:
        value = raw["stores"]
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise err("stores", 'must be a list of store names such as ["Remote Desktop"]')
        for name in value:
            name = name.strip()
            if not _STORE_NAME.fullmatch(name):
                raise err("stores", f"{name!r} is not a system store name (letters, digits, space, '.', '_', '-')")
            if name.lower() not in (s.lower() for s in stores):
                stores.append(name)
    out["stores"] = tuple(stores)
    if "verify_address" in raw:
        value = raw["verify_address"]
        try:
            ipaddress.ip_address(value if isinstance(value, str) else "")
        except ValueError:
            raise err("verify_address", "must be an IP address such as \"127.0.0.1\"") from None
        out["verify_address"] = value
    if "verify_timeout" in raw:
        out["verify_timeout"] = table.duration("verify_timeout", 0)
        if out["verify_timeout"] <= 0:
            raise err("verify_timeout", "must be more than 0 seconds")
    if "labels" in raw:
        labels = raw["labels"]
        if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in labels.items()):
            raise err("labels", "must be a table of strings such as { service = \"iis\" }")
        out["labels"] = MappingProxyType(dict(labels))
    return WindowsSettings(**out)
