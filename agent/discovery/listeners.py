"""The TCP ports this host listens on, and which process listens (when the agent may know).

:func:`local_listeners` reads the kernel's socket table through psutil. Without
root, Linux still lists every listening socket but hides the owner of other
users' sockets: those come back with ``pid=None``. A socket bound to a wildcard
address (``0.0.0.0``, ``::``) is reported with a loopback address to probe
(``127.0.0.1``, ``::1``); ``bound`` keeps the address it was bound to.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass

import psutil

log = logging.getLogger(__name__)

__all__ = ["Listener", "local_listeners", "probe_address"]


@dataclass(frozen=True, slots=True)
class Listener:
    ip: str                       # the address to probe (wildcards mapped to loopback)
    port: int
    pid: int | None               # None: the socket belongs to a process this user may not see
    process_name: str             # "" when pid is None or the process is gone
    bound: str = ""               # the address the socket is bound to ("0.0.0.0", "::", "10.0.0.5", ...)

    @property
    def endpoint(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


def probe_address(bound: str) -> str:
    """The address to connect to for a socket bound to ``bound`` (wildcards -> loopback; zone ids dropped)."""
    addr = bound.split("%", 1)[0]
    if addr in ("", "0.0.0.0"):
        return "127.0.0.1"
    if addr == "::":
        return "::1"
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return addr
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return "127.0.0.1" if str(ip.ipv4_mapped) == "0.0.0.0" else str(ip.ipv4_mapped)
    return str(ip)


def _name(pid: int | None, cache: dict[int, str]) -> str:
    if pid is None:
        return ""
    if pid not in cache:
        try:
            cache[pid] = psutil.Process(pid).name()
        except (psutil.Error, OSError):
            cache[pid] = ""
    return cache[pid]


def local_listeners() -> list[Listener]:
    """Every TCP socket of this host in LISTEN state, one per (address to probe, port), sorted.

    A port bound to both ``0.0.0.0`` and ``::`` (nginx ``listen 443; listen
    [::]:443;``) is one service: it is listed once, with 127.0.0.1. When the
    socket table cannot be read at all, raises ``psutil.Error``/``OSError``.
    """
    rows: list[tuple[int, str, int, int | None]] = []     # family, bound address, port, pid
    try:
        for c in psutil.net_connections("tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr:
                rows.append((c.family, c.laddr[0], int(c.laddr[1]), c.pid or None))
    except psutil.AccessDenied:
        # macOS and hardened kernels list only our own processes' sockets without root
        for proc in psutil.process_iter():
            try:
                conns = proc.net_connections("tcp") if hasattr(proc, "net_connections") else proc.connections("tcp")
            except (psutil.Error, OSError):
                continue
            for c in conns:
                if c.status == psutil.CONN_LISTEN and c.laddr:
                    rows.append((c.family, c.laddr[0], int(c.laddr[1]), proc.pid))
    names: dict[int, str] = {}
    found: dict[tuple[str, int], Listener] = {}
    v4_wildcard_ports: set[int] = set()
    for family, bound, port, pid in rows:
        ip = probe_address(bound)
        if family == socket.AF_INET and bound in ("", "0.0.0.0"):
            v4_wildcard_ports.add(port)
        key = (ip, port)
        old = found.get(key)
        if old is None or (old.pid is None and pid is not None):
            found[key] = Listener(ip, port, pid, _name(pid, names), bound)
    out = []
    for (ip, port), lst in found.items():
        if ip == "::1" and lst.bound == "::" and port in v4_wildcard_ports:
            continue   # the same service as its 0.0.0.0 socket
        out.append(lst)
    out.sort(key=lambda x: (x.port, x.ip))
    return out
