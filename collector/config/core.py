"""The collector's TOML configuration: the ``[collector]`` table, and :func:`load_config`, which
reads the file into one :class:`CollectorConfig` with a typed value per table.

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

The other tables, each read by its own module of this package: ``[issuers.<name>]`` (each issuer
type reads its settings: collector/issuers/settings.py), ``[templates.<name>]`` (templates.py),
``[renewal]`` and ``[[renewal.auto]]`` (renewal.py), ``[policy]`` (policy.py), ``[notify]`` and
``[[notify.channel]]`` (notify.py), ``[audit]`` (audit.py), ``[limits]`` (limits.py), ``[netscan]`` (netscan.py),
``[approvals]`` (approvals.py), ``[metrics]`` and ``[log]`` (metrics.py). Errors name the file and line.
"""
from __future__ import annotations

import pathlib
import tomllib
from dataclasses import dataclass, field
from typing import Any, Mapping

from collector.config.approvals import ApprovalSettings
from collector.config.audit import AuditSettings
from collector.config.metrics import LogSettings, MetricsSettings
from collector.config.limits import StreamLimits
from collector.config.netscan import NetscanSettings
from collector.config.notify import NotifySettings
from collector.config.policy import PolicySettings
from collector.config.reader import ConfigError, Table, Where, parse_duration
from collector.config.renewal import RenewalSettings
from collector.config.templates import load_templates
from collector.domain.templates import Template, TemplateConfigError
from collector.notify.channels import NotifyConfigError

__all__ = ["CollectorConfig", "ConfigError", "config_from_dict", "load_config", "parse_config", "parse_duration",
           "split_hostport"]


