"""The agent's configuration file (TOML).

::

    [agent]
    data_dir = "/var/lib/certfleet-agent"
    hostname = ""                 # default: socket.getfqdn()
    scan_interval = "15m"         # "30s", "15m", "1h", "2d", "1h30m" or plain seconds
    max_file_size = "10MB"        # "512KB", "10MB", "1GB" (powers of 1024) or plain bytes
    labels = { environment = "prod" }

    [collector]                   # passed through as a dict, not validated here
    address = "collector.example.net:7443"

    [[store]]
    name = "nginx"
    type = "auto"                 # pem, der, pkcs12, jks (JKS and JCEKS), auto
    paths = ["/etc/nginx/**/*.pem"]
    exclude = ["**/dhparam.pem"]
    labels = { service = "nginx", owner = "web-team" }
    password_file = "/etc/certfleet/secrets/nginx.pass"   # or password_env, or password
    follow_symlinks = true
    reload = "nginx"              # optional: a [reload.<name>] action run after an install
    verify = [{ host = "127.0.0.1", port = 443, sni = "www.example.net" }]   # or [[store.verify]]
    verify_timeout = "10s"        # how long an install waits for the endpoints to serve the new certificate
    acme_webroot = "/var/www/acme"  # optional: ACME http-01 files go to <acme_webroot>/.well-known/acme-challenge/
    role = "trust_anchor"         # optional: a trust store (inventoried apart, never renewed); default: by path

    [reload.nginx]                # the only commands an install may run (the collector names them)
    command = ["/usr/sbin/nginx", "-s", "reload"]   # an argument list, never a shell string
    timeout = "30s"

Relative paths (data_dir, store paths and excludes that contain a directory,
password_file) are resolved against the configuration file's directory; ``~``
is expanded. Unknown keys are errors, so typos do not go unnoticed.

Passwords are never read here: :meth:`StoreConfig.read_password` reads them
when a store is scanned, and they are kept in :class:`Secret` wrappers whose
``repr`` never shows the value.
"""
from __future__ import annotations

import os
import re
import socket
import stat
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from agent.errors import ConfigError, PasswordUnavailable, ReloadNotAllowed
from certfleet.values import parse_duration, parse_size

__all__ = [
    "AgentConfig", "StoreConfig", "Secret", "ConfigError", "load_config", "parse_config",
    "parse_duration", "parse_size", "default_data_dir", "STORE_TYPES", "ReloadAction", "VerifyEndpoint",
    "ReloadNotAllowed", "DEFAULT_RELOAD_TIMEOUT", "DEFAULT_VERIFY_TIMEOUT",
]

STORE_TYPES = ("pem", "der", "pkcs12", "jks", "auto")
# Accepted spellings that mean one of STORE_TYPES.
_TYPE_ALIASES = {"jceks": "jks", "p12": "pkcs12", "pfx": "pkcs12", "crt": "pem", "cer": "der"}

_AGENT_KEYS = {"data_dir", "hostname", "scan_interval", "max_file_size", "labels"}
_STORE_KEYS = {
    "name", "type", "paths", "exclude", "labels", "password", "password_file", "password_env",
    "follow_symlinks", "reload", "verify", "verify_timeout", "acme_webroot", "role",
}
STORE_ROLES = ("service", "trust_anchor")
_TOP_KEYS = {"agent", "store", "collector", "reload"}

# Feature sections with a parser of their own: [endpoints] and [discovery]
# (agent/discovery/settings.py), [windows] (agent/windows/settings.py). A parser
# takes (raw table, where, base dir) and returns its frozen settings object or
# raises ConfigError naming the line (``where(section, 0, key)`` gives "file:line").
# The result is in ``AgentConfig.sections[name]``; a section that is absent is
# parsed from {} so features get their defaults.
SectionParser = Callable[[Any, "_Where", Path], Any]


def _section_parsers() -> dict[str, SectionParser]:
    parsers: dict[str, SectionParser] = {}
    # imported here: the feature packages import this module
    from agent.discovery.settings import parse_discovery, parse_endpoints
    parsers["endpoints"] = parse_endpoints
    parsers["discovery"] = parse_discovery
    from agent.windows.settings import parse_windows_section
    parsers["windows"] = parse_windows_section
    return parsers
