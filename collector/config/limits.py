"""The ``[limits]`` table of the collector config: how much one agent's stream may take.

```toml
[limits]
stream_deadline = "10m"       # a Report stream must end within this (server deadline per stream; the
                              # agent gives a whole report 10 minutes too)
message_timeout = "2m"        # ... and send its next chunk within this (the agent scans while it streams)
report_max_bytes = "1GiB"     # a report's chunks together (serialised) may not exceed this
report_max_chunks = 20000     # nor this many chunks
connect_queue = 256           # agent messages of one command stream waiting to be applied
enroll_per_minute = 10        # enrollment attempts per peer address (a burst of as many, then this rate)
```

A report is received whole (spooled), then stored in one short transaction: a slow or silent
agent holds a spool file, never the database (collector/api/streams.py, collector/api/agents.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from certfleet.values import parse_size
from collector.config.reader import Table

__all__ = ["StreamLimits"]

KEYS = frozenset({"stream_deadline", "message_timeout", "report_max_bytes", "report_max_chunks", "connect_queue",
                  "enroll_per_minute"})


@dataclass(frozen=True)
class StreamLimits:
    stream_deadline: float = 600.0
    message_timeout: float = 120.0
    report_max_bytes: int = 1024 * 1024 * 1024
    report_max_chunks: int = 20000
    connect_queue: int = 256
    enroll_per_minute: int = 10

    @classmethod
    def from_table(cls, t: Table) -> StreamLimits:
        t.check_keys(KEYS)
        deadline = t.duration("stream_deadline", "10m")
        timeout = t.duration("message_timeout", "2m")
        if deadline <= 0 or timeout <= 0:
            raise t.error("[limits] stream_deadline and message_timeout must be positive")
        try:
            max_bytes = parse_size(t.get("report_max_bytes", "1GiB"))
        except ValueError as e:
            raise t.error(f"[limits] report_max_bytes: {e}", "report_max_bytes") from None
        ints = {}
        for key, default in (("report_max_chunks", 20000), ("connect_queue", 256), ("enroll_per_minute", 10)):
            v = t.get(key, default)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise t.error(f"[limits] {key} must be a positive whole number", key)
            ints[key] = v
        return cls(stream_deadline=deadline, message_timeout=timeout, report_max_bytes=max_bytes,
                   report_max_chunks=ints["report_max_chunks"], connect_queue=ints["connect_queue"],
                   enroll_per_minute=ints["enroll_per_minute"])