def split_hostport(value: str, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{what}: {value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


#: the tables a collector config may have
TABLES = ("collector", "issuers", "templates", "renewal", "policy", "notify", "audit", "metrics", "log", "limits",
          "netscan", "approvals", "keys", "crl")
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
    #: [issuers.<name>]: each a table its issuer type reads (collector/issuers/factory.py builds them)
    issuers: Mapping[str, Table] = field(default_factory=dict)
    templates: Mapping[str, Template] = field(default_factory=dict)
    renewal: RenewalSettings = field(default_factory=RenewalSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)   # [metrics]
    log: LogSettings = field(default_factory=LogSettings)               # [log]
    limits: StreamLimits = field(default_factory=StreamLimits)
    netscan: NetscanSettings = field(default_factory=NetscanSettings)
    approvals: ApprovalSettings = field(default_factory=ApprovalSettings)
    #: [keys]: the key-encryption key for CA keys in the registry (collector/pki/keywrap.py)
    keys: Mapping[str, Any] = field(default_factory=dict)
    #: [crl]: listen (HOST:PORT of the plain-HTTP CRL listener), url (its public base URL, written
    #: into issued certificates as CRL distribution point): collector/server/crl_http.py
    crl: Mapping[str, Any] = field(default_factory=dict)
    #: the tables after [collector] as written, for tools that compare what the file says; every
    #: feature reads its typed value above
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def pki_dir(self) -> pathlib.Path:
        return self.data_dir / "pki"

    @property
    def agent_endpoint(self) -> str:
        return self.advertise or self.listen

    @property
    def enroll_endpoint(self) -> str:
        return self.enroll_advertise or self.enroll_listen

    @property
    def base_dir(self) -> pathlib.Path:
        """Where relative paths in the settings are taken from: the config file's folder."""
        return self.path.resolve().parent if self.path else self.data_dir


def load_config(path: str | pathlib.Path) -> CollectorConfig:
    p = pathlib.Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    return parse_config(text, p)


def parse_config(text: str, path: pathlib.Path | None = None) -> CollectorConfig:
    """The config in ``text`` (read from ``path``: relative paths are its folder's, errors name it)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # tomllib messages say "... (at line N, column M)" and never echo values
        raise ConfigError(f"{path or 'config'}: not valid TOML: {e}") from None
    base = path.resolve().parent if path else pathlib.Path.cwd()
    return config_from_dict(raw, base=base, path=path, where=Where(path, text))


def config_from_dict(raw: Mapping[str, Any], base: pathlib.Path, path: pathlib.Path | None = None,
                     where: Where | None = None) -> CollectorConfig:
    """The config from its parsed tables; ``base``: where relative paths are taken from."""
    root = Table(raw, "config", (), where)
    unknown = sorted(set(raw) - set(TABLES))
    if unknown:   # a misspelt table would leave its feature unconfigured without a word
        raise root.error(f"unknown table(s) {', '.join(f'[{u}]' for u in unknown)} "
                         f"(known: {', '.join(f'[{t}]' for t in TABLES)})", unknown[0])
    section = root.table("collector", "[collector]")
    section.check_keys(_KEYS)
    data_dir = pathlib.Path(section.get("data_dir", "data"))
    if not data_dir.is_absolute():
        data_dir = base / data_dir
    url = section.get("database_url") or f"sqlite:///{data_dir / 'registry.db'}"
    listen = section.get("listen", "127.0.0.1:7443")
    enroll_listen = section.get("enroll_listen", "127.0.0.1:7444")
    for key, value in (("listen", listen), ("enroll_listen", enroll_listen)):
        _hostport(section, key, value)
    for key in ("advertise", "enroll_advertise"):
        if section.get(key):
            _hostport(section, key, section[key])
    names = section.get("server_names", ["localhost", "127.0.0.1"])
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names) or not names:
        raise section.error("[collector] server_names must be a non-empty list of names", "server_names")
    return CollectorConfig(
        path=path,
        data_dir=data_dir,
        database_url=url,
        listen=listen,
        enroll_listen=enroll_listen,
        advertise=section.get("advertise", ""),
        enroll_advertise=section.get("enroll_advertise", ""),
        server_names=tuple(names),
        token_ttl=section.duration("token_ttl", "1h"),
        agent_cert_lifetime=section.duration("agent_cert_lifetime", "30d"),
        admin_cert_lifetime=section.duration("admin_cert_lifetime", "365d"),
        issuers=_issuers(root),
        templates=load_templates(root.table("templates", "[templates]", error=TemplateConfigError, noun="setting")),
        renewal=RenewalSettings.from_table(root.table("renewal", "[renewal]")),
        policy=PolicySettings.from_table(root.table("policy", "[policy]"), path.resolve().parent if path else data_dir),
        notify=NotifySettings.from_table(root.table("notify", "[notify]", error=NotifyConfigError)),
        audit=AuditSettings.from_table(root.table("audit", "[audit]")),
        metrics=MetricsSettings.from_table(root.table("metrics", "[metrics]"), path.resolve().parent if path else base),
        log=LogSettings.from_table(root.table("log", "[log]")),
        limits=StreamLimits.from_table(root.table("limits", "[limits]")),
        netscan=NetscanSettings.from_table(root.table("netscan", "[netscan]")),
        approvals=ApprovalSettings.from_table(root.table("approvals", "[approvals]")),
        keys=dict(root.table("keys", "[keys]")),
        crl=_crl(root),
        extra={k: v for k, v in raw.items() if k != "collector"},
    )


def _hostport(section: Table, key: str, value: Any) -> None:
    try:
        split_hostport(value, f"[collector] {key}")
    except ConfigError as e:
        raise section.error(str(e), key) from None


#: the settings of ``[crl]`` (collector/server/crl_http.py)
CRL_KEYS = frozenset({"listen", "url"})


def _crl(root: Table) -> dict[str, Any]:
    section = root.table("crl", "[crl]")
    section.check_keys(CRL_KEYS)
    if section.get("listen"):
        _hostport(section, "listen", section["listen"])
    url = section.get("url", "")
    if url and not str(url).startswith("http://"):
        raise section.error("[crl] url must be a plain http:// URL (relying parties fetch CRLs without TLS)", "url")
    return dict(section)


def _issuers(root: Table) -> dict[str, Table]:
    """``[issuers.<name>]``: a table per issuer (its name, type and settings are checked as it is built)."""
    table = root.table("issuers", "[issuers]", error=TemplateConfigError, noun="setting")
    out: dict[str, Table] = {}
    for name, settings in table.items():
        if not isinstance(settings, Mapping):
            raise table.error(f"issuer {name!r}: expected a table of settings", name)
        out[name] = table.sub(settings, f"issuer {name!r}", name)
    return out
