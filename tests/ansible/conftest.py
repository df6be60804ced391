"""Fixtures for the Ansible role tests: the Debian packages, built once per session.

The roles are tested against this machine as a real host: packages installed with apt, services
started, then purged. That needs root (CI runs as root on a throwaway Debian machine); without it
the tests are skipped with the reason.

``CERTFLEET_TEST_DEB_DIR`` (see tests/debs.py): a folder that already holds certfleet-agent_*.deb and
certfleet-collector_*.deb (for example from ``packaging/build-deb.sh``) to test those instead of
building them here (the build takes a few minutes).
"""
from __future__ import annotations

import pathlib

import pytest


def _pick(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    found = {}
    for name in ("agent", "collector"):
        debs = sorted(folder.glob(f"certfleet-{name}_*.deb"), key=lambda p: p.stat().st_mtime)
        if debs:
            found[name] = debs[-1]
    return found


@pytest.fixture(scope="session")
def certfleet_debs(project_debs: dict[str, pathlib.Path]) -> dict[str, pathlib.Path]:
    """{"agent": .deb, "collector": .deb}: the session's packages (tests/conftest.py builds them once)."""
    return {"agent": project_debs["certfleet-agent"], "collector": project_debs["certfleet-collector"]}
