"""Many TLS handshakes at once: concurrency, a rate limit, and a hard timeout per handshake.

:func:`probe_many` runs :func:`agent.probe.handshake` (which trusts nothing, so
a broken or expired certificate is still seen) for every :class:`Target` on a
thread pool, starting at most ``rate_per_second`` new connections per second
(a token bucket shared by all workers), and validates each presented chain
with :func:`agent.probe.validate_chain` against ``ca_file`` or the system
trust store. Every target gets exactly one :class:`Observation`, in the order
given; a failure is an Observation with a stable ``error`` code, never an
exception.

:func:`survey` adds SNI: a first pass without a server name, then one probe per
name on each endpoint that spoke TLS, keeping only the answers that differ.
"""
from __future__ import annotations

import hashlib
import ipaddress
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from cryptography import x509

from agent.errors import AgentError
from agent.probe import (HANDSHAKE_FAILED, NOT_TLS, REFUSED, TIMEOUT, UNREACHABLE, HandshakeError, handshake,
                         validate_chain)

from agent.endpoints.starttls import negotiator

log = logging.getLogger(__name__)

__all__ = ["Target", "Observation", "RateLimiter", "probe_many", "probe_one", "survey", "validation_name",
           "ERRORS", "format_endpoint", "parse_endpoint"]

# Observation.error codes (stable)
ERRORS = {
    "": "a certificate was presented",
    REFUSED: "connection refused: nothing listens there",
    TIMEOUT: "no complete TLS answer within the timeout",
    NOT_TLS: "something answers, but not TLS (or STARTTLS is not offered)",
    HANDSHAKE_FAILED: "a TLS server refused the handshake or sent no certificate",
    UNREACHABLE: "no route to the host, or its name does not resolve",
}


def format_endpoint(host: str, port: int) -> str:
    """``host:port``, with IPv6 addresses in brackets (the endpoint LocationKey path)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_endpoint(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ValueError with the reason."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{text!r}: an IPv6 endpoint is written [address]:port")
        port_s = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_s = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{text!r}: expected host:port")
        if ":" in host:
            raise ValueError(f"{text!r}: write IPv6 endpoints as [address]:port")
    if not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port_s)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    sni: str = ""                 # the server name to send; "" sends none
    starttls: str = ""            # "", smtp, imap, pop3

    @property
    def endpoint(self) -> str:
        return format_endpoint(self.host, self.port)


@dataclass(frozen=True, slots=True)
class Observation:
    """What one handshake with one target showed. ``ok`` is True when a certificate was presented."""

    target: Target
    ok: bool
    fingerprint: str = ""                              # SHA-256 of leaf_der, lower-case hex
    leaf_der: bytes = field(default=b"", repr=False)
    chain_ders: tuple[bytes, ...] = field(default=(), repr=False)   # sent after the leaf, in order
    protocol: str = ""
    cipher: str = ""
    chain_valid: bool = False
    validation_error: str = ""
    seconds: float = 0.0
    error: str = ""                                    # one of ERRORS
    detail: str = ""                                   # the error, for people: names the endpoint, never a secret

    @property
    def chain_fingerprints(self) -> tuple[str, ...]:
        return tuple(hashlib.sha256(d).hexdigest() for d in self.chain_ders)


class RateLimiter:
    """A token bucket of one token: at most ``rate`` starts per second, across all threads (0: no limit)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock = clock
        self.sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self.clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self.sleep(start - now)


def validation_name(target: Target, leaf: x509.Certificate | None) -> str:
    """The name a chain is validated for.

    The SNI sent, else the target's host when it is a name. A probe of a bare
    address without SNI (a local listener, a network scan) is validated for
    the first DNS name the certificate itself claims, so that ``chain_valid``
    answers "does this chain lead to a trusted root, for the service it
    claims to be", not the trivial "no certificate names 127.0.0.1"; with no
    DNS name the address itself is used.
    """
    if target.sni:
        return target.sni
    if not _is_ip(target.host):
        return target.host
    if leaf is not None:
        try:
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = [n for n in san.get_values_for_type(x509.DNSName) if not n.startswith("*.")]
            if names:
                return names[0]
        except x509.ExtensionNotFound:
            pass
    return target.host


