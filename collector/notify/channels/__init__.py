"""Notification channels behind one interface: ``Channel.send(message) -> None`` raising ChannelError.

``[[notify.channel]]`` tables in the collector config choose them::

    [[notify.channel]]
    name = "mail"
    type = "smtp"            # smtp | webhook | slack | ticket
    host = "smtp.example.com"
    port = 587
    starttls = true
    username = "certfleet"
    password_file = "/etc/certfleet/smtp-password"   # or password_env = "SMTP_PASSWORD"; never inline
    from = "certfleet@example.com"
    to = ["pki-team@example.com"]   # for notices without an owner
"""
from __future__ import annotations

from typing import Any, Mapping

from collector.notify.channels.base import Channel, ChannelError, Message, NotifyConfigError
from collector.notify.channels.smtp import SmtpChannel
from collector.notify.channels.webhook import SlackChannel, TicketChannel, WebhookChannel

TYPES: dict[str, Any] = {"smtp": SmtpChannel, "webhook": WebhookChannel, "slack": SlackChannel, "ticket": TicketChannel}


def build_channel(cfg: Mapping[str, Any]) -> Channel:
    if not isinstance(cfg, Mapping) or not cfg.get("name"):
        raise NotifyConfigError("every [[notify.channel]] needs a name")
    kind = cfg.get("type", "")
    if kind not in TYPES:
        raise NotifyConfigError(f"[[notify.channel]] {cfg['name']!r}: type must be one of {', '.join(TYPES)}")
    return TYPES[kind].from_config(cfg)


__all__ = ["Channel", "ChannelError", "Message", "NotifyConfigError", "build_channel", "TYPES"]
