"""The ``[notify]`` table of the collector config.

```toml
[notify]
interval = "15m"                  # how often a collector runs the notifier
thresholds = [60, 30, 14, 7, 1]   # days before expiry (default)
escalate_at = 7                   # days; the escalation contact is told too (false: never)
agent_silent_after = "1d"
job_lookback = "7d"               # failed/stuck jobs changed within this are notified (once each)
max_attempts = 8                  # delivery attempts before a delivery is "failed" for good
retry_base = "1m"                 # backoff: 1m, 2m, 4m, ... at most retry_cap
retry_cap = "1h"

[notify.thresholds_by_environment]
prod = [90, 60, 30, 14, 7, 3, 1]

[notify.thresholds_by_owner]
web-team = [30, 7]

[[notify.channel]]
name = "mail"
type = "smtp"                     # smtp | webhook | slack | ticket (see collector/notify/channels)
host = "smtp.example.com"
port = 587
starttls = true
username = "certfleet"
password_file = "/etc/certfleet/smtp-password"   # or password_env; never the password itself
from = "certfleet@example.com"
to = ["pki@example.com"]          # notices without an owner (or an owner without e-mail addresses)

[[notify.channel]]
name = "hooks"
type = "webhook"                  # to the owner's webhook; url = for digests of owners without one
timeout = 10

[[notify.channel]]
name = "chat"
type = "slack"
url = "https://hooks.slack.com/services/..."

[[notify.channel]]
name = "desk"
type = "ticket"
url = "https://servicedesk.example.com/api/tickets"
token_env = "DESK_TOKEN"          # sent as a Bearer token
kinds = ["escalation", "job.failed", "job.rolled_back", "job.stuck", "policy.violation"]
```
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping

from collector.config.core import ConfigError, parse_duration
from collector.domain import notices as dec
from collector.notify.channels import Channel, NotifyConfigError, build_channel

_KEYS = {"interval", "thresholds", "thresholds_by_environment", "thresholds_by_owner", "escalate_at",
         "agent_silent_after", "job_lookback", "max_attempts", "retry_base", "retry_cap", "channel"}
DEFAULT_TICKET_KINDS = (dec.ESCALATION, dec.JOB_FAILED, dec.JOB_ROLLED_BACK, dec.JOB_STUCK, dec.POLICY_VIOLATION)


def _days(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool)
                                                             and v >= 0 for v in value):
        raise NotifyConfigError(f"{what} must be a non-empty list of whole days (>= 0)")
    return tuple(sorted(set(value), reverse=True))


def _td(section: Mapping[str, Any], key: str, default: str) -> dt.timedelta:
    try:
        return dt.timedelta(seconds=parse_duration(section.get(key, default), f"[notify] {key}"))
    except ConfigError as e:
        raise NotifyConfigError(str(e)) from None


@dataclass
class NotifySettings:
    thresholds: dec.Thresholds = field(default_factory=dec.Thresholds)
    interval: dt.timedelta = dt.timedelta(minutes=15)
    agent_silent_after: dt.timedelta = dec.DEFAULT_AGENT_SILENT_AFTER
    job_lookback: dt.timedelta = dt.timedelta(days=7)
    max_attempts: int = 8
    retry_base: dt.timedelta = dt.timedelta(minutes=1)
    retry_cap: dt.timedelta = dt.timedelta(hours=1)
    channels: dict[str, Channel] = field(default_factory=dict)
    ticket_kinds: dict[str, tuple[str, ...]] = field(default_factory=dict)   # per ticket channel

    @classmethod
    def from_config(cls, extra: Mapping[str, Any]) -> NotifySettings:
        section = extra.get("notify", {}) or {}
        if not isinstance(section, dict):
            raise NotifyConfigError("[notify] must be a table")
        unknown = sorted(set(section) - _KEYS)
        if unknown:
            raise NotifyConfigError(f"unknown key(s) in [notify]: {', '.join(unknown)}")
        by_env = section.get("thresholds_by_environment", {}) or {}
        by_owner = section.get("thresholds_by_owner", {}) or {}
        esc = section.get("escalate_at", dec.DEFAULT_ESCALATE_AT)
        if esc is False:
            esc = None
        elif not isinstance(esc, int) or isinstance(esc, bool) or esc < 0:
            raise NotifyConfigError("[notify] escalate_at must be whole days or false")
        th = dec.Thresholds(
            default=_days(section.get("thresholds", list(dec.DEFAULT_THRESHOLDS)), "[notify] thresholds"),
            by_environment={k.lower(): _days(v, f"[notify.thresholds_by_environment] {k}") for k, v in by_env.items()},
            by_owner={k.lower(): _days(v, f"[notify.thresholds_by_owner] {k}") for k, v in by_owner.items()},
            escalate_at=esc,
        )
        channels: dict[str, Channel] = {}
        kinds: dict[str, tuple[str, ...]] = {}
        raw_channels = section.get("channel", []) or []
        if not isinstance(raw_channels, list):
            raise NotifyConfigError("[[notify.channel]] must be an array of tables")
        for c in raw_channels:
            ch = build_channel(c)
            if ch.name in channels:
                raise NotifyConfigError(f"two [[notify.channel]] named {ch.name!r}")
            channels[ch.name] = ch
            if ch.type == "ticket":
                ks = tuple(c.get("kinds", DEFAULT_TICKET_KINDS))
                bad = [k for k in ks if k not in dec.KINDS]
                if bad:
                    raise NotifyConfigError(f"[[notify.channel]] {ch.name!r}: unknown kind(s) {', '.join(bad)}")
                kinds[ch.name] = ks
        max_attempts = section.get("max_attempts", 8)
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise NotifyConfigError("[notify] max_attempts must be at least 1")
        return cls(
            thresholds=th, interval=_td(section, "interval", "15m"),
            agent_silent_after=_td(section, "agent_silent_after", "1d"), job_lookback=_td(section, "job_lookback", "7d"),
            max_attempts=max_attempts, retry_base=_td(section, "retry_base", "1m"), retry_cap=_td(section, "retry_cap", "1h"),
            channels=channels, ticket_kinds=kinds,
        )