_RELOAD_KEYS = {"command", "timeout"}
_VERIFY_KEYS = {"host", "port", "sni", "ca_file"}
_ACTION_NAME = re.compile(r"[A-Za-z0-9_.\-]+")

DEFAULT_SCAN_INTERVAL = 15 * 60.0
DEFAULT_MAX_FILE_SIZE = 10 * 1024 * 1024
DEFAULT_RELOAD_TIMEOUT = 30.0
DEFAULT_VERIFY_TIMEOUT = 10.0


class Secret:
    """A secret string whose ``repr``/``str`` never show the value.

    Call :meth:`reveal` at the single place the value is really needed.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value. Never log or format the result."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> Any:  # pickling would copy the secret somewhere unexpected
        raise TypeError("Secret values cannot be pickled")


@dataclass(frozen=True)
class ReloadAction:
    """One ``[reload.<name>]`` table: a command the agent may run after an install.

    ``command`` is an argument list run without a shell; ``timeout`` is in seconds.
    """

    name: str
    command: tuple[str, ...]
    timeout: float = DEFAULT_RELOAD_TIMEOUT


@dataclass(frozen=True)
class VerifyEndpoint:
    """A TLS endpoint that must serve a store's certificate after an install.

    ``sni`` is the server name sent and checked against the certificate
    (default: ``host``); ``ca_file`` a PEM bundle of the roots to validate the
    served chain with (default: the installed chain's root, else the system
    trust store).
    """

    host: str
    port: int
    sni: str | None = None
    ca_file: str | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" + (f" (SNI {self.sni})" if self.sni else "")


@dataclass(frozen=True)
class StoreConfig:
    """One ``[[store]]`` table. Paths are absolute and normalised."""

    name: str
    type: str                              # one of STORE_TYPES
    paths: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    password: Secret | None = field(default=None, repr=False)
    password_file: str | None = None
    password_env: str | None = None
    follow_symlinks: bool = True
    reload: str | None = None                       # name of a [reload.<name>] action
    verify: tuple[VerifyEndpoint, ...] = ()
    verify_timeout: float = DEFAULT_VERIFY_TIMEOUT  # seconds
    acme_webroot: str | None = None                 # where the web server serves /.well-known/acme-challenge/ from
    role: str | None = None                         # "trust_anchor" or "service"; None: by path (agent/discovery/trust.py)

    @property
    def has_password_source(self) -> bool:
        """True when a password, password_file or password_env is configured."""
        return self.password is not None or self.password_file is not None or self.password_env is not None

    def read_password(self) -> Secret | None:
        """Read the store's password now; ``None`` when no source is configured.

        Raises :class:`~agent.errors.PasswordUnavailable` (reason ``no_password``
        when the file or variable does not exist, ``unreadable`` when the file
        cannot be read). A file's trailing line break is removed.
        """
        if self.password is not None:
            return self.password
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise PasswordUnavailable(
                    "no_password",
                    f"store {self.name!r}: the environment variable {self.password_env} "
                    "named by password_env is not set",
                )
            return Secret(value)
        if self.password_file is not None:
            try:
                with open(self.password_file, "rb") as f:
                    raw = f.read(64 * 1024)
            except FileNotFoundError:
                raise PasswordUnavailable(
                    "no_password",
                    f"store {self.name!r}: the password file {self.password_file} does not exist",
                ) from None
            except OSError as e:
                raise PasswordUnavailable(
                    "unreadable",
                    f"store {self.name!r}: the password file {self.password_file} cannot be read "
                    f"({e.strerror or type(e).__name__})",
                ) from None
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise PasswordUnavailable(
                    "unreadable",
                    f"store {self.name!r}: the password file {self.password_file} is not UTF-8 text",
                ) from None
            if text.endswith("\r\n"):
                text = text[:-2]
            elif text.endswith("\n"):
                text = text[:-1]
            return Secret(text)
        return None


@dataclass(frozen=True)
class AgentConfig:
    """The whole agent configuration."""

    config_path: Path | None
    data_dir: Path
    hostname: str
    scan_interval: float = DEFAULT_SCAN_INTERVAL      # seconds
    max_file_size: int = DEFAULT_MAX_FILE_SIZE        # bytes
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    stores: tuple[StoreConfig, ...] = ()
    collector: Mapping[str, Any] = field(default_factory=dict)
    reload_actions: Mapping[str, ReloadAction] = field(default_factory=lambda: MappingProxyType({}))
    sections: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))   # see _section_parsers

    def reload_action(self, name: str) -> ReloadAction:
        """The reload action called ``name``.

        Raises :class:`~agent.errors.ReloadNotAllowed` when this agent's
        configuration does not define it: the collector can name only actions
        the agent allows.
        """
        action = self.reload_actions.get(name) if isinstance(name, str) else None
        if action is None:
            allowed = ", ".join(sorted(self.reload_actions)) or "none are configured"
            where = f" in {self.config_path}" if self.config_path else ""
            raise ReloadNotAllowed(
                f"reload action {name!r} is not allowed by this agent (allowed: {allowed}); "
                f"define it as a [reload.{name if isinstance(name, str) else 'NAME'}] table{where}"
            )
        return action

    def store(self, name: str) -> StoreConfig:
        """The store called ``name``; KeyError when there is none."""
        for s in self.stores:
            if s.name == name:
                return s
        raise KeyError(name)

    def labels_for(self, store: StoreConfig) -> Mapping[str, str]:
        """Host labels overlaid with the store's labels."""
        merged = dict(self.labels)
        merged.update(store.labels)
        return MappingProxyType(merged)


