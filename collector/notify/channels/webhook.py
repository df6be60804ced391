"""Webhook channels: generic JSON, Slack/Teams-style text blocks, and service-desk tickets.

All three POST JSON over HTTP(S) with a timeout (urllib); anything but 2xx is a ChannelError.
A channel's token goes only to the channel's own ``url``, never to an owner's webhook; redirects
are followed only on the same scheme, host and port (the token never leaves for another host).
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Mapping

from collector.domain.outbound import redact_url as _redact
from collector.notify.channels.base import (
    ChannelError, Message, NotifyConfigError, check_keys, digest_text, refuse_inline_secret, secret_from,
)

USER_AGENT = "certfleet-notify/1"


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to the same scheme, host and port."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201 - urllib's signature
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if (old.scheme, old.hostname, old.port) != (new.scheme, new.hostname, new.port):
            raise ChannelError(f"POST {redact_url(req.full_url)}: redirected to another host "
                               f"({redact_url(newurl)}); not followed")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameHostRedirects)


def post_json(url: str, body: Any, timeout: float, headers: Mapping[str, str] | None = None) -> None:
    if not url:
        raise ChannelError("no URL to post to")
    data = json.dumps(body, sort_keys=True, default=str).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": USER_AGENT, **(headers or {})})
    try:
        with _OPENER.open(req, timeout=timeout) as r:   # noqa: S310 - http(s) only, checked in config
            r.read(65536)
    except urllib.error.HTTPError as e:
        raise ChannelError(f"POST {redact_url(url)}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ChannelError(f"POST {redact_url(url)}: {reason}") from None


def redact_url(url: str) -> str:
    """The URL without its path and query (webhook URLs often carry a secret token)."""
    return _redact(url)


def _check_url(url: str, where: str) -> str:
    if url and not url.startswith(("http://", "https://")):
        raise NotifyConfigError(f"{where}: url must be http(s)")
    return url


class _Base:
    type = ""
    KEYS = frozenset({"name", "type", "url", "timeout", "token_file", "token_env"})

    def __init__(self, name: str, url: str = "", timeout: float = 10.0, token: str = "") -> None:
        self.name, self.url, self.timeout, self._token = name, url, timeout, token

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    @classmethod
    def check(cls, cfg: Mapping[str, Any]) -> None:
        """The settings as written (no secret is read)."""
        where = f"[[notify.channel]] {cfg['name']!r}"
        url = cfg.get("url", "")
        if not url and cls.type != "webhook":
            raise NotifyConfigError(f"{where}: a {cls.type} channel needs url")
        _check_url(url, where)
        refuse_inline_secret(cfg, "token", where)
        check_keys(cfg, cls.KEYS, where)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Any:
        cls.check(cfg)
        where = f"[[notify.channel]] {cfg['name']!r}"
        return cls(cfg["name"], cfg.get("url", ""), float(cfg.get("timeout", 10)), secret_from(cfg, "token", where))

    def _headers(self, target: str = "") -> dict[str, str]:
        """The channel's credentials, only for its own ``url`` (never an owner's webhook)."""
        if not self._token or (target and target != self.url):
            return {}
        return {"Authorization": f"Bearer {self._token}"}


class WebhookChannel(_Base):
    """The digest as JSON to the owner's webhook (``target``) or the channel's ``url``."""

    type = "webhook"

    def send(self, message: Message) -> None:
        post_json(message.target or self.url, {"subject": message.subject, **message.payload},
                  self.timeout, self._headers(message.target))


class SlackChannel(_Base):
    """A Slack/Teams-style message: ``text`` plus section blocks, to an incoming-webhook URL."""

    type = "slack"

    def send(self, message: Message) -> None:
        p = message.payload
        blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": message.subject[:150]}}]
        for n in p.get("notices", [])[:45]:
            where = ", ".join(f"{loc['host']}:{loc['path']}" if loc.get("path") else loc["host"]
                              for loc in n.get("locations", [])[:5])
            text = f"*{n['title']}*" + (f"\n{n['detail']}" if n.get("detail") else "") + (f"\n{where}" if where else "")
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}})
        post_json(message.target or self.url, {"text": digest_text(p)[:3500], "blocks": blocks},
                  self.timeout, self._headers(message.target))


class TicketChannel(_Base):
    """One ticket per notice for a service desk: summary, description, priority (from criticality),
    assignment group (the owner), due date (the expiry), fingerprint, hosts and paths."""

    type = "ticket"
    KEYS = _Base.KEYS | {"kinds"}    # the notice kinds that open a ticket (collector/config/notify.py)

    def send(self, message: Message) -> None:
        post_json(message.target or self.url, dict(message.payload["ticket"]), self.timeout,
                  self._headers(message.target))


def ticket_fields(notice: Mapping[str, Any], owner: str, digest_id: str) -> dict[str, Any]:
    locs = notice.get("locations", [])
    return {
        "summary": notice["title"][:250],
        "description": "\n".join(filter(None, [notice["title"], notice.get("detail", ""),
                                               *(f"{loc['host']}:{loc['path']}" for loc in locs)])),
        "priority": notice.get("priority", "P3"),
        "assignment_group": owner or "unassigned",
        "due_date": notice.get("not_after"),
        "fingerprint": notice.get("fingerprint", ""),
        "hosts": sorted({loc["host"] for loc in locs}),
        "paths": [loc["path"] for loc in locs if loc.get("path")],
        "kind": notice["kind"],
        "environment": notice.get("environment", ""),
        "service": notice.get("service", ""),
        "correlation_id": f"{digest_id}:{notice['kind']}:{notice.get('fingerprint') or notice.get('target')}",
    }
