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

from pathlib import Path
from typing import Any, Callable, Mapping

from collector.domain.templates import Template, TemplateConfigError
from collector.issuers.base import Issuer
from collector.issuers.internal_ca import InternalCA
from collector.issuers.settings import check_name, issuer_error

__all__ = ["build_issuers", "FACTORIES", "IssuerFactory", "check_template_issuers"]

# (name, settings, data_dir, base_dir, extra keyword arguments) -> Issuer
IssuerFactory = Callable[..., Issuer]


def _internal_ca(name: str, cfg: Mapping[str, Any], data_dir: Path, base_dir: Path | None, **kw: Any) -> Issuer:
    shared = kw.get("shared_state")
    return InternalCA.from_config(name, cfg, data_dir, base_dir,
                                  shared=shared(name, Path(data_dir) / "issuers" / name) if shared else None)


def _acme(name: str, cfg: Mapping[str, Any], data_dir: Path, base_dir: Path | None, **kw: Any) -> Issuer:
    try:
        # optional dependency: the acme package (certfleet[collector]) is imported only when configured
        from collector.issuers.acme import AcmeIssuer
    except ImportError as e:  # the optional dependency is missing
        raise TemplateConfigError(
            f"issuer {name!r}: type \"acme\" needs the acme package: install certfleet[collector] ({e})"
        ) from None
    shared_key = kw.get("shared_key")
    return AcmeIssuer.from_config(name, cfg, data_dir, base_dir, solver=kw.get("solver"),
                                  shared_key=shared_key(name, "acme_account_key") if shared_key else None)


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
    shared_state: Callable[[str, Path], Any] | None = None,
    shared_key: Callable[[str, str], Any] | None = None,
) -> dict[str, Issuer]:
    """``{name: Issuer}`` from ``{name: {"type": ..., ...}}``.

    ``data_dir``: each issuer keeps its state in ``data_dir/issuers/<name>/``.
    ``base_dir``: where relative file paths in the settings are resolved
    (the config file's folder; default ``data_dir``). ``solvers``: challenge
    solvers made in code, by issuer name (e.g. an http-01 solver that asks the
    agent to serve the challenge); they override the configured ``challenge``.
    ``shared_state(name, old_dir)``: the registry-backed state of an internal CA
    (collector/issuers/ca_registry.py); without it, the state is in ``data_dir`` (one collector).
    ``shared_key(name, kind)``: the registry's wrapped key of that kind (the ACME account key).
    """
    table = dict(FACTORIES if factories is None else factories)
    out: dict[str, Issuer] = {}
    if not config:
        return out
    if not isinstance(config, Mapping):
        raise TemplateConfigError("issuers: expected a table of named issuers")
    for name, cfg in config.items():
        if not isinstance(cfg, Mapping):
            raise TemplateConfigError(f"issuer {name!r}: expected a table of settings")
        check_name(name, cfg)
        kind = cfg.get("type")
        if kind not in table:
            raise issuer_error(cfg, f"issuer {name!r}: type {kind!r} is not one of: {', '.join(sorted(table))}",
                               "type")
        extra: dict[str, Any] = {}
        if shared_state is not None:
            extra["shared_state"] = shared_state
        if shared_key is not None:
            extra["shared_key"] = shared_key
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
