"""A PEM bundle larger than the streaming threshold is read in parts, losing nothing (issue 13).

The figures (time, peak RSS of a 100,000-certificate scan) are in bench/bench_bigpem.py; here:
the parts give the same certificates as a whole read, a damaged block in the middle is one
problem with its file offset, the JSON report lists every certificate, and a file with a key
is still read whole (its key match needs every block).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli.doctor_checks import check_stores
from agent.config import load_config
from agent.scan.filescan import STREAM_SIZE
from agent.scan.scanner import Scanner
from agent.stores import ReadContext, reader_for

from tests.helpers import crafted_certs as crafted
from tests.helpers.agent_stores import store_toml, write_config

AGENT = str(Path(sys.executable).parent / "certfleet-agent")
N = 20_000          # about 10 MB of PEM: over STREAM_SIZE


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bigpem") / "big.pem"
    crafted.write_bulk_pem(path, N)
    assert path.stat().st_size > STREAM_SIZE
    return path


def _config(tmp_path: Path, path: Path, type: str = "pem"):  # noqa: ANN202
    return write_config(tmp_path / "cfg", store_toml("big", [str(path)], type=type),
                        agent='max_file_size = "100MB"')


def test_parts_give_what_a_whole_read_gives(bundle: Path, tmp_path: Path) -> None:
    whole = reader_for("pem").read(str(bundle), bundle.read_bytes(), ReadContext())
    parts = list(Scanner(load_config(_config(tmp_path, bundle, "auto"))).scan())
    assert N // 1000 <= len(parts) <= N // 1000 + 1 and all(p.path == str(bundle) for p in parts)
    assert [p.signature is not None for p in parts] == [True] + [False] * (len(parts) - 1)
    entries = [e for p in parts for e in p.entries]
    assert [(e.key.chain_index, e.fingerprint) for e in entries] == [(e.key.chain_index, e.fingerprint) for e in whole]
    assert all(e.der for e in entries) and not any(p.problems for p in parts)
    [store] = check_stores(load_config(_config(tmp_path, bundle)))
    assert "1 file" in store.message and f"{N} certificate" in store.message, store.message


def test_a_damaged_block_in_the_middle_is_one_problem(bundle: Path, tmp_path: Path) -> None:
    data = bundle.read_bytes()
    begins = [m.start() for m in re.finditer(rb"-----BEGIN CERTIFICATE-----", data)]
    victim = begins[12_345]
    bad = tmp_path / "bad.pem"
    bad.write_bytes(data[:victim] + b"-----BEGIN CERTIFICAT-----" + data[victim + 27:])
    parts = list(Scanner(load_config(_config(tmp_path, bad))).scan())
    entries = [e for p in parts for e in p.entries]
    problems = [q for p in parts for q in p.problems]
    assert len(entries) == N - 1
    [problem] = problems
    assert f"block 12346 " in problem.message and f"byte {victim}" in problem.message, problem.message


def test_the_scan_command_lists_every_certificate(bundle: Path, tmp_path: Path) -> None:
    p = subprocess.run([AGENT, "scan", "--config", str(_config(tmp_path, bundle)), "--format", "json"],
                       capture_output=True, timeout=600)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["summary"]["certificates"] == N == len(doc["certificates"])
    assert doc["summary"]["files"] == 1 and doc["errors"] == []
    assert len({c["fingerprint_sha256"] for c in doc["certificates"]}) == N
    dates = [c["not_after"] for c in doc["certificates"]]
    assert dates == sorted(dates)


def test_a_large_file_with_a_key_is_read_whole(bundle: Path, tmp_path: Path) -> None:
    der, key = crafted.build("keyed.example.test")
    keyed = tmp_path / "keyed.pem"
    keyed.write_bytes(crafted.pem_raw(der) + bundle.read_bytes() + crafted.key_pem(key))
    parts = list(Scanner(load_config(_config(tmp_path, keyed))).scan())
    assert len(parts) == 1 and len(parts[0].entries) == N + 1
    assert parts[0].entries[0].key_match == "matches"
