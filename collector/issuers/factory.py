"""Build the configured issuers from the ``[issuers]`` table: an explicit table of types.

```toml
[issuers.internal]
type = "internal_ca"          # see collector.issuers.internal_ca for its settings

[issuers.letsencrypt]
type = "acme"                 # see collector.issuers.acme for its settings
directory_url = "https://acme.example/dir"
```

``build_issuers(config["issuers"], data_dir)`` returns ``{name: Issuer}``.
Nothing registers itself on import: a new issuer type is one entry in
:data:`FACTORIES` (or in the ``factories`` argument). Modules with heavy or
optional dependencies (``acme``) are imported only when configured.
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Callable, Mapping

from certfleet.values import parse_duration
from collector.issuers.base import Issuer
from collector.domain.templates import Template, TemplateConfigError

__all__ = ["build_issuers", "FACTORIES", "IssuerFactory", "check_template_issuers"]

# (name, settings, data_dir, base_dir, extra keyword arguments) -> Issuer
IssuerFactory = Callable[..., Issuer]

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _internal_ca(name: str, cfg: Mapping[str, Any], data_dir: Path, base_dir: Path | None, **_: Any) -> Issuer:
    from collector.issuers.internal_ca import InternalCA

    return InternalCA.from_config(name, cfg, data_dir, base_dir)


def _acme(name: str, cfg: Mapping[str, Any], data_dir: Path, base_dir: Path | None, **kw: Any) -> Issuer:
    try:
        from collector.issuers.acme import AcmeIssuer
    except ImportError as e:  # the optional dependency is missing
        raise TemplateConfigError(
            f"issuer {name!r}: type \"acme\" needs the acme package: install certfleet[collector] ({e})"
        ) from None
    return AcmeIssuer.from_config(name, cfg, data_dir, base_dir, solver=kw.get("solver"))


FACTORIES: dict[str, IssuerFactory] = {
    "internal_ca": _internal_ca,
    "acme": _acme,
}


def build_issuers(
    config: Mapping[str, Any] | None,
    data_dir: Path,
    *,
    base_dir: Path | None = None,
    solvers: Mapping[str, Any] | None = None,
    factories: Mapping[str, IssuerFactory] | None = None,
) -> dict[str, Issuer]:
    """``{name: Issuer}`` from ``{name: {"type": ..., ...}}``.

    ``data_dir``: each issuer keeps its state in ``data_dir/issuers/<name>/``.
    ``base_dir``: where relative file paths in the settings are resolved
    (the config file's folder; default ``data_dir``). ``solvers``: challenge
    solvers made in code, by issuer name (e.g. an http-01 solver that asks the
    agent to serve the challenge); they override the configured ``challenge``.
    """
    table = dict(FACTORIES if factories is None else factories)
    out: dict[str, Issuer] = {}
    if not config:
        return out
    if not isinstance(config, Mapping):
        raise TemplateConfigError("issuers: expected a table of named issuers")
    for name, cfg in config.items():
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise TemplateConfigError(
                f"issuer {name!r}: a name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        if not isinstance(cfg, Mapping):
            raise TemplateConfigError(f"issuer {name!r}: expected a table of settings")
        kind = cfg.get("type")
        if kind not in table:
            raise TemplateConfigError(
                f"issuer {name!r}: type {kind!r} is not one of: {', '.join(sorted(table))}"
            )
        extra: dict[str, Any] = {}
        if solvers and name in solvers:
            extra["solver"] = solvers[name]
        out[name] = table[kind](name, cfg, Path(data_dir), base_dir, **extra)
    return out


def check_template_issuers(templates: Mapping[str, Template], issuers: Mapping[str, Issuer]) -> None:
    """Raise :class:`TemplateConfigError` when a template names an issuer that is not configured."""
    for t in templates.values():
        if t.issuer not in issuers:
            known = ", ".join(sorted(issuers)) or "none configured"
            raise TemplateConfigError(f"template {t.name!r}: issuer {t.issuer!r} is not configured (issuers: {known})")


# -- helpers for the issuer modules' from_config ------------------------------



def check_keys(name: str, cfg: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise TemplateConfigError(
            f"issuer {name!r}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )


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
        raise TemplateConfigError(f"issuer {name!r}: {key} {value!r} is not a duration (use e.g. 30s, 15m, 1h, 7d)")
    return dt.timedelta(seconds=seconds)


def config_path(cfg: Mapping[str, Any], key: str, base: Path) -> Path | None:
    value = cfg.get(key)
    if value in (None, ""):
        return None
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else base / p


def split_listen(name: str, key: str, value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TemplateConfigError(f"issuer {name!r}: {key} {value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)