# --------------------------------------------------------------------------- helpers

# parse_duration and parse_size: the product's one value grammar (certfleet/values.py)


def default_hostname() -> str:
    """The host's fully qualified name; its plain name where the FQDN is only ``localhost``."""
    fqdn = socket.getfqdn()
    if fqdn.startswith("localhost"):
        return socket.gethostname() or fqdn
    return fqdn


def default_data_dir() -> Path:
    """Where the agent keeps its state when ``data_dir`` is not configured.

    Root (and Windows services): ``/var/lib/certfleet-agent`` or
    ``%PROGRAMDATA%\\certfleet-agent``; other users: ``$XDG_STATE_HOME/certfleet-agent``
    (``~/.local/state/certfleet-agent``).
    """
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "certfleet-agent"
    if os.geteuid() == 0:
        return Path("/var/lib/certfleet-agent")
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "certfleet-agent"


# --------------------------------------------------------------------------- loading

class _Where:
    """Turns (section, index, key) into "file:line" for messages, best effort."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?")

    def __init__(self, path: Path | None, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.sections: list[tuple[str, int]] = []     # (name, line index)
        for i, line in enumerate(self.lines):
            m = self._HEADER.match(line)
            if m:
                self.sections.append((m.group(2).strip().strip("\"'"), i))

    def __call__(self, section: str | None = None, index: int = 0, key: str | None = None) -> str:
        name = str(self.path) if self.path else "<config>"
        line = self._line(section, index, key)
        return f"{name}:{line}" if line else name

    def _line(self, section: str | None, index: int, key: str | None) -> int | None:
        start, end = 0, len(self.lines)
        if section is not None:
            found = [i for (n, i) in self.sections if n == section]
            if index >= len(found):
                return None
            start = found[index]
            later = [i for (_, i) in self.sections if i > start]
            end = later[0] if later else len(self.lines)
        elif self.sections:
            end = self.sections[0][1]
        if key is None:
            return start + 1 if section is not None else None
        pat = re.compile(r"^\s*[\"']?" + re.escape(key) + r"[\"']?\s*=")
        for i in range(start, end):
            if pat.match(self.lines[i]):
                return i + 1
        return start + 1 if section is not None else None


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
    where = _Where(path, text)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # tomllib messages say "... (at line N, column M)" and never echo values.
        raise ConfigError(f"{path or '<config>'}: invalid TOML: {e}") from None
    base = path.parent if path is not None else Path.cwd()

    parsers = _section_parsers()
    for key in doc:
        if key not in _TOP_KEYS and key not in parsers:
            raise ConfigError(
                f"{where(None, 0, key) if not isinstance(doc[key], dict) else where(key)}: "
                f"unknown key {key!r} (expected [agent], [collector], [reload.<name>] or [[store]] tables)"
            )

    agent = doc.get("agent", {})
    if not isinstance(agent, dict):
        raise ConfigError(f"{where(None, 0, 'agent')}: 'agent' must be a table ([agent])")
    for key in agent:
        if key not in _AGENT_KEYS:
            raise ConfigError(
                f"{where('agent', 0, key)}: unknown key {key!r} in [agent] "
                f"(known keys: {', '.join(sorted(_AGENT_KEYS))})"
            )

    def agent_err(key: str, msg: str) -> ConfigError:
        return ConfigError(f"{where('agent', 0, key)}: [agent] {key}: {msg}")

    data_dir_raw = agent.get("data_dir", "")
    if not isinstance(data_dir_raw, str):
        raise agent_err("data_dir", "must be a string")
    data_dir = _resolve(data_dir_raw, base) if data_dir_raw else default_data_dir()

    hostname = agent.get("hostname", "")
    if not isinstance(hostname, str):
        raise agent_err("hostname", "must be a string")
    hostname = hostname.strip() or default_hostname()

    try:
        scan_interval = parse_duration(agent.get("scan_interval", DEFAULT_SCAN_INTERVAL))
    except ValueError as e:
        raise agent_err("scan_interval", str(e)) from None
    if scan_interval < 1:
        raise agent_err("scan_interval", "must be at least 1 second")
    try:
        max_file_size = parse_size(agent.get("max_file_size", DEFAULT_MAX_FILE_SIZE))
    except ValueError as e:
        raise agent_err("max_file_size", str(e)) from None
    labels = _labels(agent.get("labels", {}), lambda m: agent_err("labels", m))

    collector = doc.get("collector", {})
    if not isinstance(collector, dict):
        raise ConfigError(f"{where(None, 0, 'collector')}: 'collector' must be a table ([collector])")

    reload_actions = _reload_actions(doc.get("reload", {}), where)

    stores_raw = doc.get("store", [])
    if not isinstance(stores_raw, list):
        raise ConfigError(f"{where('store')}: stores must be written as [[store]] tables")
    stores: list[StoreConfig] = []
    names: set[str] = set()
    for i, s in enumerate(stores_raw):
        store = _store(s, i, base, where, world_readable)
        if store.name in names:
            raise ConfigError(f"{where('store', i, 'name')}: store name {store.name!r} is used twice")
        names.add(store.name)
        if store.reload is not None and store.reload not in reload_actions:
            allowed = ", ".join(sorted(reload_actions)) or "none are configured"
            raise ConfigError(
                f"{where('store', i, 'reload')}: store {store.name!r}: reload action {store.reload!r} "
                f"is not defined (add a [reload.{store.reload}] table; defined: {allowed})"
            )
        stores.append(store)

    sections: dict[str, Any] = {}
    for name, parse_section in parsers.items():
        raw_section = doc.get(name, {})
        if not isinstance(raw_section, dict):
            raise ConfigError(f"{where(None, 0, name)}: {name!r} must be a table ([{name}])")
        sections[name] = parse_section(raw_section, where, base)

    return AgentConfig(
        config_path=path, data_dir=data_dir, hostname=hostname, scan_interval=scan_interval,
        max_file_size=max_file_size, labels=labels, stores=tuple(stores), collector=collector,
        reload_actions=reload_actions, sections=MappingProxyType(sections),
    )


def _reload_actions(raw: Any, where: _Where) -> Mapping[str, ReloadAction]:
    """The ``[reload.<name>]`` tables."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where(None, 0, 'reload')}: 'reload' must hold tables such as [reload.nginx]")
    out: dict[str, ReloadAction] = {}
    for name, table in raw.items():
        section = f"reload.{name}"

        def err(key: str | None, msg: str) -> ConfigError:
            return ConfigError(f"{where(section, 0, key)}: [reload.{name}]: {msg}")

        if not _ACTION_NAME.fullmatch(name):
            raise err(None, "action names may use letters, digits, '.', '_' and '-' only")
        if not isinstance(table, dict):
            raise ConfigError(
                f"{where(None, 0, 'reload')}: reload {name!r} must be a table such as "
                f"[reload.{name}] with command = [\"...\", \"...\"]"
            )
        for key in table:
            if key not in _RELOAD_KEYS:
                raise err(key, f"unknown key {key!r} (known keys: {', '.join(sorted(_RELOAD_KEYS))})")
        if "command" not in table:
            raise err(None, "'command' is required: an argument list such as [\"/usr/sbin/nginx\", \"-s\", \"reload\"]")
        command = table["command"]
        if isinstance(command, str):
            raise err(
                "command",
                "command must be an argument list such as [\"/usr/sbin/nginx\", \"-s\", \"reload\"], not a "
                "string: certfleet never runs commands through a shell",
            )
        if (not isinstance(command, list) or not command
                or not all(isinstance(a, str) for a in command) or not command[0].strip()):
            raise err("command", "command must be a non-empty list of strings (the program, then its arguments)")
        if any("\0" in a for a in command):
            raise err("command", "command arguments must not contain NUL characters")
        try:
            timeout = parse_duration(table.get("timeout", DEFAULT_RELOAD_TIMEOUT))
        except ValueError as e:
            raise err("timeout", str(e)) from None
        if timeout <= 0:
            raise err("timeout", "timeout must be more than 0 seconds")
        out[name] = ReloadAction(name=name, command=tuple(command), timeout=timeout)
    return MappingProxyType(out)


