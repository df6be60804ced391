"""A batch of mutated stores through ``certfleet-agent scan --format json`` (a subprocess): zero crashes.

Every file is accounted for in the JSON: it has certificates or errors, or it visibly holds no
certificate (a PEM file whose every certificate line was destroyed, a key-only file).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.fuzz.corpus import PASSWORD, Seed
from tests.fuzz.invariant import REGRESSIONS
from tests.fuzz.mutate import case_rng, mutate
from tests.helpers.agent_stores import store_toml, write_config

AGENT = os.environ.get("CERTFLEET_FUZZ_AGENT") or str(Path(sys.executable).parent / "certfleet-agent")
BATCH = 600
_CERT_LINE = re.compile(rb"-----(BEGIN|END) (X509 |TRUSTED )?CERTIFICATE-----")


def test_mutated_batch_through_the_cli(seeds: list[Seed], fuzz_seed: int, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    (tmp_path / "pw").chmod(0o600)
    dirs = {t: tmp_path / t for t in ("pem", "der", "pkcs12", "jks", "jceks", "auto")}
    for d in dirs.values():
        d.mkdir()
    files: dict[str, bytes] = {}
    for case in range(BATCH):
        s = seeds[case % len(seeds)]
        rng = case_rng(fuzz_seed + 1, case)
        data = mutate(s.data, rng, s.store_type)
        where = dirs["auto"] if case % 5 == 0 else dirs[s.store_type]
        path = where / f"{case:04d}-{s.name}{s.suffix}"
        path.write_bytes(data)
        files[str(path)] = data
    for p in REGRESSIONS.iterdir():
        if p.suffix in (".pem", ".der"):
            dest = dirs["auto"] / p.name
            shutil.copy(p, dest)
            files[str(dest)] = p.read_bytes()
    stores = "\n".join(store_toml(t, [str(d / "*")], type=t, password_file=str(tmp_path / "pw"))
                       for t, d in dirs.items())
    cfg = write_config(tmp_path / "cfg", stores)
    p = subprocess.run([AGENT, "scan", "--config", str(cfg), "--format", "json"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-3000:]
    doc = json.loads(p.stdout)
    assert doc["summary"]["files"] == len(files)
    assert not [e for e in doc["errors"] if "unexpected error" in e["message"]]
    assert all(e["reason"] and e["message"] for e in doc["errors"])
    seen = {c["path"] for c in doc["certificates"] + doc["trust_anchors"]} | {e["path"] for e in doc["errors"]}
    missing = [path for path, data in files.items()
               if path not in seen and (not path.endswith(".pem") or _CERT_LINE.search(data))]
    assert missing == []
    assert len(doc["certificates"]) > BATCH // 3 and len(doc["errors"]) > BATCH // 5
