"""Streaming a blocking registry iterator to a gRPC client a page at a time, off the event loop."""
from __future__ import annotations

import asyncio
import itertools
from typing import AsyncIterator, Iterator, TypeVar

T = TypeVar("T")
PAGE = 200


async def paged(it: Iterator[T]) -> AsyncIterator[list[T]]:
    """Drain a blocking registry iterator a page at a time off the event loop."""
    try:
        while True:
            page = await asyncio.to_thread(lambda: list(itertools.islice(it, PAGE)))
            if not page:
                return
            yield page
    finally:
        close = getattr(it, "close", None)
        if close is not None:  # release the database cursor when the client goes away early
            await asyncio.to_thread(close)
