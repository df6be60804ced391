"""Ids and names that become file names are checked whole: a trailing newline (which ``^...$`` with
``re.match`` lets through) is refused."""
from __future__ import annotations

import pathlib

import pytest

from agent.commands import JobDir
from agent.errors import AgentError
from agent.netscan.plan import ScanRefused, plan_scan


def test_job_id_with_a_trailing_newline_is_refused(tmp_path: pathlib.Path) -> None:
    JobDir(tmp_path, "0123456789abcdef")
    with pytest.raises(AgentError, match="not an id"):
        JobDir(tmp_path, "0123456789abcdef\n")


def test_scan_id_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ScanRefused, match="not an id"):
        plan_scan("scan-1\n", ["10.0.0.1"], [443])
