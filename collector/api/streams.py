"""Bounds on what a client streams to the collector: a deadline per stream and per message,
caps on bytes and messages, and a spool so that a slow stream never holds the database.

    async with bounded(request_iterator, limits, "report") as chunks:   # raises TooSlow / ResourceExhausted
        spool = await Spool.fill(chunks)        # every message, serialised, in a temporary file
    for msg in spool.read(agent_pb2.ReportChunk): ...   # replayed later, on a worker thread

The limits are the ``[limits]`` table (collector/config/limits.py).
"""
from __future__ import annotations

import asyncio
import struct
import tempfile
import time
from typing import Any, AsyncIterator, Iterator

from collector.config.limits import StreamLimits
from collector.errors import ResourceExhausted, TooSlow

#: a spool stays in memory up to this size, then moves to a temporary file
SPOOL_IN_MEMORY = 1024 * 1024
_LEN = struct.Struct(">I")


async def bounded(messages: AsyncIterator[Any], limits: StreamLimits, what: str) -> AsyncIterator[Any]:
    """The messages of a client stream, cut with :class:`TooSlow` when the next one does not come
    within ``message_timeout`` or the stream runs past ``stream_deadline``, and with
    :class:`ResourceExhausted` past ``report_max_chunks`` messages or ``report_max_bytes``."""
    it = messages.__aiter__()
    end = time.monotonic() + limits.stream_deadline
    count = size = 0
    while True:
        left = end - time.monotonic()
        wait = min(limits.message_timeout, left)
        if wait <= 0:
            raise TooSlow(f"the {what} stream did not end within {limits.stream_deadline:g}s; cut")
        try:
            msg = await asyncio.wait_for(it.__anext__(), wait)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            if wait < limits.message_timeout:
                raise TooSlow(f"the {what} stream did not end within {limits.stream_deadline:g}s; cut") from None
            raise TooSlow(f"the {what} stream sent nothing for {limits.message_timeout:g}s; cut") from None
        count += 1
        size += msg.ByteSize()
        if count > limits.report_max_chunks:
            raise ResourceExhausted(f"the {what} has more than {limits.report_max_chunks} chunks; refused")
        if size > limits.report_max_bytes:
            raise ResourceExhausted(f"the {what} is larger than {limits.report_max_bytes} bytes; refused")
        yield msg


class Spool:
    """Messages kept serialised (in memory, then a temporary file) until they are replayed."""

    def __init__(self) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, prefix="certfleet-spool-")
        self.count = 0

    @classmethod
    async def fill(cls, messages: AsyncIterator[Any]) -> Spool:
        spool = cls()
        try:
            async for msg in messages:
                spool.add(msg.SerializeToString())
        except BaseException:
            spool.close()
            raise
        return spool

    def add(self, data: bytes) -> None:
        self._file.write(_LEN.pack(len(data)))
        self._file.write(data)
        self.count += 1

    def read(self, message_type: type) -> Iterator[Any]:
        """The messages in the order they came (blocking: call it on a worker thread)."""
        f = self._file
        f.seek(0)
        for _ in range(self.count):
            (n,) = _LEN.unpack(f.read(_LEN.size))
            yield message_type.FromString(f.read(n))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
