"""certfleet/logformat.py: the JSON log lines both daemons write with --log-format json."""
from __future__ import annotations

import contextvars
import io
import json
import logging
import threading
import uuid

import pytest

from certfleet.logformat import JsonFormatter, configure, log_context


def capture() -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"certfleet.test.{uuid.uuid4().hex}")
    logger.disabled = False
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, out


def lines(out: io.StringIO) -> list[dict]:
    text = out.getvalue()
    return [json.loads(ln) for ln in text.splitlines()]


def fresh(fn):  # noqa: ANN001, ANN201
    """Run ``fn`` in an empty context: log fields another test left in this thread's context do not leak in."""
    def run() -> None:
        contextvars.Context().run(fn)
    run.__name__ = fn.__name__
    return run


@fresh
def test_one_line_per_event_with_the_fields() -> None:
    log, out = capture()
    log.info("report from %s: %d upserted", "agent-1", 3)
    log.warning("two\nlines in one message")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    got = lines(out)
    assert len(got) == 3                                   # the newline and the traceback stay inside their line
    assert got[0]["message"] == "report from agent-1: 3 upserted" and got[0]["level"] == "INFO"
    assert got[0]["logger"] == log.name and got[0]["time"].endswith("+00:00")
    assert got[1]["message"] == "two\nlines in one message"
    assert got[2]["level"] == "ERROR" and "ValueError: boom" in got[2]["exc"]
    assert "agent_id" not in got[0] and "request_id" not in got[0]


@fresh
def test_context_fields_follow_the_call_and_its_threads() -> None:
    log, out = capture()
    with log_context(request_id="r-1", agent_id="agent-7"):
        log.info("in the call")
        t = threading.Thread(target=lambda: log.info("not in the call"))   # a plain thread starts empty
        t.start()
        t.join()
        with log_context(job_id="job-9"):
            log.info("in the job")
    log.info("after", extra={"job_id": "job-x"})
    got = lines(out)
    assert (got[0].get("request_id"), got[0].get("agent_id"), got[0].get("job_id")) == ("r-1", "agent-7", None)
    assert "request_id" not in got[1]
    assert (got[2]["request_id"], got[2]["job_id"]) == ("r-1", "job-9")
    assert "request_id" not in got[3] and got[3]["job_id"] == "job-x"


@fresh
def test_only_the_message_is_written_not_the_arguments_behind_it() -> None:
    log, out = capture()
    log.info("connected", extra={"password": "hunter2", "secret": object()})
    assert "hunter2" not in out.getvalue()
    assert set(lines(out)[0]) == {"time", "level", "logger", "message"}


def test_unknown_format_refused() -> None:
    with pytest.raises(ValueError, match="plain or json"):
        configure("xml")


def test_configure_replaces_only_its_own_handler() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        root.handlers[:] = []
        configure("plain")
        configure("json")                                   # the daemon switching after reading its config
        assert len(root.handlers) == 1 and isinstance(root.handlers[0].formatter, JsonFormatter)
        foreign = logging.NullHandler()
        root.handlers[:] = [foreign]
        configure("json", logging.DEBUG)                    # someone else's set-up is left alone
        assert root.handlers == [foreign]
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
