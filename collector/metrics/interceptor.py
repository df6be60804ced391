"""gRPC server calls by method and status code, and a request id for the logs of each call.

A ``grpc.aio.ServerInterceptor`` wrapping each method's behaviour: when the call ends, the
code it ended with (``context.code()``: set by ``abort`` or ``set_code``; OK when the
behaviour returned, UNKNOWN when it raised, CANCELLED when the client went away) is counted
in ``certfleet_grpc_server_handled_total{method, code}`` and its duration in
``certfleet_grpc_server_handling_seconds{method}``. Methods are the services' own (an
unknown method finds no handler and is not counted), so the label set is bounded.
"""
from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from typing import Any, Awaitable, Callable

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from certfleet.logformat import log_context

__all__ = ["CallMetrics"]

BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def _code_name(code: Any) -> str:
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        for c in grpc.StatusCode:
            if c.value[0] == code:
                return c.name
    return "UNKNOWN"


class CallMetrics(grpc.aio.ServerInterceptor):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.handled = Counter("certfleet_grpc_server_handled", "gRPC calls this process answered, by method and code",
                               ["method", "code"], registry=registry)
        self.seconds = Histogram("certfleet_grpc_server_handling_seconds",
                                 "Duration of gRPC calls (streams: until they end)", ["method"],
                                 buckets=BUCKETS, registry=registry)

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], details: Any) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        if handler.unary_unary:
            return handler._replace(unary_unary=self._unary(method, handler.unary_unary))
        if handler.stream_unary:
            return handler._replace(stream_unary=self._unary(method, handler.stream_unary))
        if handler.unary_stream:
            return handler._replace(unary_stream=self._streaming(method, handler.unary_stream))
        if handler.stream_stream:
            return handler._replace(stream_stream=self._streaming(method, handler.stream_stream))
        return handler

    def _done(self, method: str, context: Any, t0: float, error: BaseException | None) -> None:
        code = context.code()
        if code is None:
            if error is None:
                name = "OK"
            elif isinstance(error, asyncio.CancelledError):
                name = "CANCELLED"
            else:
                name = "UNKNOWN"
        else:
            name = _code_name(code)
        self.handled.labels(method, name).inc()
        self.seconds.labels(method).observe(time.perf_counter() - t0)

    def _unary(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapped(request: Any, context: Any) -> Any:
            t0, error = time.perf_counter(), None
            with log_context(request_id=uuid.uuid4().hex[:16]):
                try:
                    return await behavior(request, context)
                except BaseException as e:
                    error = e
                    raise
                finally:
                    self._done(method, context, t0, error)
        return wrapped

    def _streaming(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapped(request: Any, context: Any) -> Any:
            t0, error = time.perf_counter(), None
            with log_context(request_id=uuid.uuid4().hex[:16]):
                try:
                    result = behavior(request, context)
                    if inspect.isasyncgen(result):
                        async for item in result:
                            yield item
                    else:                      # a coroutine that writes with context.write
                        await result
                except BaseException as e:
                    error = e
                    raise
                finally:
                    self._done(method, context, t0, error)
        return wrapped
