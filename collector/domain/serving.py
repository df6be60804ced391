"""What serves what: endpoints and the processes behind them, and where a renewal can land.

Pure decisions about the serving side of a location (collector/registry keeps the facts the
agent reports: the processes that use a file, what an endpoint serves):

- :func:`listens_on`: whether a process's listening sockets serve an endpoint ("host:port");
- :func:`not_renewable`: why a renewal cannot target a location (a trust anchor, or a TLS
  endpoint: renew where the service reads the certificate);
- :class:`ReloadSuggestion` / :func:`reload_suggestion`: the reload the agent found for the
  service that uses a location, kept on the renewal job it was suggested for.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping


def split_endpoint(text: str) -> tuple[str, int] | None:
    """("host", port) of "host:port" or "[v6]:port"; None when it is neither."""
    s = (text or "").strip()
    if s.startswith("["):
        host, sep, port = s[1:].partition("]:")
    else:
        host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host, int(port)


_ANY = {"0.0.0.0", "::", "*", ""}


def listens_on(listen: Iterable[str], endpoint: str) -> bool:
    """Whether a process listening on ``listen`` sockets serves ``endpoint`` ("host:port")."""
    want = split_endpoint(endpoint)
    if want is None:
        return False
    for sock in listen:
        got = split_endpoint(sock)
        if got is not None and got[1] == want[1] and (got[0] == want[0] or got[0] in _ANY):
            return True
    return False


def not_renewable(loc: Any) -> str | None:
    """Why a renewal cannot target this location (None when it can)."""
    if getattr(loc, "role", "service") == "trust_anchor":
        return ("it is an entry of a trust store (a trust anchor): trust anchors are not renewed; "
                "update the trust store itself")
    if loc.store_type == "endpoint":
        return ("it is a TLS endpoint (what the port serves, seen by a handshake): a certificate is renewed "
                "where the service reads it, a file or store location")
    return None


@dataclass(frozen=True)
class ReloadSuggestion:
    """The reload action an agent found for the service that uses a location (a [reload.<name>] of its
    config that fits the process); kept on the renewal job it was suggested for."""

    action: str
    process: str = ""
    pid: int = 0
    service: str = ""

    def text(self) -> str:
        """``nginx (nginx pid 4242, nginx.service uses this location)``."""
        who = f"{self.process or 'a process'} pid {self.pid}"
        svc = f", {self.service}" if self.service else ""
        return f"{self.action} ({who}{svc} uses this location)"

    def as_json(self) -> dict[str, Any]:
        return {"action": self.action, "process": self.process, "pid": self.pid, "service": self.service}

    @classmethod
    def from_json(cls, raw: Any) -> ReloadSuggestion | None:
        if not isinstance(raw, Mapping) or not raw.get("action"):
            return None
        return cls(action=str(raw["action"]), process=str(raw.get("process") or ""), pid=int(raw.get("pid") or 0),
                   service=str(raw.get("service") or ""))


def reload_suggestion(processes: Iterable[Mapping[str, Any]]) -> ReloadSuggestion | None:
    """The first reload action a location's process links suggest; None when none does."""
    for p in processes:
        action = p.get("suggested_reload") or ""
        if action:
            return ReloadSuggestion(action=action, process=p.get("name") or "", pid=int(p.get("pid") or 0),
                                    service=p.get("service") or "")
    return None
