"""What the agent says about its host in every report and at enrollment: name, OS, addresses, labels.

Informative only: the collector never grants anything on the strength of it (a host is
what it enrolled as). :func:`host_facts` reads the addresses now; nothing is cached.
"""
from __future__ import annotations

import logging
import platform
import socket
from dataclasses import dataclass, field
from typing import Mapping

from agent import __version__

log = logging.getLogger(__name__)

__all__ = ["HostFacts", "host_facts"]


@dataclass(frozen=True)
class HostFacts:
    hostname: str
    os: str
    os_version: str
    agent_version: str
    addresses: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


def host_facts(hostname: str, labels: Mapping[str, str]) -> HostFacts:
    """This host as it is now: its addresses (link-local IPv6 left out), OS and the agent's version."""
    addresses: list[str] = []
    try:
        import psutil

        for addrs in psutil.net_if_addrs().values():
            for a in addrs:
                if a.family in (socket.AF_INET, socket.AF_INET6) and not a.address.startswith("fe80"):
                    addresses.append(a.address.split("%")[0])
    except Exception:  # noqa: BLE001 - addresses are informative only
        log.debug("could not list addresses", exc_info=True)
    return HostFacts(hostname=hostname, os=platform.system(), os_version=platform.release(),
                     agent_version=__version__, addresses=tuple(sorted(set(addresses))), labels=dict(labels))
