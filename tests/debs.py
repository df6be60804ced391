"""Build the Debian packages once per test session (tests/packaging and tests/ansible share them).

``packaging/build-deb.sh`` is run with a wheelhouse kept in ~/.cache/certfleet/wheelhouse
(or $CERTFLEET_TEST_WHEELHOUSE) so a second build on the same machine does not ask the index again.
``CERTFLEET_TEST_DEB_DIR``: a folder that already holds both packages of the project's version,
used instead of building them.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "packaging/build-deb.sh"
PACKAGES = ("certfleet-agent", "certfleet-collector")
# the tests that install the packages on this machine take this lock, so two never overlap
LOCK = Path("/run/lock/certfleet-package-tests.lock")
LOCK_WAIT = 900.0
WHEELHOUSE = Path(os.environ.get("CERTFLEET_TEST_WHEELHOUSE", Path.home() / ".cache/certfleet/wheelhouse"))


def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def start_build(outdir: Path, version: str) -> subprocess.Popen:
    """Start packaging/build-deb.sh for ``version`` into ``outdir``; its log goes beside ``outdir``."""
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    outdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CERTFLEET_DEB_VERSION=version, CERTFLEET_WHEELHOUSE=str(WHEELHOUSE))
    log = open(outdir.parent / f"build-{version}.log", "w")
    try:
        return subprocess.Popen(["bash", str(BUILD), str(outdir)], stdout=subprocess.PIPE, stderr=log,
                                text=True, env=env)
    finally:
        log.close()


def finish_build(proc: subprocess.Popen, outdir: Path, version: str) -> dict[str, Path]:
    """{package name: .deb path} once the build started by :func:`start_build` has ended well."""
    out, _ = proc.communicate(timeout=900)
    log = (outdir.parent / f"build-{version}.log").read_text()
    if proc.returncode != 0:
        raise AssertionError(f"build-deb.sh failed (exit {proc.returncode}):\n{log[-4000:]}")
    debs = {p.name.split("_")[0]: p for p in map(Path, out.split())}
    if set(debs) != set(PACKAGES):
        raise AssertionError(f"build-deb.sh wrote {out!r}")
    return debs


def given_debs() -> dict[str, Path] | None:
    folder = os.environ.get("CERTFLEET_TEST_DEB_DIR")
    if not folder:
        return None
    found = {}
    for name in PACKAGES:
        debs = sorted(Path(folder).glob(f"{name}_*.deb"), key=lambda p: p.stat().st_mtime)
        if debs:
            found[name] = debs[-1]
    if len(found) != len(PACKAGES):
        raise AssertionError(f"CERTFLEET_TEST_DEB_DIR={folder} does not hold both packages")
    return found


def build_project_debs(outdir: Path) -> dict[str, Path]:
    started = time.monotonic()
    version = project_version()
    debs = finish_build(start_build(outdir, version), outdir, version)
    print(f"\nbuilt {', '.join(f'{p.name} ({p.stat().st_size / 1e6:.1f} MB)' for p in debs.values())} "
          f"in {time.monotonic() - started:.0f} s")
    return debs


@contextlib.contextmanager
def package_lock(wait: float = LOCK_WAIT) -> Iterator[None]:
    """Hold the machine-wide lock of the package-installing tests (skip after ``wait`` seconds)."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as lock:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.skip(f"another test held {LOCK} (installing the packages) for {wait:.0f} s")
                time.sleep(2)
        yield
