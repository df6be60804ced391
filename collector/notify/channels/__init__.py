"""Notification channels (delivery backends) behind one interface: ``Channel.send(message) -> None``
raising ChannelError. This package is the chooser: ``TYPES`` maps a ``type`` to its class.

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


def check_channel(cfg: Mapping[str, Any]) -> None:
    """A ``[[notify.channel]]`` table as written: a name, a known type, that type's settings (no
    secret is read: the config is read by commands that never send, e.g. ``init-admin``)."""
    if not isinstance(cfg, Mapping) or not cfg.get("name"):
        raise NotifyConfigError("every [[notify.channel]] needs a name")
    kind = cfg.get("type", "")
    if kind not in TYPES:
        raise NotifyConfigError(f"[[notify.channel]] {cfg['name']!r}: type must be one of {', '.join(TYPES)}")
    TYPES[kind].check(cfg)


def build_channel(cfg: Mapping[str, Any]) -> Channel:
    """The channel a ``[[notify.channel]]`` table describes, its secret read now."""
    check_channel(cfg)
    return TYPES[cfg["type"]].from_config(cfg)


__all__ = ["Channel", "ChannelError", "Message", "NotifyConfigError", "build_channel", "check_channel", "TYPES"]
