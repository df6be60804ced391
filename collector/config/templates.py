"""The ``[templates.<name>]`` tables of the collector config, read into
:class:`~collector.domain.templates.Template` values.

```toml
[templates.web]
issuer = "internal"                  # a name under [issuers]
key_type = "ec"                      # "ec" or "rsa"
curve = "P-256"                      # ec: "P-256" or "P-384"
# key_size = 3072                    # rsa: 2048, 3072 or 4096
validity = "90d"                     # 30s, 15m, 12h, 90d, or seconds
key_usage = ["digital_signature"]    # default: digital_signature (+ key_encipherment for rsa)
extended_key_usage = ["serverAuth"]  # default: serverAuth
allowed_san_patterns = ["*.example.com", "example.com", "10.0.0.0/8"]
allow_wildcards = false
```

An unknown key or a bad value is a :class:`~collector.domain.templates.TemplateConfigError`
naming the template, the key and (from a file) where it is written. What the name patterns
mean is collector/domain/templates.py's.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any, Mapping

from certfleet.values import parse_duration
from collector.config.reader import Table
from collector.domain.templates import (
    DOTTED_OID, EC_CURVES, EXTENDED_KEY_USAGES, KEY_TYPES, KEY_USAGES, MAX_VALIDITY, RSA_KEY_SIZES, Template,
    TemplateConfigError, as_network,
)

__all__ = ["load_template", "load_templates"]

_KU_ALIASES = {
    "digitalsignature": "digital_signature", "nonrepudiation": "content_commitment",
    "non_repudiation": "content_commitment", "contentcommitment": "content_commitment",
    "keyencipherment": "key_encipherment", "dataencipherment": "data_encipherment",
    "keyagreement": "key_agreement", "encipheronly": "encipher_only", "decipheronly": "decipher_only",
}
_EKU_LOWER = {k.lower(): k for k in EXTENDED_KEY_USAGES}
_TEMPLATE_KEYS = {
    "issuer", "key_type", "key_size", "curve", "validity", "key_usage", "extended_key_usage",
    "allowed_san_patterns", "allow_wildcards",
}
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PATTERN_LABEL_RE = re.compile(r"[a-z0-9*?\[\]!_-]{1,63}")


def load_templates(config: Mapping[str, Any] | None) -> dict[str, Template]:
    """``{name: Template}`` from the ``[templates]`` table (``{name: {key: value}}``)."""
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise TemplateConfigError("templates: expected a table of named templates")
    root = config if isinstance(config, Table) else Table(config, "[templates]", ("templates",),
                                                          error=TemplateConfigError, noun="setting")
    out: dict[str, Template] = {}
    for name, table in root.items():
        if not isinstance(table, Mapping):
            raise root.error(f"template {str(name)!r}: expected a table of settings", str(name))
        out[str(name)] = load_template(str(name), root.sub(table, f"template {str(name)!r}", str(name)))
    return out


def load_template(name: str, table: Mapping[str, Any]) -> Template:
    """One template from its table; errors name the template and the key (and where it is written)."""
    where = f"template {name!r}"
    if not isinstance(table, Mapping):
        raise TemplateConfigError(f"{where}: expected a table of settings")
    t = table if isinstance(table, Table) else Table(table, where, error=TemplateConfigError, noun="setting")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise t.error(f"{where}: a template name is 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                      "or digit")
    t.check_keys(_TEMPLATE_KEYS)
    issuer = t.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise t.error(f"{where}: 'issuer' is required: the name of an issuer under [issuers]", "issuer")

    key_type = str(t.get("key_type", "ec")).lower()
    if key_type not in KEY_TYPES:
        raise t.error(f"{where}: key_type {t.get('key_type')!r} is not one of: rsa, ec", "key_type")
    key_size: int | None = None
    curve: str | None = None
    if key_type == "rsa":
        if "curve" in t:
            raise t.error(f"{where}: 'curve' applies to ec keys; an rsa template sets key_size", "curve")
        raw = t.get("key_size", 2048)
        if isinstance(raw, bool) or not isinstance(raw, int) or raw not in RSA_KEY_SIZES:
            raise t.error(f"{where}: key_size {raw!r} is not one of 2048, 3072, 4096", "key_size")
        key_size = raw
    else:
        if "key_size" in t:
            raise t.error(f"{where}: 'key_size' applies to rsa keys; an ec template sets curve", "key_size")
        raw_curve = str(t.get("curve", "P-256")).upper().replace("SECP256R1", "P-256").replace("SECP384R1", "P-384")
        if raw_curve not in EC_CURVES:
            raise t.error(f"{where}: curve {t.get('curve')!r} is not one of P-256, P-384", "curve")
        curve = raw_curve

    validity = _parse_validity(t.get("validity", "90d"), t)
    default_ku = ["digital_signature", "key_encipherment"] if key_type == "rsa" else ["digital_signature"]
    key_usage = _parse_key_usage(t.get("key_usage", default_ku), t)
    eku = _parse_eku(t.get("extended_key_usage", ["serverAuth"]), t)
    patterns = _parse_patterns(t.get("allowed_san_patterns"), t)
    wild = t.get("allow_wildcards", False)
    if not isinstance(wild, bool):
        raise t.error(f"{where}: allow_wildcards must be true or false", "allow_wildcards")
    return Template(
        name=name, issuer=issuer, key_type=key_type, key_size=key_size, curve=curve, validity=validity,
        key_usage=key_usage, extended_key_usage=eku, allowed_san_patterns=patterns, allow_wildcards=wild,
    )


def _parse_validity(value: Any, t: Table) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int) and not isinstance(value, bool):
        seconds = float(value)
    else:
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise t.error(f"{t.label}: validity {value!r} is not a duration (use e.g. 12h, 90d)", "validity") from None
    if seconds < 60:
        raise t.error(f"{t.label}: validity must be at least one minute", "validity")
    if seconds > MAX_VALIDITY.total_seconds():
        raise t.error(f"{t.label}: validity must be at most 3650d", "validity")
    return dt.timedelta(seconds=seconds)


def _str_list(value: Any, t: Table, key: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise t.error(f"{t.label}: {key} must be a list of strings", key)
    return list(value)


def _parse_key_usage(value: Any, t: Table) -> tuple[str, ...]:
    out: list[str] = []
    for item in _str_list(value, t, "key_usage"):
        norm = item.strip().replace("-", "_")
        norm = norm if norm in KEY_USAGES else _KU_ALIASES.get(norm.lower().replace("_", ""), "")
        if not norm:
            if item.replace("_", "").lower() in ("keycertsign", "crlsign"):
                raise t.error(f"{t.label}: key_usage {item!r} is for CA certificates, not for a template", "key_usage")
            raise t.error(f"{t.label}: unknown key_usage {item!r}; known: {', '.join(KEY_USAGES)}", "key_usage")
        if norm not in out:
            out.append(norm)
    if not out:
        raise t.error(f"{t.label}: key_usage must name at least one usage", "key_usage")
    return tuple(out)


def _parse_eku(value: Any, t: Table) -> tuple[str, ...]:
    out: list[str] = []
    for item in _str_list(value, t, "extended_key_usage"):
        name = _EKU_LOWER.get(item.strip().lower())
        if name is None:
            if not DOTTED_OID.fullmatch(item.strip()):
                raise t.error(
                    f"{t.label}: unknown extended_key_usage {item!r}; use one of "
                    f"{', '.join(EXTENDED_KEY_USAGES)} or a dotted OID", "extended_key_usage"
                )
            name = item.strip()
        if name not in out:
            out.append(name)
    return tuple(out)


def _parse_patterns(value: Any, t: Table) -> tuple[str, ...]:
    if value is None:
        raise t.error(
            f"{t.label}: allowed_san_patterns is required (e.g. [\"*.example.com\", \"10.0.0.0/8\"]; \"**\" allows any DNS name)", "allowed_san_patterns"
        )
    items = _str_list(value, t, "allowed_san_patterns")
    if not items:
        raise t.error(f"{t.label}: allowed_san_patterns must name at least one pattern", "allowed_san_patterns")
    out: list[str] = []
    for raw in items:
        p = raw.strip().lower().rstrip(".")
        if as_network(p) is None:
            labels = p.split(".")
            if not p or not all(_PATTERN_LABEL_RE.fullmatch(lb) for lb in labels) or "**" in labels[1:]:
                raise t.error(
                    f"{t.label}: allowed_san_patterns entry {raw!r} is neither a DNS pattern "
                    "(labels of letters, digits, '-', with * ? [..] wildcards; '**' only first) nor an IP network", "allowed_san_patterns"
                )
            if any("**" in lb and lb != "**" for lb in labels):
                raise t.error(f"{t.label}: in {raw!r}, '**' must be a whole label", "allowed_san_patterns")
        if p not in out:
            out.append(p)
    return tuple(out)
