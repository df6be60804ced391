"""Certificates that used to crash the local scan or drop a file's other certificates (issue 13).

The certificates are crafted at test time (tests/helpers/crafted_certs.py) and go through the
real reader, scanner and the ``certfleet-agent scan`` command.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agent.inventory import MATCHES
from agent.stores import ReadContext, reader_for

from tests.helpers import crafted_certs as crafted
from tests.helpers.agent_stores import store_toml, write_config

AGENT = str(Path(sys.executable).parent / "certfleet-agent")


def _scan_json(tmp_path: Path, *files: Path) -> dict:
    cfg = write_config(tmp_path / "cfg", store_toml("s", [str(f) for f in files]))
    p = subprocess.run([AGENT, "scan", "--config", str(cfg), "--format", "json"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    return json.loads(p.stdout)


def test_duplicate_extension_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    good, _ = crafted.build("good.example.test")
    f = tmp_path / "bundle.pem"
    f.write_bytes(crafted.pem_raw(crafted.duplicate_san()) + crafted.pem_raw(good))
    doc = _scan_json(tmp_path, f)
    names = sorted(c["common_name"] for c in doc["certificates"])
    assert names == ["dup.example.test", "good.example.test"]        # both reported
    dup = next(c for c in doc["certificates"] if c["common_name"] == "dup.example.test")
    assert dup["sans"] == []
    [err] = doc["errors"]
    assert err["reason"] == "corrupt" and "2.5.29.17 twice" in err["message"] and err["path"] == str(f)
    # the table form too
    cfg = tmp_path / "cfg" / "agent.toml"
    p = subprocess.run([AGENT, "scan", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "good.example.test" in p.stdout and "twice" in p.stdout, p.stderr


def test_invalid_version_keeps_the_files_other_certificates(tmp_path: Path) -> None:
    """keys.cert_spki used to let x509.InvalidVersion out: the whole cert+key file was lost."""
    good, key = crafted.build("kept.example.test")
    data = crafted.pem_raw(good) + crafted.pem_raw(crafted.invalid_version()) + crafted.key_pem(key)
    ctx = ReadContext()
    entries = reader_for("auto").read("/x/combined.pem", data, ctx)
    assert len(entries) == 2
    assert entries[0].key_match == MATCHES and entries[0].has_private_key
    f = tmp_path / "combined.pem"
    f.write_bytes(data)
    doc = _scan_json(tmp_path, f)
    assert "kept.example.test" in [c["common_name"] for c in doc["certificates"]]
    assert any("5 is not a valid X509 version" in e["message"] for e in doc["errors"])


def test_invalid_version_key_certificate_is_unknown_not_fatal(tmp_path: Path) -> None:
    """The broken certificate is the key's own: the key cannot be matched, the others stay."""
    _, key = crafted.build()
    other, _ = crafted.build("other.example.test")
    data = crafted.pem_raw(crafted.invalid_version(key)) + crafted.pem_raw(other) + crafted.key_pem(key)
    ctx = ReadContext()
    entries = reader_for("pem").read("/x/c.pem", data, ctx)
    assert len(entries) == 2 and entries[0].key_match != MATCHES


def test_non_utf8_names_are_shown_repaired_and_marked(tmp_path: Path) -> None:
    """cryptography refuses the name; it used to make the whole certificate "cannot be parsed"."""
    f = tmp_path / "latin1.pem"
    f.write_bytes(crafted.pem_raw(crafted.non_utf8_cn()))
    doc = _scan_json(tmp_path, f)
    [c] = doc["certificates"]
    assert c["common_name"] == "caf\ufffd\ufffd-xx.example.test" and c["names_repaired"] is True
    assert c["not_after"] is not None and c["key_type"] == "EC"       # the rest of the certificate is read
    [err] = doc["errors"]
    assert "not valid in their string type" in err["message"]


def test_a_future_not_before_is_a_fact(tmp_path: Path) -> None:
    import datetime as dt   # noqa: PLC0415 - this test only

    start = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3)
    future, _ = crafted.build("future.example.test", start=start)
    now, _ = crafted.build("now.example.test")
    f = tmp_path / "two.pem"
    f.write_bytes(crafted.pem_raw(future) + crafted.pem_raw(now))
    doc = _scan_json(tmp_path, f)
    flags = {c["common_name"]: c["not_yet_valid"] for c in doc["certificates"]}
    assert flags == {"future.example.test": True, "now.example.test": False}
    assert doc["summary"]["not_yet_valid"] == 1
    cfg = tmp_path / "cfg" / "agent.toml"
    p = subprocess.run([AGENT, "scan", "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    assert "1 not yet valid" in p.stdout
