"""The ``[renewal]`` table and its ``[[renewal.auto]]`` rules.

```toml
[renewal]
default_template = "web"   # for `certfleet renew` without --template (default: the only template)
check_interval = "10m"     # how often the fleet is checked for auto-renewal (default 10m)
retry_after = "1d"         # after a job at a location ended (verified, failed, rolled back,
                           # cancelled), leave that location alone this long (default 1d)

[[renewal.auto]]           # rules, in order: the first that matches a location decides
template = "web"           # required, a name under [templates]
match = { service = "nginx", environment = "prod" }   # location labels, all must be equal
hosts = ["web-*"]          # fnmatch on the hostname (case-insensitive); any of them
paths = ["/etc/nginx/**"]  # * within one path segment, ** any depth; any of them
days_before = 30           # OR percent = 33 (of the lifetime left); default: at 2/3 of the lifetime
window = "sat,sun 22:00-04:00 Europe/Berlin"   # only inside this maintenance window
jitter = 0.05              # spread by up to this fraction of the lifetime, either way
```

A rule without ``match``, ``hosts`` and ``paths`` matches every location. Locations that no rule
matches are never renewed automatically. A rule's template is checked against the configured
templates when the renewal service is built (:meth:`RenewalSettings.check_templates`): the
rules are read with the file, the templates they name need ``[issuers]`` to mean anything.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Collection, Mapping

from collector.config.reader import ConfigError, Table
from collector.domain.autorules import DEFAULT_JITTER, AutoRule
from collector.domain.jobstates import MaintenanceWindow
from collector.errors import InvalidInput

__all__ = ["RenewalSettings", "load_auto_rules", "load_rule", "load_settings"]

DEFAULT_CHECK_INTERVAL = 600.0
DEFAULT_RETRY_AFTER = dt.timedelta(days=1)
RENEWAL_KEYS = frozenset({"default_template", "check_interval", "retry_after", "auto"})
RULE_KEYS = frozenset({"template", "match", "hosts", "paths", "days_before", "percent", "window", "jitter"})

#: the configured templates a rule may name: names, or {name: Template} (then its validity is checked too)
Templates = Collection[str] | Mapping[str, Any]


@dataclass(frozen=True)
class RenewalSettings:
    default_template: str = ""
    check_interval: float = DEFAULT_CHECK_INTERVAL      # seconds
    retry_after: dt.timedelta = DEFAULT_RETRY_AFTER
    rules: tuple[AutoRule, ...] = ()                    # [[renewal.auto]], in order
    rule_tables: tuple[Table, ...] = field(default=(), repr=False, compare=False)   # where each is written

    @classmethod
    def from_table(cls, t: Table) -> RenewalSettings:
        t.check_keys(RENEWAL_KEYS)
        default = t.get("default_template", "")
        if not isinstance(default, str):
            raise t.error(f"[renewal] default_template must be the name of a template, not {default!r}",
                          "default_template")
        interval = t.duration("check_interval", "10m")
        if interval < 1:
            raise t.error("[renewal] check_interval: must be at least one second", "check_interval")
        tables = _rule_tables(t)
        return cls(default_template=default, check_interval=interval,
                   retry_after=dt.timedelta(seconds=t.duration("retry_after", "1d")),
                   rules=tuple(read_rule(rt, i) for i, rt in enumerate(tables, start=1)), rule_tables=tuple(tables))

    def check_templates(self, templates: Templates) -> None:
        """Every rule names a configured template, and a ``days_before`` shorter than its validity."""
        for rule, t in zip(self.rules, self.rule_tables or [_table(None, r.index) for r in self.rules]):
            _check_template(rule, t, templates)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _rule_error(t: Table, key: str, message: str) -> ConfigError:
    return t.error(f"{t.label}: {key}: {message}", key)


def _table(values: Any, index: int, parent: Table | None = None) -> Table:
    label = f"[[renewal.auto]] rule {index}"
    if parent is not None:
        return parent.sub(values, label, "auto", index - 1)
    return Table(values, label, ("renewal", "auto", index - 1))


def _rule_tables(t: Table) -> list[Table]:
    raw = t.get("auto")
    if raw is None:
        return []
    if isinstance(raw, Mapping):
        raise t.error("[renewal] auto: write the rules as [[renewal.auto]] (a list of tables), not [renewal.auto]",
                      "auto")
    if not isinstance(raw, list):
        raise t.error("[renewal] auto: expected a list of [[renewal.auto]] tables", "auto")
    out = []
    for i, values in enumerate(raw, start=1):
        if not isinstance(values, Mapping):
            raise _table({}, i, t).error(f"[[renewal.auto]] rule {i}: expected a table of settings")
        out.append(_table(values, i, t))
    return out


def _string_list(t: Table, key: str) -> tuple[str, ...]:
    value = t[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise _rule_error(t, key, "expected a non-empty list of non-empty strings")
    return tuple(value)


def _number(t: Table, key: str) -> float:
    value = t[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _rule_error(t, key, f"expected a number, not {value!r}")
    return float(value)


def read_rule(t: Table, index: int) -> AutoRule:
    """One rule from its table, as written (the template it names is checked by :func:`load_rule`)."""
    t.check_keys(RULE_KEYS)
    template = t.get("template")
    if not isinstance(template, str) or not template:
        raise _rule_error(t, "template", "required: the name of a template under [templates]")
    match: dict[str, str] = {}
    if "match" in t:
        raw = t["match"]
        if not isinstance(raw, Mapping) or not raw:
            raise _rule_error(t, "match", "expected a non-empty table of label = \"value\"")
        for k, v in raw.items():
            if not isinstance(v, str):
                raise _rule_error(t, "match", f"label {k!r}: expected a string value, not {v!r}")
            match[str(k)] = v
    hosts = _string_list(t, "hosts") if "hosts" in t else ()
    paths = _string_list(t, "paths") if "paths" in t else ()

    days_before = percent = None
    if "days_before" in t and "percent" in t:
        raise _rule_error(t, "days_before", "give days_before or percent, not both")
    if "days_before" in t:
        days_before = _number(t, "days_before")
        if days_before < 0:
            raise _rule_error(t, "days_before", f"must not be negative, not {_num(days_before)}")
    if "percent" in t:
        percent = _number(t, "percent")
        if not 0 < percent < 100:
            raise _rule_error(t, "percent", f"the percentage of the lifetime left must be between 0 and 100, "
                                            f"not {_num(percent)}")
    window = None
    if "window" in t:
        raw = t["window"]
        if not isinstance(raw, str):
            raise _rule_error(t, "window", f"expected a string like \"sat,sun 22:00-04:00 Europe/Berlin\", not {raw!r}")
        try:
            window = MaintenanceWindow.parse(raw)
        except InvalidInput as e:
            raise _rule_error(t, "window", str(e)) from None
    jitter = DEFAULT_JITTER
    if "jitter" in t:
        jitter = _number(t, "jitter")
        if not 0 <= jitter < 0.5:
            raise _rule_error(t, "jitter", f"a fraction of the lifetime in [0, 0.5), not {_num(jitter)}")
    try:
        return AutoRule(index=index, template=template, match=match, hosts=hosts, paths=paths,
                        days_before=days_before, percent=percent, window=window, jitter=jitter)
    except re.error as e:   # a path pattern the regex engine refuses (e.g. a bad class)
        raise _rule_error(t, "paths", f"bad pattern: {e}") from None


def _check_template(rule: AutoRule, t: Table, templates: Templates) -> None:
    if rule.template not in templates:
        known = ", ".join(sorted(templates)) or "none configured"
        raise _rule_error(t, "template", f"no template {rule.template!r} (known: {known})")
    validity = getattr(templates.get(rule.template) if isinstance(templates, Mapping) else None, "validity", None)
    if rule.days_before is not None and isinstance(validity, dt.timedelta) \
            and dt.timedelta(days=rule.days_before) >= validity:
        raise _rule_error(
            t, "days_before",
            f"{_num(rule.days_before)} days is not shorter than template {rule.template!r}'s validity of "
            f"{validity.days} days: every new certificate would be due for renewal at once")


def load_rule(index: int, table: Any, templates: Templates) -> AutoRule:
    """One rule from its table, its template checked; ``index`` (from 1) names it in errors."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"[[renewal.auto]] rule {index}: expected a table of settings")
    t = table if isinstance(table, Table) else _table(table, index)
    rule = read_rule(t, index)
    _check_template(rule, t, templates)
    return rule


def _renewal_table(renewal_table: Mapping[str, Any] | None) -> Table:
    if isinstance(renewal_table, Table):
        return renewal_table
    if renewal_table is not None and not isinstance(renewal_table, Mapping):
        raise ConfigError("[renewal] must be a table")
    return Table(renewal_table, "[renewal]", ("renewal",))


def load_auto_rules(renewal_table: Mapping[str, Any] | None, templates: Templates) -> list[AutoRule]:
    """The ``[[renewal.auto]]`` rules of the ``[renewal]`` table, in order, their templates checked; []
    when there are none. ``templates``: names, or ``{name: Template}`` (then a ``days_before`` as long
    as the template's validity is refused)."""
    rules = []
    for i, t in enumerate(_rule_tables(_renewal_table(renewal_table)), start=1):
        rule = read_rule(t, i)
        _check_template(rule, t, templates)
        rules.append(rule)
    return rules


def load_settings(renewal_table: Mapping[str, Any] | None) -> RenewalSettings:
    """The ``[renewal]`` table (``check_interval``, ``retry_after``, ...); unknown keys are errors."""
    return RenewalSettings.from_table(_renewal_table(renewal_table))
