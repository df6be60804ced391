"""Domain errors to gRPC status codes, in one place.

A servicer method wrapped with :func:`unary` or :func:`streaming` turns
``CollectorError`` subclasses into status codes with their user-safe message;
anything else becomes INTERNAL with a generic message, and the traceback goes
to the log only.

A database outage (:class:`~collector.errors.DatabaseUnavailable`) is UNAVAILABLE with a retry
hint in the trailing metadata (``errors.RETRY_AFTER_METADATA``, seconds): agents back off and try again,
the CLI says the database is unavailable. The registry logs the outage once
(collector/registry/db.py); the calls it refuses are not logged one by one.
"""
from __future__ import annotations

import contextvars
import functools
import logging
from typing import Any, AsyncIterator, Awaitable, Callable

import grpc

from collector import errors

log = logging.getLogger(__name__)

# The RPC being served ("AdminService.Renew"), for the audit of refused calls.
_METHOD: contextvars.ContextVar[str] = contextvars.ContextVar("certfleet_rpc_method", default="")


def current_method() -> str:
    """The servicer method this task is serving ("" outside one)."""
    return _METHOD.get()


def _method_name(fn: Callable[..., Any]) -> str:
    cls, _, name = fn.__qualname__.rpartition(".")
    return f"{cls.removesuffix('r') if cls.endswith('Servicer') else cls}.{name}" if cls else name


#: the retry hint sent with UNAVAILABLE: seconds to wait before trying again
RETRY_AFTER_SECONDS = 5

_CODES: list[tuple[type[BaseException], grpc.StatusCode]] = [
    (errors.DatabaseUnavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.Ambiguous, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.TokenInvalid, grpc.StatusCode.PERMISSION_DENIED),
    (errors.TokenUsed, grpc.StatusCode.PERMISSION_DENIED),
    (errors.TokenExpired, grpc.StatusCode.PERMISSION_DENIED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.TooSlow, grpc.StatusCode.DEADLINE_EXCEEDED),
]


def status_for(exc: BaseException) -> grpc.StatusCode:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    if isinstance(exc, errors.CollectorError):
        return grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.INTERNAL


def retry_hint() -> tuple[tuple[str, str], ...]:
    """Trailing metadata asking the client to retry after :data:`RETRY_AFTER_SECONDS`."""
    return ((errors.RETRY_AFTER_METADATA, str(RETRY_AFTER_SECONDS)),)


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException, method: str) -> None:
    code = status_for(exc)
    if code is grpc.StatusCode.UNAVAILABLE:   # an outage, logged once by the registry
        log.debug("%s refused: the database is unavailable", method)
        await context.abort(code, str(exc), trailing_metadata=retry_hint())
    if code is grpc.StatusCode.INTERNAL:
        log.exception("%s failed", method)
        await context.abort(code, "internal error in the collector; see its log")
    log.info("%s refused: %s: %s", method, code.name, exc)
    await context.abort(code, str(exc))


def unary(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    method = _method_name(fn)

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        _METHOD.set(method)
        try:
            return await fn(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to a status, traceback logged
            await _abort(context, exc, fn.__qualname__)

    return wrapper


def streaming(fn: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    method = _method_name(fn)

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        _METHOD.set(method)
        try:
            async for item in fn(self, request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001
            await _abort(context, exc, fn.__qualname__)

    return wrapper
