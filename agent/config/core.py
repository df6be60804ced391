"""The agent's own tables of its configuration file: ``[agent]``, ``[[store]]``, ``[reload.<name>]``.

The whole file (TOML)

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
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from agent.config.values import Secret, Table, Where, parse_size
from agent.discovery.settings import DiscoverySettings
from agent.metrics.settings import LogSettings, MetricsSettings
from agent.endpoints.settings import EndpointSettings
from agent.errors import ConfigError, PasswordUnavailable, ReloadNotAllowed
from agent.scan.globs import store_for
from agent.windows.settings import WindowsSettings

__all__ = [
    "AgentConfig", "StoreConfig", "ReloadAction", "VerifyEndpoint", "STORE_TYPES", "STORE_ROLES", "TOP_KEYS",
    "DEFAULT_RELOAD_TIMEOUT", "DEFAULT_VERIFY_TIMEOUT", "default_data_dir", "default_hostname", "agent_table",
    "reload_actions", "store_table",
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
TOP_KEYS = {"agent", "store", "collector", "reload"}      # besides the feature sections (agent/config/__init__.py)
_RELOAD_KEYS = {"command", "timeout"}
_VERIFY_KEYS = {"host", "port", "sni", "ca_file"}
_ACTION_NAME = re.compile(r"[A-Za-z0-9_.\-]+")

DEFAULT_SCAN_INTERVAL = 15 * 60.0
DEFAULT_MAX_FILE_SIZE = 10 * 1024 * 1024
DEFAULT_RELOAD_TIMEOUT = 30.0
DEFAULT_VERIFY_TIMEOUT = 10.0


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
    role: str | None = None                         # "trust_anchor" or "service"; None: by path (agent/scan/trust.py)

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
    """The whole agent configuration: the agent's own tables and, typed, each feature's section."""

    config_path: Path | None
    data_dir: Path
    hostname: str
    scan_interval: float = DEFAULT_SCAN_INTERVAL      # seconds
    max_file_size: int = DEFAULT_MAX_FILE_SIZE        # bytes
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    stores: tuple[StoreConfig, ...] = ()
    collector: Mapping[str, Any] = field(default_factory=dict)
    reload_actions: Mapping[str, ReloadAction] = field(default_factory=lambda: MappingProxyType({}))
    endpoints: EndpointSettings = field(default_factory=EndpointSettings)      # [endpoints]
    discovery: DiscoverySettings = field(default_factory=DiscoverySettings)    # [discovery]
    windows: WindowsSettings = field(default_factory=WindowsSettings)          # [windows]
    metrics: MetricsSettings = field(default_factory=MetricsSettings)          # [metrics]: exporter mode
    log: LogSettings = field(default_factory=LogSettings)                      # [log]

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

    def store_for(self, path: str) -> StoreConfig | None:
        """The first store whose paths (and excludes) cover ``path``; None when no store does.

        Decided from the globs alone (agent/scan/globs.py): nothing is read.
        """
        return store_for(self.stores, path)

    def labels_for(self, store: StoreConfig) -> Mapping[str, str]:
        """Host labels overlaid with the store's labels."""
        merged = dict(self.labels)
        merged.update(store.labels)
        return MappingProxyType(merged)


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


# --------------------------------------------------------------------------- the tables

def agent_table(raw: Any, where: Where, base: Path) -> dict[str, Any]:
    """The ``[agent]`` table: AgentConfig's data_dir, hostname, scan_interval, max_file_size and labels."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where(None, 0, 'agent')}: 'agent' must be a table ([agent])")
    for key in raw:
        if key not in _AGENT_KEYS:
            raise ConfigError(
                f"{where('agent', 0, key)}: unknown key {key!r} in [agent] "
                f"(known keys: {', '.join(sorted(_AGENT_KEYS))})"
            )
    table = Table(raw, where, "agent", keyed=True, base=base)
    agent_err = table.error

    data_dir_raw = raw.get("data_dir", "")
    if not isinstance(data_dir_raw, str):
        raise agent_err("data_dir", "must be a string")
    data_dir = _resolve(data_dir_raw, base) if data_dir_raw else default_data_dir()

    hostname = raw.get("hostname", "")
    if not isinstance(hostname, str):
        raise agent_err("hostname", "must be a string")
    hostname = hostname.strip() or default_hostname()

    scan_interval = table.duration("scan_interval", DEFAULT_SCAN_INTERVAL)
    if scan_interval < 1:
        raise agent_err("scan_interval", "must be at least 1 second")
    try:
        max_file_size = parse_size(raw.get("max_file_size", DEFAULT_MAX_FILE_SIZE))
    except ValueError as e:
        raise agent_err("max_file_size", str(e)) from None
    labels = _labels(raw.get("labels", {}), lambda m: agent_err("labels", m))
    return dict(data_dir=data_dir, hostname=hostname, scan_interval=scan_interval, max_file_size=max_file_size,
                labels=labels)


def reload_actions(raw: Any, where: Where) -> Mapping[str, ReloadAction]:
    """The ``[reload.<name>]`` tables."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where(None, 0, 'reload')}: 'reload' must hold tables such as [reload.nginx]")
    out: dict[str, ReloadAction] = {}
    for name, body in raw.items():
        table = Table(body if isinstance(body, dict) else {}, where, f"reload.{name}")
        err = table.error
        if not _ACTION_NAME.fullmatch(name):
            raise err(None, "action names may use letters, digits, '.', '_' and '-' only")
        if not isinstance(body, dict):
            raise ConfigError(
                f"{where(None, 0, 'reload')}: reload {name!r} must be a table such as "
                f"[reload.{name}] with command = [\"...\", \"...\"]"
            )
        table.reject_unknown(_RELOAD_KEYS)
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
        timeout = table.duration("timeout", DEFAULT_RELOAD_TIMEOUT)
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


def store_table(s: Any, i: int, base: Path, where: Where, world_readable: bool) -> StoreConfig:
    """The ``i``-th ``[[store]]`` table."""
    if not isinstance(s, dict):
        raise ConfigError(f"{where('store', i)}: each [[store]] must be a table")
    raw_name = s.get("name")
    label = f"store {raw_name!r}" if isinstance(raw_name, str) and raw_name else f"store #{i + 1}"
    table = Table(s, where, "store", index=i, head=label, base=base)
    err = table.error
    table.reject_unknown(_STORE_KEYS)
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
    verify_timeout = table.duration("verify_timeout", DEFAULT_VERIFY_TIMEOUT)
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
