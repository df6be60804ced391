"""E-mail over SMTP (smtplib), optionally STARTTLS and login; the password comes from a file or
the environment and is never logged."""
from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Mapping

from collector.notify.channels.base import (
    ChannelError, Message, NotifyConfigError, check_keys, digest_text, refuse_inline_secret, secret_from,
)


class SmtpChannel:
    type = "smtp"
    KEYS = frozenset({"name", "type", "host", "port", "starttls", "username", "password_file", "password_env", "from",
                      "to", "timeout", "ca_file"})

    def __init__(self, name: str, host: str, port: int = 25, sender: str = "", starttls: bool = False,
                 username: str = "", password: str = "", timeout: float = 30.0, to: tuple[str, ...] = (),
                 ca_file: str = "") -> None:
        self.name, self.host, self.port, self.sender = name, host, port, sender
        self.starttls, self.username, self._password = starttls, username, password
        self.timeout, self.to, self.ca_file = timeout, to, ca_file

    def __repr__(self) -> str:   # never the password
        return f"SmtpChannel({self.name!r}, {self.host}:{self.port}, starttls={self.starttls})"

    @classmethod
    def check(cls, cfg: Mapping[str, Any]) -> None:
        """The settings as written (no secret is read)."""
        where = f"[[notify.channel]] {cfg['name']!r}"
        if not cfg.get("host") or not cfg.get("from"):
            raise NotifyConfigError(f"{where}: an smtp channel needs host and from")
        refuse_inline_secret(cfg, "password", where)
        check_keys(cfg, cls.KEYS, where)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> SmtpChannel:
        cls.check(cfg)
        where = f"[[notify.channel]] {cfg['name']!r}"
        to = cfg.get("to", [])
        if isinstance(to, str):
            to = [to]
        return cls(cfg["name"], cfg["host"], int(cfg.get("port", 25)), cfg["from"], bool(cfg.get("starttls", False)),
                   cfg.get("username", ""), secret_from(cfg, "password", where), float(cfg.get("timeout", 30)),
                   tuple(to), cfg.get("ca_file", ""))

    def send(self, message: Message) -> None:
        rcpt = [a.strip() for a in (message.target or ",".join(self.to)).split(",") if a.strip()]
        if not rcpt:
            raise ChannelError(f"channel {self.name}: no recipient")
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(rcpt)
        msg["Subject"] = message.subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain="certfleet")
        digest_id = str(message.payload.get("digest_id", ""))
        if digest_id:
            msg["X-Certfleet-Digest"] = digest_id
        msg.set_content(digest_text(message.payload))
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as s:
                if self.starttls:
                    ctx = ssl.create_default_context(cafile=self.ca_file or None)
                    s.starttls(context=ctx)
                if self.username:
                    s.login(self.username, self._password)
                s.send_message(msg, from_addr=self.sender, to_addrs=rcpt)
        except (OSError, smtplib.SMTPException) as e:
            raise ChannelError(f"smtp {self.host}:{self.port}: {type(e).__name__}: {e}"[:500]) from None
