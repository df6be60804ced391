"""Fixtures for the install pipeline tests: a test CA, real nginx instances, real keystores.

nginx tests are skipped (with the reason) when Debian's nginx is not installed;
packaging/dev/setup.sh installs it. Every nginx started here is stopped when
its test ends.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.helpers.install_sites import Nginx, TestCA, nginx_binary

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="session")
def other_ca() -> TestCA:
    return TestCA("Certfleet Untrusted")


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    found = nginx_binary()
    if found is None:
        pytest.skip("needs Debian's nginx (apt-get install nginx; packaging/dev/setup.sh installs it)")
    return found


@pytest.fixture
def nginx(nginx_bin: str, tmp_path: Path) -> Iterator[Callable[..., Nginx]]:
    """Start nginx serving given cert/key files: ``nginx(cert, key)``; all are stopped afterwards."""
    started: list[Nginx] = []

    def start(cert: Path, key: Path, server_name: str = "www.example.test") -> Nginx:
        prefix = Path(tempfile.mkdtemp(prefix="nginx-", dir=tmp_path))
        n = Nginx(nginx_bin, prefix, cert, key, server_name)
        started.append(n)
        return n

    try:
        yield start
    finally:
        for n in started:
            n.stop()


@pytest.fixture(scope="session")
def real_tools() -> None:
    missing = [t for t in ("openssl", "keytool") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)} (Debian packages: openssl, default-jre-headless)")


@pytest.fixture(scope="session")
def sample_stores(real_tools: None, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """packaging/dev/make_sample_stores.py's stores, made once; copy files before changing them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_sample_stores", ROOT / "packaging/dev/make_sample_stores.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_sample_stores(tmp_path_factory.mktemp("install-samples"))
