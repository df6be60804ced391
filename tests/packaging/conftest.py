"""Fixtures for the packaging tests: sample stores made with the real tools, shared by the
doctor, frozen-agent and Debian-package tests."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.harness import load_sample_maker


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """make_sample_stores' stores (openssl, keytool), once per session, in a folder every user can read."""
    missing = [t for t in ("openssl", "keytool") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)} (Debian packages: openssl, default-jre-headless)")
    d = Path(tempfile.mkdtemp(prefix="certfleet-pkg-samples-"))
    d.chmod(0o755)
    try:
        yield load_sample_maker().make_sample_stores(d / "samples")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def good_stores_toml(samples: dict) -> str:
    """[[store]] tables for a PEM, a PKCS#12 and a JKS store that all read cleanly."""
    f, pw = samples["files"], samples["password_files"]
    return (
        f'[[store]]\nname = "pem"\ntype = "pem"\npaths = ["{f["fullchain"]}", "{f["combined"]}"]\n\n'
        f'[[store]]\nname = "p12"\ntype = "pkcs12"\npaths = ["{f["p12"]}"]\npassword_file = "{pw["p12"]}"\n\n'
        f'[[store]]\nname = "jks"\ntype = "jks"\npaths = ["{f["jks"]}"]\npassword_file = "{pw["jks"]}"\n'
    )


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A temporary directory every user can enter (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="certfleet-pkg-test-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
