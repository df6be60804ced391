"""STARTTLS for SMTP, IMAP and POP3: just enough of each protocol to reach the TLS handshake.

Each ``negotiate`` function takes the plain socket and the probe's monotonic
deadline, speaks the protocol up to the point where the server expects a TLS
ClientHello, and returns. Every read is bounded by the deadline (a server that
trickles bytes cannot stretch it) and by a size limit. A peer that does not
speak the protocol, or does not offer STARTTLS, is :data:`~agent.probe.NOT_TLS`.
"""
from __future__ import annotations

import socket
import time
from typing import Callable, Mapping

from agent.probe import NOT_TLS, HandshakeError

__all__ = ["PROTOCOLS", "DEFAULT_PORTS", "default_starttls", "negotiator", "negotiate_smtp", "negotiate_imap",
           "negotiate_pop3"]

PROTOCOLS = ("smtp", "imap", "pop3")
# well-known ports that start in plain text (465, 993 and 995 are TLS from the first byte)
DEFAULT_PORTS: Mapping[int, str] = {25: "smtp", 587: "smtp", 143: "imap", 110: "pop3"}
MAX_RESPONSE = 64 * 1024       # bytes of protocol chatter we read before giving up
CLIENT_NAME = "certfleet-agent.invalid"


def default_starttls(port: int, configured: Mapping[int, str] | None = None) -> str:
    """The STARTTLS protocol to use for ``port``: configured first, then the well-known ports, else ""."""
    if configured and port in configured:
        return configured[port]
    return DEFAULT_PORTS.get(port, "")


class _Lines:
    """Reads CRLF lines from a plain socket before a deadline."""

    def __init__(self, sock: socket.socket, deadline: float, proto: str) -> None:
        self.sock = sock
        self.deadline = deadline
        self.proto = proto
        self.buf = b""
        self.total = 0

    def line(self) -> str:
        while b"\n" not in self.buf:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            data = self.sock.recv(4096)          # socket.timeout (a TimeoutError) when the server is silent
            if not data:
                raise HandshakeError(NOT_TLS, f"{self._where()}: closed the connection during the {self.proto} "
                                              "exchange before STARTTLS")
            self.total += len(data)
            if self.total > MAX_RESPONSE:
                raise HandshakeError(NOT_TLS, f"{self._where()}: more than {MAX_RESPONSE} bytes of {self.proto} "
                                              "chatter without reaching STARTTLS")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r").decode("latin-1")

    def send(self, text: str) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        self.sock.sendall(text.encode("ascii") + b"\r\n")

    def fail(self, what: str, got: str) -> HandshakeError:
        shown = got[:80].encode("ascii", "backslashreplace").decode()
        return HandshakeError(NOT_TLS, f"{self._where()}: {what} (server said {shown!r})")

    def _where(self) -> str:
        try:
            host, port = self.sock.getpeername()[:2]
        except OSError:
            return self.proto
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _smtp_reply(r: _Lines) -> tuple[str, list[str]]:
    """One SMTP reply (possibly multi-line): its code and the text of each line."""
    texts = []
    while True:
        line = r.line()
        if len(line) < 3 or not line[:3].isdigit():
            raise r.fail("is not an SMTP server", line)
        texts.append(line[4:])
        if len(line) == 3 or line[3] == " ":
            return line[:3], texts
        if line[3] != "-":
            raise r.fail("is not an SMTP server", line)


def negotiate_smtp(sock: socket.socket, deadline: float) -> None:
    r = _Lines(sock, deadline, "SMTP")
    code, texts = _smtp_reply(r)
    if code != "220":
        raise r.fail("SMTP greeting is not 220", f"{code} {texts[0] if texts else ''}")
    r.send(f"EHLO {CLIENT_NAME}")
    code, texts = _smtp_reply(r)
    if code != "250":
        raise r.fail("refused EHLO", f"{code} {texts[0] if texts else ''}")
    if not any(t.strip().upper().split(" ")[0] == "STARTTLS" for t in texts[1:]):
        raise r.fail("does not offer STARTTLS", " / ".join(texts)[:80])
    r.send("STARTTLS")
    code, texts = _smtp_reply(r)
    if code != "220":
        raise r.fail("refused STARTTLS", f"{code} {texts[0] if texts else ''}")


def _imap_tagged(r: _Lines, tag: str) -> tuple[str, list[str]]:
    """Lines until the tagged completion: (status OK/NO/BAD, untagged lines)."""
    untagged = []
    while True:
        line = r.line()
        if line.startswith(tag + " "):
            return line[len(tag) + 1:].split(" ", 1)[0].upper(), untagged
        if not line.startswith(("*", "+")):
            raise r.fail("is not an IMAP server", line)
        untagged.append(line)


def negotiate_imap(sock: socket.socket, deadline: float) -> None:
    r = _Lines(sock, deadline, "IMAP")
    greeting = r.line()
    if not greeting.upper().startswith(("* OK", "* PREAUTH")):
        raise r.fail("is not an IMAP server", greeting)
    caps = greeting.upper()           # the greeting may carry [CAPABILITY ...]
    if "STARTTLS" not in caps:
        r.send("c1 CAPABILITY")
        status, untagged = _imap_tagged(r, "c1")
        if status != "OK":
            raise r.fail("refused CAPABILITY", status)
        caps = " ".join(untagged).upper()
    if "STARTTLS" not in caps.split() and "STARTTLS]" not in caps:
        raise r.fail("does not offer STARTTLS", caps)
    r.send("c2 STARTTLS")
    status, _ = _imap_tagged(r, "c2")
    if status != "OK":
        raise r.fail("refused STARTTLS", status)


def negotiate_pop3(sock: socket.socket, deadline: float) -> None:
    r = _Lines(sock, deadline, "POP3")
    greeting = r.line()
    if not greeting.startswith("+OK"):
        raise r.fail("is not a POP3 server", greeting)
    r.send("STLS")
    answer = r.line()
    if not answer.startswith("+OK"):
        raise r.fail("refused STLS", answer)


_NEGOTIATORS: Mapping[str, Callable[[socket.socket, float], None]] = {
    "smtp": negotiate_smtp, "imap": negotiate_imap, "pop3": negotiate_pop3,
}


def negotiator(protocol: str) -> Callable[[socket.socket, float], None] | None:
    """The ``prepare`` step for :func:`agent.probe.handshake`; None for plain TLS (""). ValueError when unknown."""
    if not protocol:
        return None
    try:
        return _NEGOTIATORS[protocol]
    except KeyError:
        raise ValueError(f"unknown STARTTLS protocol {protocol!r} (known: {', '.join(PROTOCOLS)})") from None
