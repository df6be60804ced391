"""Rate limits as pure decisions: a token bucket per key (a peer address), time given by the caller.

    limits = RateLimits(per_minute=10, burst=10)
    if not limits.allow("127.0.0.1", now=time.monotonic()): refuse

The table of buckets is bounded (``max_keys``): when full, the bucket that was touched longest ago
goes (an attacker with many addresses loses history, never the memory of the collector).
"""
from __future__ import annotations

from collections import OrderedDict


class RateLimits:
    def __init__(self, per_minute: float, burst: int, max_keys: int = 10_000) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()   # key -> (tokens, at)

    def allow(self, key: str, now: float) -> bool:
        """Take one token of ``key``'s bucket at ``now`` (seconds); False when it is empty."""
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
        ok = tokens >= 1.0
        if ok:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return ok


def peer_address(peer: str) -> str:
    """The address of a gRPC peer string (``ipv4:10.0.0.5:51234``, ``ipv6:[::1]:5555``), without its port."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1:rest.find("]")] if "]" in rest else rest
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    return peer