def probe_one(target: Target, timeout: float, ca_bundle: bytes | None = None) -> Observation:
    """One handshake (STARTTLS first when the target asks for it) and the chain's validation."""
    try:
        prepare = negotiator(target.starttls)
    except ValueError as e:
        return Observation(target, False, error=NOT_TLS, detail=f"{target.endpoint}: {e}")
    t0 = time.perf_counter()
    try:
        hs = handshake(target.host, target.port, target.sni or None, timeout, prepare)
    except HandshakeError as e:
        return Observation(target, False, error=e.code, detail=str(e), seconds=time.perf_counter() - t0)
    leaf_der, chain = hs.presented[0], tuple(hs.presented[1:])
    try:
        leaf: x509.Certificate | None = x509.load_der_x509_certificate(leaf_der)
    except ValueError:
        leaf = None
    verror = validate_chain(leaf_der, chain, validation_name(target, leaf), ca_bundle)
    return Observation(
        target, True, fingerprint=hashlib.sha256(leaf_der).hexdigest(), leaf_der=leaf_der, chain_ders=chain,
        protocol=hs.protocol, cipher=hs.cipher, chain_valid=not verror, validation_error=verror, seconds=hs.seconds,
    )


def _ca_bundle(ca_file: str | None) -> bytes | None:
    if not ca_file:
        return None
    try:
        with open(ca_file, "rb") as f:
            return f.read()
    except OSError as e:
        raise AgentError(f"cannot read the CA file {ca_file}: {e.strerror or e}") from None


Progress = Callable[[int, int, Observation], None]    # (done, total, the observation just made)


def probe_many(
    targets: Iterable[Target], *, concurrency: int = 64, rate_per_second: float = 0.0, timeout: float = 3.0,
    ca_file: str | None = None, progress: Progress | None = None, stop: threading.Event | None = None,
) -> list[Observation]:
    """One :class:`Observation` per target, in the order given.

    At most ``concurrency`` handshakes are in flight and at most
    ``rate_per_second`` connections start per second (0: unlimited).
    ``timeout`` bounds each handshake as a whole (connect, STARTTLS, TLS).
    ``progress`` is called from worker threads after each target. When
    ``stop`` is set, targets not yet started are answered with ``timeout``
    and "not probed". Raises :class:`AgentError` only when ``ca_file`` cannot be read.
    """
    todo = list(targets)
    if not todo:
        return []
    bundle = _ca_bundle(ca_file)
    limiter = RateLimiter(rate_per_second)
    done = 0
    lock = threading.Lock()

    def one(t: Target) -> Observation:
        nonlocal done
        if stop is not None and stop.is_set():
            obs = Observation(t, False, error=TIMEOUT, detail=f"{t.endpoint}: not probed (the scan was stopped)")
        else:
            limiter.acquire()
            obs = probe_one(t, timeout, bundle)
        with lock:
            done += 1
            n = done
        if progress is not None:
            try:
                progress(n, len(todo), obs)
            except Exception:  # noqa: BLE001 - a progress display must not lose a result
                log.exception("progress callback failed")
        return obs

    workers = max(1, min(int(concurrency or 1), len(todo)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tls-probe") as pool:
        return list(pool.map(one, todo))


def survey(
    targets: Sequence[Target], names_for: Callable[[Target], Sequence[str]], *, concurrency: int = 64,
    rate_per_second: float = 0.0, timeout: float = 3.0, ca_file: str | None = None,
    progress: Progress | None = None, stop: threading.Event | None = None,
) -> tuple[list[Observation], list[Observation]]:
    """Probe ``targets`` as given, then each one that spoke TLS once per name in ``names_for(target)``.

    Returns (first-pass observations, in target order; SNI observations worth
    keeping). An SNI answer is kept only when it presented a certificate other
    than the first pass's for the same endpoint: a server that answers every
    name with its default certificate would otherwise give one identical
    location per name, and that is noise, not a fact (the default certificate
    is already recorded by the first pass).
    """
    first = probe_many(targets, concurrency=concurrency, rate_per_second=rate_per_second, timeout=timeout,
                       ca_file=ca_file, progress=progress, stop=stop)
    second: list[Target] = []
    for obs in first:
        if not obs.ok:
            continue
        for name in names_for(obs.target):
            if name and name != obs.target.sni:
                second.append(Target(obs.target.host, obs.target.port, name, obs.target.starttls))
    if not second:
        return first, []
    base = {(o.target.host, o.target.port, o.target.starttls): o.fingerprint for o in first if o.ok}
    extra = probe_many(second, concurrency=concurrency, rate_per_second=rate_per_second, timeout=timeout,
                       ca_file=ca_file, stop=stop)
    kept = [o for o in extra if o.ok and o.fingerprint != base.get((o.target.host, o.target.port, o.target.starttls))]
    return first, kept
