"""Owners, rules, assignments and orphans through the real programs: collector, agent and CLI as subprocesses."""
from __future__ import annotations

import csv
import io
import pathlib

import pytest

from tests.conftest import need_tools
from tests.e2e.harness import Agent, Collector
from tests.e2e.test_sync_lifecycle import make_cert, pem_store


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):
    need_tools("openssl")
    work = tmp_path_factory.mktemp("owners")
    c = Collector(work / "collector")
    c.start()
    try:
        assert c.init_admin().code == 0
        r = c.init_admin(name="carol", role="auditor", out=work / "auditor")
        assert r.code == 0, r.err
        stores = work / "stores"
        (stores / "web").mkdir(parents=True)
        (stores / "web" / "nested").mkdir()
        (stores / "other").mkdir()
        make_cert(stores / "web" / "shop.pem", "shop.example.test")
        make_cert(stores / "web" / "nested" / "api.pem", "api.example.test")
        make_cert(stores / "other" / "legacy.pem", "legacy.example.test")
        make_cert(stores / "other" / "batch.pem", "batch.example.test")
        agent = Agent(work / "agent", pem_store(stores))
        agent.write_config(hostname="owners-host")
        r = agent.enroll(c, c.token())
        assert r.code == 0, r.err
        r = agent.run_once()
        assert r.code == 0 and "full report 1 stored" in r.out, r.out + r.err
        r = c.cli("certs", "list", "--format", "json", "--host", "owners-host")
        assert r.code == 0, r.err
        fps = {pathlib.Path(loc["path"]).name: cert["fingerprint_sha256"] for cert in r.json()
               for loc in cert["locations"]}
        assert set(fps) == {"shop.pem", "api.pem", "legacy.pem", "batch.pem"}
        yield c, stores, fps, dict(c.env, CERTFLEET_CONFIG=str(work / "auditor" / "certfleet.toml"))
    finally:
        c.stop()


def orphan_files(c: Collector, env: dict | None = None) -> set[str]:
    r = c.cli("owners", "orphans", "--format", "json", env=env)
    assert r.code == 0, r.err
    return {pathlib.Path(loc["path"]).name for o in r.json() for loc in o["locations"]}


def test_owner_rule_assign_and_orphans(fleet) -> None:  # type: ignore[no-untyped-def]
    c, stores, fps, auditor = fleet
    assert orphan_files(c) == {"shop.pem", "api.pem", "legacy.pem", "batch.pem"}

    r = c.cli("owners", "add", "web-team", "--email", "web@example.com", "--escalation", "oncall@example.com")
    assert r.code == 0 and "owner web-team added" in r.out, r.err
    r = c.cli("owners", "add", "web-team", "--email", "web@example.com")
    assert r.code == 1 and "already exists" in r.err, r.err
    r = c.cli("owners", "rules", "add", "--name", "web-files", "--owner", "nobody", "--path", f"{stores}/web/**")
    assert r.code == 1 and "no owner 'nobody'" in r.err, r.err
    r = c.cli("owners", "rules", "add", "--name", "web-files", "--owner", "web-team", "--path", f"{stores}/web/**",
              "--environment", "prod", "--criticality", "high", "--reason", "web servers")
    assert r.code == 0 and "rule web-files added at priority 10" in r.out, r.err

    # the rule covers web/ at any depth; the rest stays orphaned
    assert orphan_files(c) == {"legacy.pem", "batch.pem"}
    table = c.cli("owners", "orphans")
    assert table.code == 0 and "no_owner" in table.out and "legacy.example.test" in table.out, table.err
    assert "shop.example.test" not in table.out and "2 orphaned certificates" in table.out
    rows = list(csv.DictReader(io.StringIO(c.cli("owners", "orphans", "--format", "csv").out)))
    assert {pathlib.Path(r["path"]).name for r in rows} == {"legacy.pem", "batch.pem"}
    assert {r["reason"] for r in rows} == {"no_owner"}

    r = c.cli("owners", "explain", fps["api.pem"][:16], "--format", "json")
    assert r.code == 0, r.err
    loc = r.json()["locations"][0]
    assert (loc["owner"], loc["environment"], loc["criticality"], loc["source"]) == ("web-team", "prod", "high",
                                                                                      "rule:web-files")

    # an explicit assignment moves one certificate out of the orphans
    r = c.cli("assign", fps["legacy.pem"][:16], "--owner", "web-team", "--reason", "legacy box is ours")
    assert r.code == 0 and "owner=web-team" in r.out, r.err
    assert orphan_files(c) == {"batch.pem"}

    # an owner without a working contact leaves its certificates orphaned
    r = c.cli("owners", "add", "batch-team", "--webhook", "http://hooks.example.test/plain")
    assert r.code == 0 and "no working contact" in r.err, r.out + r.err
    r = c.cli("assign", fps["batch.pem"][:16], "--owner", "batch-team", "--location", str(stores / "other" / "batch.pem"))
    assert r.code == 0 and "location owners-host:" in r.out, r.err
    r = c.cli("owners", "orphans", "--format", "json")
    [orphan] = r.json()
    assert orphan["reason"] == "no_working_contact" and orphan["locations"][0]["owner"] == "batch-team"
    r = c.cli("owners", "update", "batch-team", "--add-email", "batch@example.com")
    assert r.code == 0, r.err
    assert orphan_files(c) == set()
    assert "no orphans" in c.cli("owners", "orphans").out

    listed = c.cli("owners", "list", "--format", "json").json()
    assert {o["name"]: o["working_contact"] for o in listed} == {"batch-team": True, "web-team": True}
    rules = c.cli("owners", "rules", "list", "--format", "json").json()
    assert [(x["name"], x["sets"]["owner"], x["when"]["path"]) for x in rules] == [
        ("web-files", "web-team", f"{stores}/web/**")]
    assigned = c.cli("owners", "assignments", "--format", "json").json()
    assert sorted(a["scope"] for a in assigned) == ["certificate", "location"]

    # an auditor reads but cannot change ownership
    assert orphan_files(c, env=auditor) == set()
    r = c.cli("assign", fps["shop.pem"][:16], "--owner", "batch-team", env=auditor)
    assert r.code == 1 and "permission denied" in r.err and "auditor" in r.err, r.err
    r = c.cli("owners", "remove", "web-team")
    assert r.code == 1 and "still named by" in r.err, r.err

    # unassigning brings the orphan back; the changes are in the audit trail
    r = c.cli("unassign", fps["legacy.pem"][:16])
    assert r.code == 0 and "1 explicit assignment(s) removed" in r.out, r.err
    assert orphan_files(c) == {"legacy.pem"}
    r = c.cli("audit", "list", "--format", "json")
    assert r.code == 0, r.err
    actions = {e["action"] for e in r.json()}
    assert {"owner.create", "rule.add", "assignment.set", "assignment.remove"} <= actions
