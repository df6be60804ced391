"""The self-contained agent executable (PyInstaller): built once, then used as an operator would."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import ROOT
from tests.e2e.harness import Collector
from tests.packaging.conftest import good_stores_toml

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def frozen_agent() -> Iterator[Path]:
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.skip("needs pyinstaller (pip install -e '.[test]')")
    out = Path(tempfile.mkdtemp(prefix="certfleet-frozen-test-"))
    try:
        p = subprocess.run(["bash", str(ROOT / "packaging/frozen/build.sh"), str(out)],
                           capture_output=True, text=True, timeout=900,
                           env=dict(os.environ, CERTFLEET_PYTHON=sys.executable))
        assert p.returncode == 0, p.stderr[-4000:]
        exe = Path(p.stdout.strip().splitlines()[-1])
        assert exe == out / "certfleet-agent" and exe.is_file()
        yield exe
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run(exe: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # No Python of ours on the way: an empty environment but PATH, started from an unrelated folder.
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120, env=env,
                          cwd=cwd or "/")


def test_version(frozen_agent: Path) -> None:
    from agent import __version__

    p = run(frozen_agent, "--version")
    assert p.returncode == 0 and p.stdout.strip() == f"certfleet-agent {__version__}"


def test_scan_pem_pkcs12_jks(frozen_agent: Path, samples: dict, tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\ndata_dir = "{tmp_path / "data"}"\nhostname = "frozen"\n\n{good_stores_toml(samples)}')
    cfg.chmod(0o600)
    p = run(frozen_agent, "scan", "--config", str(cfg), "--format", "json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    text = json.dumps(report)
    for path in (samples["files"]["fullchain"], samples["files"]["p12"], samples["files"]["jks"]):
        assert path in text, f"{path} missing from the frozen agent's scan"
    types = {c.get("store_type") for c in _certificates(report)}
    assert {"pem", "pkcs12", "jks"} <= types, types
    # the keystores were opened with their passwords: private-key entries with matching keys
    assert any(c.get("store_type") == "jks" and c.get("has_private_key") for c in _certificates(report))


def _certificates(report: dict) -> list[dict]:
    return list(report["certificates"]) + list(report.get("trust_anchors", []))


def test_enroll_run_and_doctor_against_a_collector(frozen_agent: Path, samples: dict, tmp_path: Path) -> None:
    c = Collector(tmp_path / "collector")
    c.start()
    try:
        assert c.init_admin().code == 0
        token = c.token()
        data = tmp_path / "agent" / "data"
        data.mkdir(parents=True, mode=0o700)
        cfg = tmp_path / "agent" / "agent.toml"
        cfg.write_text(f'[agent]\ndata_dir = "{data}"\nhostname = "frozen-host"\n\n{good_stores_toml(samples)}')
        cfg.chmod(0o600)

        p = run(frozen_agent, "doctor", "--config", str(cfg))
        assert p.returncode == 1 and "not enrolled" in p.stdout, p.stdout + p.stderr

        p = run(frozen_agent, "enroll", "--config", str(cfg), "--collector", token["enrollment_endpoint"],
                "--token", token["token"], "--ca-fingerprint", token["ca_fingerprint_sha256"])
        assert p.returncode == 0, p.stderr
        p = run(frozen_agent, "run", "--config", str(cfg), "--once")
        assert p.returncode == 0 and "stored by the collector" in p.stdout, p.stderr

        p = run(frozen_agent, "doctor", "--config", str(cfg), "--format", "json")
        report = json.loads(p.stdout)
        assert p.returncode == 0 and report["failed"] == 0 and report["warnings"] == 0, p.stdout

        agents = c.cli("agents", "list", "--format", "json")
        assert agents.code == 0 and "frozen-host" in agents.out
    finally:
        c.stop()
