"""``certfleet-agent scan`` output: the table people read and the JSON tools read."""
from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import pytest

from agent.config import load_config
from agent.errors import AgentError
from agent.cli.localreport import cert_facts, days_left, render_scan

from tests.helpers.agent_stores import config_for, openssl, store_toml

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)


def render(config, fmt: str, now: dt.datetime = NOW, encoding: str = "utf-8") -> tuple[int, str]:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding=encoding, newline="\n")
    code = render_scan(config, fmt, out, now)
    out.flush()
    return code, raw.getvalue().decode(encoding)


@pytest.fixture(scope="module")
def long_subject(samples: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("long")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-nodes",
            "-keyout", str(d / "k.pem"), "-out", str(d / "long.pem"), "-days", "400",
            "-subj", "/O=Example/CN=a-really-long-host-name-for-the-reporting-service.example.test",
            "-addext", "subjectAltName=DNS:a.example.test,IP:192.0.2.7")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(d / "k2.pem"), "-out", str(d / "nocn.pem"), "-days", "400", "-subj", "/O=No Common Name Ltd")
    return d


def test_table_reads_well_in_100_columns(samples: dict) -> None:
    code, text = render(load_config(samples["config_path"]), "table", dt.datetime.now(dt.timezone.utc))
    assert code == 0
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert lines[0].endswith("26 certificates in 20 files from 5 stores")
    assert lines[1] == "1 expired, 1 expiring within 30 days, 4 problems"
    header = next(i for i, line in enumerate(lines) if line.startswith("NOT AFTER"))
    rows = lines[header + 1: header + 1 + 26]
    assert lines[header + 1 + 26] == ""
    assert "expired.example.test" in rows[0] and int(rows[0].split()[1]) < 0     # soonest first
    assert "soon.example.test" in rows[1] and 0 <= int(rows[1].split()[1]) <= 10
    dates = [r[:10] for r in rows]
    assert dates == sorted(dates)
    combined = next(r for r in rows if r.endswith("/pem/combined.pem"))
    assert "www.example.test" in combined and "RSA 2048" in combined and " matches " in combined
    assert any(" MISMATCH " in r for r in rows) and any(" encrypted " in r for r in rows)
    assert any(r.endswith("app.jks [app] #0") for r in rows)
    problems = text[text.index("Problems (4):"):]
    assert "wrong_password" in problems and "wrong-password.p12" in problems
    assert "the file is empty" in problems


def test_table_truncates_long_subjects_and_paths(long_subject: Path, tmp_path: Path) -> None:
    deep = tmp_path / ("very-long-directory-name-" * 3) / "nested"
    deep.mkdir(parents=True)
    (deep / "long.pem").write_bytes((long_subject / "long.pem").read_bytes())
    (deep / "nocn.pem").write_bytes((long_subject / "nocn.pem").read_bytes())
    cfg = config_for(tmp_path, store_toml("s", [str(deep / "*.pem")]))
    _, text = render(cfg, "table")
    rows = [line for line in text.splitlines() if line.startswith("20")]
    assert len(rows) == 2 and all(len(r) <= 100 for r in rows)
    long_row = next(r for r in rows if "a-really-long" in r)
    assert "a-really-long-host-name…" in long_row and "EC P-384" in long_row
    location = long_row.split(" - ", 1)[1].strip()
    assert location.startswith("…") and location.endswith("-name-/nested/long.pem")   # cut on the left
    assert any("O=No Common Name Ltd" in r for r in rows)
    _, ascii_text = render(cfg, "table", encoding="ascii")
    assert "a-really-long-host-na..." in ascii_text and "…" not in ascii_text


def test_json_has_every_field_and_the_errors(samples: dict, long_subject: Path, tmp_path: Path) -> None:
    code, text = render(load_config(samples["config_path"]), "json")
    assert code == 0
    doc = json.loads(text)
    assert doc["summary"]["certificates"] == len(doc["certificates"]) == 26
    assert doc["scanned_at"] == "2026-06-01T12:00:00Z"
    keys = {"subject", "sans", "issuer", "not_after", "days_left", "key_type", "key_size", "key_curve", "path",
            "alias", "chain_index", "store_type", "has_private_key", "key_encrypted", "key_match",
            "fingerprint_sha256"}
    assert all(keys <= c.keys() for c in doc["certificates"])
    server = next(c for c in doc["certificates"] if c["path"] == samples["files"]["p12"] and c["chain_index"] == 0)
    assert server["sans"] == ["www.example.test", "example.test"] and server["alias"] == "server"
    assert (server["key_type"], server["key_size"], server["key_curve"]) == ("RSA", 2048, None)
    assert server["subject"] == "CN=www.example.test,O=Example"
    assert server["issuer"] == "CN=Certfleet Sample Intermediate CA,O=Certfleet Sample"
    assert (server["has_private_key"], server["key_encrypted"], server["key_match"]) == (True, True, "matches")
    expired = next(c for c in doc["certificates"] if c["path"] == samples["files"]["expired"])
    assert expired["not_after"] == "2021-01-01T00:00:00Z" and expired["days_left"] < -1900
    assert {e["reason"] for e in doc["errors"]} == {"empty", "truncated", "corrupt", "wrong_password"}
    assert all({"path", "reason", "message", "store_type", "alias"} <= e.keys() for e in doc["errors"])

    cfg = config_for(tmp_path, store_toml("s", [str(long_subject / "long.pem")]))
    cert = json.loads(render(cfg, "json")[1])["certificates"][0]
    assert cert["sans"] == ["a.example.test", "IP:192.0.2.7"] and cert["key_curve"] == "P-384"


def test_days_left_uses_the_injected_clock(samples: dict) -> None:
    der = Path(samples["files"]["der"]).read_bytes()
    facts = cert_facts(der)
    assert facts.not_after is not None and facts.common_name == "www.example.test"
    assert days_left(facts.not_after, facts.not_after - dt.timedelta(days=3, hours=1)) == 3
    assert days_left(facts.not_after, facts.not_after + dt.timedelta(hours=1)) == -1
    assert cert_facts(b"\x30\x03\x02\x01\x00").error


def test_no_certificates_and_bad_format(tmp_path: Path) -> None:
    cfg = config_for(tmp_path, store_toml("s", [str(tmp_path / "none/*.pem")]))
    code, text = render(cfg, "table")
    assert code == 0 and "No certificates found." in text and "Problems" not in text
    doc = json.loads(render(cfg, "json")[1])
    assert doc["certificates"] == [] and doc["errors"] == []
    with pytest.raises(AgentError, match="unknown output format 'xml'"):
        render(cfg, "xml")
