"""The daemons' log formats: ``plain`` (the default) or ``json``, one line per event.

``configure(fmt, level)`` sets the root logger up. JSON lines carry ``time`` (UTC, ISO 8601),
``level``, ``logger``, ``message`` and, when known, ``agent_id``, ``job_id`` and
``request_id``: from :func:`log_context` (a context variable, so it follows a gRPC call's task
and the threads it starts with ``asyncio.to_thread``) or from ``extra={...}`` on the call;
``exc`` holds a traceback. Nothing else of a record is written: the messages already keep
secrets out (the project's rule), and no argument object is serialised behind their back.
"""
from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
from typing import Iterator

__all__ = ["FORMATS", "configure", "log_context", "JsonFormatter", "PLAIN_FORMAT"]

FORMATS = ("plain", "json")
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FIELDS = ("agent_id", "job_id", "request_id")

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("certfleet_log_context", default={})


@contextlib.contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Within the block, JSON lines carry ``fields`` (agent_id, job_id, request_id)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _context.reset(token)


def set_log_fields(**fields: str) -> None:
    """For the rest of this context (a whole process when called at start): the agent's id, say."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v}})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ctx = _context.get()
        for key in FIELDS:
            value = getattr(record, key, None) or ctx.get(key)
            if value:
                out[key] = str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        # one line per event: json.dumps escapes the newlines of messages and tracebacks
        return json.dumps(out, ensure_ascii=False)


def configure(fmt: str = "plain", level: int = logging.INFO) -> None:
    """The root logger writes to stderr in ``fmt``; called again, it replaces its own handler.

    Like ``logging.basicConfig``, it leaves a root logger that someone else set up alone (an
    embedding program, pytest's log capture)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (expected {' or '.join(FORMATS)})")
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "certfleet_logformat", False)]
    if len(ours) != len(root.handlers):
        return
    for h in ours:
        root.removeHandler(h)
    handler = logging.StreamHandler()
    handler.certfleet_logformat = True   # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(PLAIN_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
