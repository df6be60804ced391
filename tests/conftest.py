"""Shared test plumbing: where the real tools and servers are."""
from __future__ import annotations

import os
import pathlib
import shutil
import socket

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("CERTFLEET_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("CERTFLEET_REQUIRE_POSTGRES") == "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (packaging/dev/setup.sh installs them)")


@pytest.fixture(scope="session")
def project_debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    """{"certfleet-agent": .deb, "certfleet-collector": .deb} of the project's version, built once per session."""
    from tests.debs import BUILD, build_project_debs, given_debs

    given = given_debs()
    if given is not None:
        return given
    if not BUILD.exists() or shutil.which("dpkg-deb") is None:
        pytest.skip("needs packaging/build-deb.sh and dpkg-deb (a Debian machine) to build the packages")
    return build_project_debs(tmp_path_factory.mktemp("debs") / "out")
