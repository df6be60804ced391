"""Reading an ``[issuers.<name>]`` table: the checks every issuer type's ``from_config`` uses.

A leaf: the issuer modules and the factory import it; it imports no issuer. Errors are
:class:`~collector.domain.templates.TemplateConfigError` naming the issuer and, for a table
read from the config file (collector/config/reader.py ``Table``), the file and line where the
setting is written.
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Mapping

from certfleet.values import parse_duration
from collector.config.reader import Table
from collector.domain.templates import TemplateConfigError

__all__ = ["NAME_RE", "check_keys", "check_name", "config_duration", "config_path", "issuer_error", "split_listen"]

#: an issuer's name: what templates and the state directory (``<data_dir>/issuers/<name>``) use
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def issuer_error(cfg: Mapping[str, Any], message: str, key: str | None = None) -> TemplateConfigError:
    """The error for an issuer's settings; from the config file it names where ``key`` is written."""
    where = cfg.at(key) if isinstance(cfg, Table) else ""
    return TemplateConfigError(f"{where}: {message}" if where else message)


def check_name(name: Any, cfg: Mapping[str, Any] | None = None) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise issuer_error(cfg or {}, f"issuer {name!r}: a name is 1-64 letters, digits, '.', '_' or '-', "
                                      "starting with a letter or digit")
    return name


def check_keys(name: str, cfg: Mapping[str, Any], known: set[str] | frozenset[str]) -> None:
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise issuer_error(
            cfg, f"issuer {name!r}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
            unknown[0])


def config_duration(name: str, cfg: Mapping[str, Any], key: str, default: dt.timedelta) -> dt.timedelta:
    """A positive duration setting of issuer ``name`` (the product's value grammar, certfleet/values.py)."""
    value = cfg.get(key)
    if value is None:
        return default
    try:
        seconds = parse_duration(value)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise issuer_error(cfg, f"issuer {name!r}: {key} {value!r} is not a duration (use e.g. 30s, 15m, 1h, 7d)", key)
    return dt.timedelta(seconds=seconds)


def config_path(cfg: Mapping[str, Any], key: str, base: Path) -> Path | None:
    """A file setting; a relative path is taken from ``base`` (the config file's folder)."""
    value = cfg.get(key)
    if value in (None, ""):
        return None
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else base / p


def split_listen(name: str, key: str, value: str, cfg: Mapping[str, Any] | None = None) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise issuer_error(cfg or {}, f"issuer {name!r}: {key} {value!r} is not HOST:PORT", key)
    return host.strip("[]"), int(port)
