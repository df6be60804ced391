"""Helpers for the agent tests (imported by conftest.py and the test modules)."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Iterator

from agent.config import AgentConfig, load_config
from agent.scan.scanner import FileScan, Scanner

ROOT = Path(__file__).resolve().parents[2]


def load_sample_module() -> ModuleType:
    """packaging/dev/make_sample_stores.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("make_sample_stores", ROOT / "packaging/dev/make_sample_stores.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def openssl(*args: str, cwd: Path | None = None) -> None:
    """Run openssl with an argument list; fail the test with its stderr."""
    p = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=cwd)
    assert p.returncode == 0, p.stderr


def keytool(*args: str) -> None:
    p = subprocess.run(["keytool", *args], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def write_config(directory: Path, stores: str, agent: str = "", mode: int = 0o600) -> Path:
    """Write an agent.toml with a data_dir in ``directory`` and the given [[store]] tables."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "agent.toml"
    path.write_text(f'[agent]\ndata_dir = "{directory / "data"}"\nhostname = "test-host"\n{agent}\n{stores}')
    path.chmod(mode)
    return path


def store_toml(name: str, paths: list[str | Path], type: str = "auto", **extra: object) -> str:
    """One [[store]] table."""
    lines = ["[[store]]", f'name = "{name}"', f'type = "{type}"',
             "paths = [" + ", ".join(f'"{p}"' for p in paths) + "]"]
    for k, v in extra.items():
        if isinstance(v, bool):
            lines.append(f"{k} = {'true' if v else 'false'}")
        elif isinstance(v, (list, tuple)):
            lines.append(f"{k} = [" + ", ".join(f'"{x}"' for x in v) + "]")
        elif isinstance(v, dict):
            lines.append(f"{k} = {{ " + ", ".join(f'{a} = "{b}"' for a, b in v.items()) + " }")
        else:
            lines.append(f'{k} = "{v}"')
    return "\n".join(lines) + "\n"


def config_for(tmp_path: Path, *stores: str, agent: str = "") -> AgentConfig:
    return load_config(write_config(tmp_path / "cfg", "\n".join(stores), agent=agent))


def scan_by_path(scanner: Scanner, force: bool = False) -> dict[str, FileScan]:
    """One complete scan as {path: FileScan}."""
    out: dict[str, FileScan] = {}
    for fs in scanner.scan(force=force):
        assert fs.path not in out, f"{fs.path} yielded twice"
        out[fs.path] = fs
    return out


def reasons(fs: FileScan) -> list[str]:
    return [p.reason for p in fs.problems]


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block without root's power to read any file (seteuid to nobody and back).

    A no-op when the tests do not run as root. Paths used inside must be
    reachable by everybody (see ``public_tmp``).
    """
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
