"""The agent's configuration file: one TOML file, one typed :class:`AgentConfig`.

The room:

- :mod:`agent.config.values`: the grammar under every table (:class:`Secret`, file:line
  locations, the table reader that rejects unknown keys; durations and sizes from
  :mod:`certfleet.values`). A leaf.
- :mod:`agent.config.core`: :class:`AgentConfig` and the agent's own tables ``[agent]``,
  ``[[store]]``, ``[reload.<name>]``.
- this module: :func:`load_config` / :func:`parse_config`, which compose those tables and
  each feature's section parser into **typed** fields: ``config.endpoints``
  (:mod:`agent.endpoints.settings`), ``config.discovery`` (:mod:`agent.discovery.settings`),
  ``config.windows`` (:mod:`agent.windows.settings`).

May import: :mod:`agent.errors`, :mod:`certfleet.values` and the feature settings modules.
The feature settings modules import nothing from here (they are handed a
:class:`~agent.config.values.Table`), so there is no way back.

Adding a section: its dataclass and parser in the feature's ``settings.py``, a typed field
on :class:`AgentConfig`, its name in :data:`SECTIONS` and one line in :func:`parse_config`.
"""
from __future__ import annotations

import os
import stat
import sys
import tomllib
from pathlib import Path
from typing import Any

from agent.config.core import (
    DEFAULT_RELOAD_TIMEOUT, DEFAULT_VERIFY_TIMEOUT, STORE_ROLES, STORE_TYPES, TOP_KEYS, AgentConfig, ReloadAction,
    StoreConfig, VerifyEndpoint, agent_table, default_data_dir, default_hostname, reload_actions, store_table,
)
from agent.config.values import Secret, Table, Where, parse_duration, parse_size
from agent.discovery.settings import parse_discovery
from agent.endpoints.settings import parse_endpoints
from agent.errors import ConfigError, ReloadNotAllowed
from agent.metrics.settings import parse_log, parse_metrics
from agent.windows.settings import parse_windows

__all__ = [
    "AgentConfig", "StoreConfig", "Secret", "ConfigError", "load_config", "parse_config",
    "parse_duration", "parse_size", "default_data_dir", "default_hostname", "STORE_TYPES", "STORE_ROLES",
    "ReloadAction", "VerifyEndpoint", "ReloadNotAllowed", "DEFAULT_RELOAD_TIMEOUT", "DEFAULT_VERIFY_TIMEOUT",
    "SECTIONS",
]

#: The feature sections, each parsed by its feature into the AgentConfig field of the same name (an absent
#: section is parsed from {}, so features get their defaults).
SECTIONS = ("endpoints", "discovery", "windows", "metrics", "log")


def load_config(path: str | os.PathLike[str]) -> AgentConfig:
    """Read and validate the agent configuration file at ``path``.

    Raises :class:`ConfigError` whose message names the file (and line where
    possible) and the store concerned; it never contains a password.
    """
    p = Path(path).expanduser().absolute()
    try:
        raw = p.read_bytes()
        st = os.stat(p)
    except FileNotFoundError:
        raise ConfigError(f"{p}: the configuration file does not exist") from None
    except OSError as e:
        raise ConfigError(f"{p}: the configuration file cannot be read ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: the configuration file is not UTF-8 text (byte {e.start})") from None
    world_readable = sys.platform != "win32" and bool(st.st_mode & stat.S_IROTH)
    return parse_config(text, path=p, world_readable=world_readable)


def parse_config(text: str, path: Path | None = None, world_readable: bool = False) -> AgentConfig:
    """Validate configuration ``text``; relative paths resolve against ``path``'s directory.

    ``world_readable`` says whether the text came from a file every user can
    read; inline passwords are refused then.
    """
    where = Where(path, text)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # tomllib messages say "... (at line N, column M)" and never echo values.
        raise ConfigError(f"{path or '<config>'}: invalid TOML: {e}") from None
    base = path.parent if path is not None else Path.cwd()

    for key in doc:
        if key not in TOP_KEYS and key not in SECTIONS:
            raise ConfigError(
                f"{where(None, 0, key) if not isinstance(doc[key], dict) else where(key)}: "
                f"unknown key {key!r} (expected [agent], [collector], [reload.<name>] or [[store]] tables)"
            )

    agent = agent_table(doc.get("agent", {}), where, base)

    collector = doc.get("collector", {})
    if not isinstance(collector, dict):
        raise ConfigError(f"{where(None, 0, 'collector')}: 'collector' must be a table ([collector])")

    actions = reload_actions(doc.get("reload", {}), where)

    stores_raw = doc.get("store", [])
    if not isinstance(stores_raw, list):
        raise ConfigError(f"{where('store')}: stores must be written as [[store]] tables")
    stores: list[StoreConfig] = []
    names: set[str] = set()
    for i, s in enumerate(stores_raw):
        store = store_table(s, i, base, where, world_readable)
        if store.name in names:
            raise ConfigError(f"{where('store', i, 'name')}: store name {store.name!r} is used twice")
        names.add(store.name)
        if store.reload is not None and store.reload not in actions:
            allowed = ", ".join(sorted(actions)) or "none are configured"
            raise ConfigError(
                f"{where('store', i, 'reload')}: store {store.name!r}: reload action {store.reload!r} "
                f"is not defined (add a [reload.{store.reload}] table; defined: {allowed})"
            )
        stores.append(store)

    return AgentConfig(
        config_path=path, **agent, stores=tuple(stores), collector=collector, reload_actions=actions,
        endpoints=parse_endpoints(_section(doc, "endpoints", where, base)),             # "[endpoints]: msg"
        discovery=parse_discovery(_section(doc, "discovery", where, base, keyed=True)),  # "[discovery] key: msg"
        windows=parse_windows(_section(doc, "windows", where, base, keyed=True)),        # "[windows] key: msg"
        metrics=parse_metrics(_section(doc, "metrics", where, base, keyed=True)),        # "[metrics] key: msg"
        log=parse_log(_section(doc, "log", where, base, keyed=True)),                    # "[log] key: msg"
    )


def _section(doc: dict[str, Any], name: str, where: Where, base: Path, keyed: bool = False) -> Table:
    raw = doc.get(name, {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{where(None, 0, name)}: {name!r} must be a table ([{name}])")
    return Table(raw, where, name, keyed=keyed, base=base)