def _verify_endpoints(value: Any, base: Path, err: Any) -> tuple[VerifyEndpoint, ...]:
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise err("verify", "verify must be a list of tables such as [{ host = \"127.0.0.1\", port = 443, "
                            "sni = \"www.example.net\" }]")
    out = []
    for n, ep in enumerate(value, 1):
        what = f"verify endpoint {n}"
        if not isinstance(ep, dict):
            raise err("verify", f"{what} must be a table such as {{ host = \"127.0.0.1\", port = 443 }}")
        for key in ep:
            if key not in _VERIFY_KEYS:
                raise err("verify", f"{what}: unknown key {key!r} (known keys: {', '.join(sorted(_VERIFY_KEYS))})")
        host = ep.get("host", "127.0.0.1")
        if not isinstance(host, str) or not host.strip():
            raise err("verify", f"{what}: host must be a non-empty string")
        port = ep.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise err("verify", f"{what}: port is required and must be a number from 1 to 65535")
        sni = ep.get("sni")
        if sni is not None and (not isinstance(sni, str) or not sni.strip()):
            raise err("verify", f"{what}: sni must be a non-empty host name")
        ca_file = ep.get("ca_file")
        if ca_file is not None:
            if not isinstance(ca_file, str) or not ca_file.strip():
                raise err("verify", f"{what}: ca_file must be a non-empty path")
            ca_file = str(_resolve(ca_file, base))
        out.append(VerifyEndpoint(host=host.strip().strip("[]"), port=port,
                                  sni=sni.strip() if sni else None, ca_file=ca_file))
    return tuple(out)


