"""The one small interface every channel implements, and the digest as text."""
from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from collector.errors import CollectorError, ConfigError


class ChannelError(CollectorError):
    """A channel could not deliver; the message is safe to show and store (no secrets)."""


class NotifyConfigError(ConfigError):
    """The [notify] configuration is invalid."""


@dataclass(frozen=True)
class Message:
    """What a channel sends: a subject, the target (e-mail addresses or a URL; "" = the
    channel's own) and the payload -- a digest ``{"digest_id", "owner", "generated_at",
    "notices": [...]}`` or one ticket ``{"ticket": {...}}``."""

    subject: str
    target: str
    payload: Mapping[str, Any]


class Channel(Protocol):
    """A delivery backend. Its class reads its own ``[[notify.channel]]`` table: ``check(cfg)`` the
    settings as written (when the config is read), ``from_config(cfg)`` makes the channel, reading
    its secret then (when the collector serves)."""

    name: str
    type: str

    def send(self, message: Message) -> None:
        """Deliver or raise ChannelError."""


def check_keys(cfg: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    """A channel's table names only settings its type knows."""
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise NotifyConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def refuse_inline_secret(cfg: Mapping[str, Any], key: str, where: str) -> None:
    """A secret is given as ``<key>_file`` or ``<key>_env``; the value itself in the config is refused."""
    if key in cfg:
        raise NotifyConfigError(f"{where}: give {key}_file or {key}_env, never the {key} itself in the config")


def secret_from(cfg: Mapping[str, Any], key: str, where: str) -> str:
    """A secret from ``<key>_file`` or ``<key>_env``; an inline value is refused."""
    refuse_inline_secret(cfg, key, where)
    if cfg.get(f"{key}_file"):
        path = pathlib.Path(cfg[f"{key}_file"])
        try:
            return path.read_text().strip()
        except OSError as e:
            raise NotifyConfigError(f"{where}: cannot read {key}_file {path}: {e.strerror}") from None
    if cfg.get(f"{key}_env"):
        name = cfg[f"{key}_env"]
        if name not in os.environ:
            raise NotifyConfigError(f"{where}: environment variable {name} ({key}_env) is not set")
        return os.environ[name]
    return ""


def digest_text(payload: Mapping[str, Any]) -> str:
    """A digest as plain text, one block per notice."""
    notices = payload.get("notices", [])
    owner = payload.get("owner") or "(no owner)"
    lines = [f"certfleet notifications for {owner}: {len(notices)} notice(s)", ""]
    for n in notices:
        lines.append(f"* {n['title']}")
        if n.get("detail"):
            lines.append(f"  {n['detail']}")
        if n.get("fingerprint"):
            lines.append(f"  fingerprint: {n['fingerprint']}")
        for loc in n.get("locations", []):
            where = f"{loc['host']}:{loc['path']}" if loc.get("path") else loc["host"]
            lines.append(f"  at {where}" + (f" [{loc['alias']}]" if loc.get("alias") else ""))
        extra = [f"{k}: {n[k]}" for k in ("environment", "criticality", "service") if n.get(k)]
        if extra:
            lines.append("  " + ", ".join(extra))
        lines.append("")
    lines.append(f"digest {payload.get('digest_id', '')}")
    return "\n".join(lines) + "\n"
