"""Fixtures for the agent's store, scanner, config and local report tests.

Stores are made with the real tools (openssl, keytool) by
packaging/dev/make_sample_stores.py once per session; tests that change files
copy what they need into their own tmp_path. Helpers live in tests/helpers/agent_stores.py.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers.agent_stores import load_sample_module


@pytest.fixture(scope="session")
def real_tools() -> dict[str, str]:
    """openssl and keytool; the tests that need them are skipped (with the reason) when missing."""
    found = {t: shutil.which(t) for t in ("openssl", "keytool")}
    missing = [t for t, p in found.items() if p is None]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)} (Debian packages: openssl, default-jre-headless)")
    return found  # type: ignore[return-value]


@pytest.fixture(scope="session")
def samples(real_tools: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The sample stores (see make_sample_stores), made once per session. Do not modify them."""
    return load_sample_module().make_sample_stores(tmp_path_factory.mktemp("samples"))


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A temporary directory every user can enter (tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="certfleet-agent-test-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