def _resolve(value: str, base: Path) -> Path:
    p = Path(os.path.expanduser(value))
    if not p.is_absolute():
        p = base / p
    return Path(os.path.normpath(p))


def _resolve_pattern(value: str, base: Path) -> str:
    return os.path.normpath(_resolve(value, base))


def _labels(value: Any, err: Any) -> Mapping[str, str]:
    if not isinstance(value, dict):
        raise err("must be a table such as { environment = \"prod\" }")
    out: dict[str, str] = {}
    for k, v in value.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, (int, float)):
            v = str(v)
        elif not isinstance(v, str):
            raise err(f"label {k!r} must be a string")
        out[str(k)] = v
    return MappingProxyType(out)


def _str_list(value: Any, err: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise err(f"{what} must be a list of non-empty strings")
    return tuple(value)


def _store(s: Any, i: int, base: Path, where: _Where, world_readable: bool) -> StoreConfig:
    if not isinstance(s, dict):
        raise ConfigError(f"{where('store', i)}: each [[store]] must be a table")
    raw_name = s.get("name")
    label = f"store {raw_name!r}" if isinstance(raw_name, str) and raw_name else f"store #{i + 1}"

    def err(key: str | None, msg: str) -> ConfigError:
        return ConfigError(f"{where('store', i, key)}: {label}: {msg}")

    for key in s:
        if key not in _STORE_KEYS:
            raise err(key, f"unknown key {key!r} (known keys: {', '.join(sorted(_STORE_KEYS))})")
    if not isinstance(raw_name, str) or not raw_name.strip():
        raise err("name", "'name' is required and must be a non-empty string")
    name = raw_name.strip()

    stype = s.get("type", "auto")
    if not isinstance(stype, str) or _TYPE_ALIASES.get(stype.lower(), stype.lower()) not in STORE_TYPES:
        raise err("type", f"type must be one of {', '.join(STORE_TYPES)} (got {stype!r})")
    stype = _TYPE_ALIASES.get(stype.lower(), stype.lower())

    if "paths" not in s:
        raise err(None, "'paths' is required (a list of files or globs)")
    paths = tuple(_resolve_pattern(p, base) for p in _str_list(s["paths"], lambda m: err("paths", m), "paths"))
    exclude_raw = _str_list(s.get("exclude", []), lambda m: err("exclude", m), "exclude") if s.get("exclude") else ()
    # Excludes with a directory part are paths (relative ones resolve against the
    # config's directory unless they start with "**"); bare names match file names.
    exclude = tuple(
        _resolve_pattern(x, base) if (os.sep in x or "/" in x) and not x.startswith("**") else x
        for x in exclude_raw
    )
    labels = _labels(s.get("labels", {}), lambda m: err("labels", m))

    follow = s.get("follow_symlinks", True)
    if not isinstance(follow, bool):
        raise err("follow_symlinks", "follow_symlinks must be true or false")

    sources = [k for k in ("password", "password_file", "password_env") if k in s]
    if len(sources) > 1:
        raise err(sources[1], f"use only one of password, password_file and password_env (found {', '.join(sources)})")
    password: Secret | None = None
    password_file: str | None = None
    password_env: str | None = None
    if "password" in s:
        if not isinstance(s["password"], str):
            raise err("password", "password must be a string")
        if world_readable:
            cfg = where.path or "the configuration file"
            raise err(
                "password",
                f"an inline password is not allowed because {cfg} is readable by every user; "
                f"run 'chmod o-r {cfg}' or move the password to a file (password_file) "
                "or an environment variable (password_env)",
            )
        password = Secret(s["password"])
    elif "password_file" in s:
        if not isinstance(s["password_file"], str) or not s["password_file"].strip():
            raise err("password_file", "password_file must be a non-empty path")
        password_file = str(_resolve(s["password_file"], base))
    elif "password_env" in s:
        v = s["password_env"]
        if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise err("password_env", "password_env must be an environment variable name")
        password_env = v

    reload_name = s.get("reload")
    if reload_name is not None and (not isinstance(reload_name, str) or not reload_name.strip()):
        raise err("reload", "reload must name a [reload.<name>] action, e.g. reload = \"nginx\"")
    verify = _verify_endpoints(s.get("verify", []), base, err)
    try:
        verify_timeout = parse_duration(s.get("verify_timeout", DEFAULT_VERIFY_TIMEOUT))
    except ValueError as e:
        raise err("verify_timeout", str(e)) from None
    if verify_timeout <= 0:
        raise err("verify_timeout", "verify_timeout must be more than 0 seconds")
    webroot = s.get("acme_webroot")
    if webroot is not None:
        if not isinstance(webroot, str) or not webroot.strip():
            raise err("acme_webroot", "acme_webroot must be the folder the web server serves "
                                      "/.well-known/acme-challenge/ from")
        webroot = str(_resolve(webroot, base))
    role = s.get("role")
    if role is not None and role not in STORE_ROLES:
        raise err("role", f"role must be \"service\" (certificates a service uses) or \"trust_anchor\" "
                          f"(a trust store: inventoried, never renewed); got {role!r}")

    return StoreConfig(
        name=name, type=stype, paths=paths, exclude=exclude, labels=labels, password=password,
        password_file=password_file, password_env=password_env, follow_symlinks=follow,
        reload=reload_name.strip() if reload_name else None, verify=verify, verify_timeout=verify_timeout,
        acme_webroot=webroot, role=role,
    )
