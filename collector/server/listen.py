"""Whether the collector can listen where its config says, told in one line before gRPC tries.

grpc's own failure to bind is a ``RuntimeError`` with a hint about GRPC_VERBOSITY and a C-level
log line; and by default it binds with SO_REUSEPORT, so a second collector on the same port
would start and silently share it. The collector binds without SO_REUSEPORT
(:data:`GRPC_OPTIONS`) and checks each address first (:func:`check_listen`): an address in use
or not available on this host is a :class:`~collector.errors.ConfigError` naming it.
"""
from __future__ import annotations

import errno
import socket
from typing import Callable, TypeVar

from collector.errors import ConfigError

#: server options: one process per address (no SO_REUSEPORT sharing)
GRPC_OPTIONS = [("grpc.so_reuseport", 0)]

T = TypeVar("T")


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` into (host, port); ConfigError when it is neither."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"cannot listen on {address!r}: expected host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


def check_listen(address: str, setting: str) -> None:
    """Raise ConfigError naming ``address`` (from the setting ``setting``) if it cannot be bound now."""
    host, port = split_address(address)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"cannot listen on {address} ({setting}): {e.strerror}") from None
    for family, kind, proto, _, sockaddr in infos[:1]:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as grpc does: TIME_WAIT is no conflict
            try:
                s.bind(sockaddr)
            except OSError as e:
                why = "the address is already in use (another collector or program listens there)" \
                    if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
                raise ConfigError(f"cannot listen on {address} ({setting}): {why}") from None


def bind(add_port: Callable[[str], T], address: str, setting: str) -> T:
    """``add_port(address)`` after :func:`check_listen`; grpc's own bind failure (a race) is a
    ConfigError naming the address too."""
    check_listen(address, setting)
    try:
        return add_port(address)
    except RuntimeError:
        raise ConfigError(f"cannot listen on {address} ({setting}): the address cannot be bound") from None
