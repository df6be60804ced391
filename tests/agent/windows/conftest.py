"""Fixtures for the Windows layer's tests: recorded data, a fake at the Windows boundary, real TLS on loopback.

- ``data``: the recorded / composed fixtures in ``data/`` (see data/README.md).
- ``pki``: a test root + issuing CA that make leaf certificates.
- ``loopback(n)``: distinct 127.250.x.y addresses for this test process.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from tests.helpers.agent_windows_fakes import Pki

DATA = Path(__file__).parent / "data"


@pytest.fixture
def data() -> Path:
    return DATA


@pytest.fixture(scope="session")
def pki() -> Pki:
    return Pki.make()


@pytest.fixture
def loopback() -> Callable[[int], str]:
    base = os.getpid() % 250

    def address(n: int) -> str:
        return f"127.250.{base}.{n}"

    return address
