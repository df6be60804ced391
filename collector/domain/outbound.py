"""Where the collector may send an outbound call (owner webhooks), as pure decisions.

An owner's webhook is set by whoever may edit owners, so it is untrusted: it must be ``https``, its
host must be on ``[notify] webhook_allowed`` (names: ``hooks.example.com`` or ``*.example.com``; IP
networks: ``10.1.0.0/16``), and every address it resolves to must be public unless a listed network
holds it (loopback, link-local, private, reserved: refused unless listed). The resolver is given
(``resolve(host) -> [ip, ...]``), so the decision is pure. A channel's own ``url`` is the admin's
configuration and is not checked here; its credentials go only there (collector/notify/channels).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence
from urllib.parse import urlsplit

from collector.errors import InvalidInput

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def redact_url(url: str) -> str:
    """Scheme and host only (webhook URLs often carry a secret in their path or query)."""
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError:
        return "(a URL)"
    if not u.scheme or not u.hostname:
        return "(a URL)" if url else ""
    return f"{u.scheme}://{u.hostname}" + (f":{port}" if port else "") + "/..."


def is_public(ip: Address) -> bool:
    return ip.is_global and not (ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_reserved
                                 or ip.is_multicast or ip.is_unspecified)


@dataclass(frozen=True)
class OutboundPolicy:
    """``[notify] webhook_allowed``: host names (exact, or ``*.`` for a domain's subdomains) and networks."""

    names: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> OutboundPolicy:
        names: list[str] = []
        nets: list[Network] = []
        for raw in entries:
            e = str(raw).strip().lower().rstrip(".")
            if not e:
                raise InvalidInput("an empty entry in webhook_allowed")
            try:
                nets.append(ipaddress.ip_network(e, strict=False))
                continue
            except ValueError:
                pass
            body = e[2:] if e.startswith("*.") else e
            if not body or "*" in body or "/" in body or ":" in body:
                raise InvalidInput(f"webhook_allowed: {raw!r} is not a host name, *.domain or an IP network")
            names.append(e)
        return cls(tuple(names), tuple(nets))

    def _name_listed(self, host: str) -> bool:
        return any(host == n or (n.startswith("*.") and host.endswith(n[1:])) for n in self.names)

    def _net_listed(self, ip: Address) -> bool:
        return any(ip in net for net in self.networks)

    def check(self, url: str, resolve: Callable[[str], Sequence[str]]) -> None:
        """Raise InvalidInput saying why ``url`` may not be called; return when it may."""
        shown = redact_url(url)
        try:
            u = urlsplit(url)
            u.port
        except ValueError:
            raise InvalidInput(f"webhook {shown}: not a URL") from None
        if u.scheme != "https":
            raise InvalidInput(f"webhook {shown}: owner webhooks must be https")
        host = (u.hostname or "").lower().rstrip(".")
        if not host:
            raise InvalidInput(f"webhook {shown}: no host")
        try:
            literal: Address | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        listed = self._net_listed(literal) if literal is not None else self._name_listed(host)
        if not listed:
            raise InvalidInput(f"webhook {shown}: host {host} is not on [notify] webhook_allowed")
        addresses = [literal] if literal is not None else [ipaddress.ip_address(a) for a in resolve(host)]
        if not addresses:
            raise InvalidInput(f"webhook {shown}: {host} does not resolve")
        for ip in addresses:
            if not is_public(ip) and not self._net_listed(ip):
                raise InvalidInput(f"webhook {shown}: {host} resolves to {ip}, a loopback, link-local or private "
                                   "address, which is refused unless its network is on [notify] webhook_allowed")
