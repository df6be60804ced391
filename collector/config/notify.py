"""The ``[notify]`` table of the collector config and its ``[[notify.channel]]`` tables.

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
webhook_allowed = ["hooks.example.com", "*.corp.example.com", "10.20.0.0/16"]
                                  # hosts owner webhooks may go to (https only; default none): names,
                                  # *.domain, or IP networks (loopback/link-local/private only if listed)

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

The channels are checked as written when the config is read; each is made, reading its secret,
when the notifier first needs it (:attr:`NotifySettings.channels`: when the collector serves), so
that commands which only read the config (``init-admin``) need neither the files nor the
environment the service gets.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping

from collector.config.reader import Table
from collector.domain import notices as dec
from collector.domain.outbound import OutboundPolicy
from collector.errors import InvalidInput
from collector.notify.channels import Channel, NotifyConfigError, build_channel, check_channel

__all__ = ["NotifySettings"]

KEYS = frozenset({"interval", "thresholds", "thresholds_by_environment", "thresholds_by_owner", "escalate_at",
                  "agent_silent_after", "job_lookback", "max_attempts", "retry_base", "retry_cap", "channel", "webhook_allowed"})
DEFAULT_TICKET_KINDS = (dec.ESCALATION, dec.JOB_FAILED, dec.JOB_ROLLED_BACK, dec.JOB_STUCK, dec.POLICY_VIOLATION)


def _days(t: Table, key: str, value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool)
                                                             and v >= 0 for v in value):
        raise t.error(f"{what} must be a non-empty list of whole days (>= 0)", key)
    return tuple(sorted(set(value), reverse=True))


@dataclass
class NotifySettings:
    thresholds: dec.Thresholds = field(default_factory=dec.Thresholds)
    interval: dt.timedelta = dt.timedelta(minutes=15)
    agent_silent_after: dt.timedelta = dec.DEFAULT_AGENT_SILENT_AFTER
    job_lookback: dt.timedelta = dt.timedelta(days=7)
    max_attempts: int = 8
    retry_base: dt.timedelta = dt.timedelta(minutes=1)
    retry_cap: dt.timedelta = dt.timedelta(hours=1)
    channel_tables: tuple[Mapping[str, Any], ...] = ()                     # [[notify.channel]], checked
    ticket_kinds: dict[str, tuple[str, ...]] = field(default_factory=dict)   # per ticket channel
    webhook_allowed: OutboundPolicy = field(default_factory=OutboundPolicy)   # where owner webhooks may go
    _channels: dict[str, Channel] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(str(c["name"]) for c in self.channel_tables)

    @property
    def channels(self) -> dict[str, Channel]:
        """The channels by name, made on first use (each reads its secret then)."""
        if self._channels is None:
            channels = {}
            for c in self.channel_tables:
                try:
                    channels[str(c["name"])] = build_channel(c)
                except NotifyConfigError as e:
                    raise _where(c, str(e)) from None
            self._channels = channels
        return self._channels

    @classmethod
    def from_table(cls, t: Table) -> NotifySettings:
        t.check_keys(KEYS)
        by_env = t.table("thresholds_by_environment", "[notify.thresholds_by_environment]")
        by_owner = t.table("thresholds_by_owner", "[notify.thresholds_by_owner]")
        esc = t.get("escalate_at", dec.DEFAULT_ESCALATE_AT)
        if esc is False:
            esc = None
        elif not isinstance(esc, int) or isinstance(esc, bool) or esc < 0:
            raise t.error("[notify] escalate_at must be whole days or false", "escalate_at")
        th = dec.Thresholds(
            default=_days(t, "thresholds", t.get("thresholds", list(dec.DEFAULT_THRESHOLDS)), "[notify] thresholds"),
            by_environment={k.lower(): _days(by_env, k, v, f"[notify.thresholds_by_environment] {k}")
                            for k, v in by_env.items()},
            by_owner={k.lower(): _days(by_owner, k, v, f"[notify.thresholds_by_owner] {k}") for k, v in by_owner.items()},
            escalate_at=esc,
        )
        tables: list[Table] = []
        kinds: dict[str, tuple[str, ...]] = {}
        names: set[str] = set()
        for c in t.tables("channel", lambda i: f"[[notify.channel]] #{i + 1}", "[[notify.channel]]"):
            try:
                check_channel(c)
            except NotifyConfigError as e:
                raise _where(c, str(e)) from None
            name = str(c["name"])
            if name in names:
                raise c.error(f"two [[notify.channel]] named {name!r}", "name")
            names.add(name)
            tables.append(c)
            if c.get("type") == "ticket":
                ks = tuple(c.get("kinds", DEFAULT_TICKET_KINDS))
                bad = [k for k in ks if k not in dec.KINDS]
                if bad:
                    raise c.error(f"[[notify.channel]] {name!r}: unknown kind(s) {', '.join(bad)}", "kinds")
                kinds[name] = ks
        max_attempts = t.get("max_attempts", 8)
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise t.error("[notify] max_attempts must be at least 1", "max_attempts")

        def td(key: str, default: str) -> dt.timedelta:
            return dt.timedelta(seconds=t.duration(key, default))

        allowed = t.get("webhook_allowed", [])
        if not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed):
            raise t.error("[notify] webhook_allowed must be a list of host names or networks", "webhook_allowed")
        try:
            policy = OutboundPolicy.parse(allowed)
        except InvalidInput as e:
            raise t.error(f"[notify] {e}", "webhook_allowed") from None
        return cls(
            webhook_allowed=policy,
            thresholds=th, interval=td("interval", "15m"), agent_silent_after=td("agent_silent_after", "1d"),
            job_lookback=td("job_lookback", "7d"), max_attempts=max_attempts, retry_base=td("retry_base", "1m"),
            retry_cap=td("retry_cap", "1h"), channel_tables=tuple(tables), ticket_kinds=kinds,
        )

    @classmethod
    def from_config(cls, doc: Mapping[str, Any]) -> NotifySettings:
        """From the config document's tables (``{"notify": {...}}``); defaults without one."""
        return cls.from_table(Table(doc, "config").table("notify", "[notify]", error=NotifyConfigError))


def _where(c: Mapping[str, Any], message: str) -> NotifyConfigError:
    """A channel's own error, with where its table is written."""
    return c.error(message) if isinstance(c, Table) else NotifyConfigError(message)
