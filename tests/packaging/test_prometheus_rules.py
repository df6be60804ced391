"""The shipped alert rules (packaging/prometheus/certfleet-rules.yml) under the real promtool: they
load, their unit tests pass, and every metric they name is one that certfleet exposes."""
from __future__ import annotations

import re
import subprocess

from tests.conftest import ROOT, need_tools

RULES = ROOT / "packaging" / "prometheus" / "certfleet-rules.yml"
RULE_TESTS = ROOT / "packaging" / "prometheus" / "certfleet-rules.test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, cwd=RULES.parent)


def test_rules_load_under_promtool() -> None:
    need_tools("promtool")
    r = promtool("check", "rules", RULES.name)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 12 rules found" in r.stdout


def test_rule_unit_tests_pass() -> None:
    need_tools("promtool")
    r = promtool("test", "rules", RULE_TESTS.name)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_a_broken_rule_fails_its_unit_test(tmp_path) -> None:  # noqa: ANN001
    """The unit tests can fail: with the stuck-job threshold raised, the expected alert is missing."""
    need_tools("promtool")
    (tmp_path / RULES.name).write_text(RULES.read_text().replace(
        'max(certfleet_jobs{state="stuck"}) > 0', 'max(certfleet_jobs{state="stuck"}) > 5'))
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    r = subprocess.run(["promtool", "test", "rules", RULE_TESTS.name], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode != 0
    assert "CertfleetJobStuck" in r.stdout + r.stderr


def test_rules_name_only_exposed_metrics() -> None:
    """Every certfleet_*/x509_* name in the rules is created by the collector's or the agent's metrics code."""
    names = set(re.findall(r"\b((?:certfleet|x509)_[a-z_]+)\b", RULES.read_text()))
    source = "".join(p.read_text() for d in ("collector/metrics", "agent/metrics") for p in (ROOT / d).glob("*.py"))
    for name in sorted(names):
        base = name[:-len("_total")] if name.endswith("_total") else name
        assert f'"{base}"' in source, f"{name} is in the rules but no metrics module makes it"
