"""``certfleet report`` through the real programs: collector, agent (run --once) and CLI as subprocesses."""
from __future__ import annotations

import csv
import io
import json
import pathlib
from html.parser import HTMLParser

import pytest

from tests.conftest import need_tools
from tests.e2e.harness import Agent, Collector, run
from tests.e2e.test_sync_lifecycle import make_cert, pem_store


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):
    need_tools("openssl")
    work = tmp_path_factory.mktemp("reports")
    c = Collector(work / "collector")
    c.start()
    try:
        assert c.init_admin().code == 0
        roles = {}
        for role in ("auditor", "operator"):
            r = c.init_admin(name=f"{role}1", role=role, out=work / role)
            assert r.code == 0, r.err
            roles[role] = dict(c.env, CERTFLEET_CONFIG=str(work / role / "certfleet.toml"))
        stores = work / "stores"
        (stores / "web").mkdir(parents=True)
        make_cert(stores / "web" / "week.pem", "week.example.test", days=3)
        make_cert(stores / "web" / "month.pem", "month.example.test", days=20)
        make_cert(stores / "quarter.pem", "quarter.example.test", days=60)
        make_cert(stores / "year.pem", "year.example.test", days=365)
        agent = Agent(work / "agent", pem_store(stores))
        agent.write_config(hostname="reports-host")
        r = agent.enroll(c, c.token())
        assert r.code == 0, r.err
        r = agent.run_once()
        assert r.code == 0 and "full report 1 stored" in r.out, r.out + r.err
        r = c.cli("owners", "add", "web-team", "--email", "web@example.com")
        assert r.code == 0, r.err
        r = c.cli("owners", "rules", "add", "--name", "web", "--owner", "web-team", "--path", f"{stores}/web/**",
                  "--environment", "prod", "--criticality", "high", "--service", "shop", "--reason", "the shop")
        assert r.code == 0, r.err
        yield c, work, roles
    finally:
        c.stop()


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        self.tags.append(tag)

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        self.text.append(data)


def test_expiring_html_csv_json(fleet) -> None:  # type: ignore[no-untyped-def]
    c, work, _ = fleet
    out = work / "expiring.html"
    r = c.cli("report", "expiring", "--format", "html", "--out", str(out))
    assert r.code == 0 and f"written to {out}" in r.err, r.err
    assert r.out == ""
    page = out.read_text(encoding="utf-8")
    p = Tags()
    p.feed(page)
    text = "".join(p.text)
    assert "script" not in p.tags and "link" not in p.tags and "http" not in page
    assert text.index("Within 7 days: certificates") < text.index("week.example.test")
    assert "week.example.test" in text and "month.example.test" in text and "quarter.example.test" in text
    assert "year.example.test" not in text
    assert "reports-host" in text and "web-team" in text and "shop" in text and "@media print" in page
    assert not (work / "expiring.html.part").exists()

    r = c.cli("report", "expiring", "--format", "json")
    assert r.code == 0, r.err
    d = json.loads(r.out)
    by_title = {s["title"]: s["rows"] for s in d["sections"]}
    (week,) = by_title["Within 7 days"]
    assert week["subject"] == "week.example.test" and week["host"] == "reports-host"
    assert (week["owner"], week["environment"], week["criticality"], week["service"]) == (
        "web-team", "prod", "high", "shop")
    assert week["days_left"] in (2, 3)
    assert [x["subject"] for x in by_title["Within 30 days"]] == ["month.example.test"]
    (quarter,) = by_title["Within 90 days"]
    assert quarter["owner"] is None and quarter["environment"] == "test"     # the agent's label

    by_owner = {x["owner"]: x for x in by_title["By owner"]}
    assert (by_owner["web-team"]["within_7_days"], by_owner["web-team"]["within_30_days"]) == (1, 1)
    assert by_owner["(no owner)"]["within_90_days"] == 1

    r = c.cli("report", "expiring", "--format", "csv", "--within", "400d")
    assert r.code == 0, r.err
    blocks = r.out.split("\n\n")
    rows = [row for b in blocks[2:] for row in csv.DictReader(io.StringIO(b))]     # after the summary, by owner
    assert {row["subject"] for row in rows} == {"week.example.test", "month.example.test", "quarter.example.test",
                                               "year.example.test"}
    assert {row["section"] for row in rows if row["subject"] == "year.example.test"} == {"Within 400 days"}

    r = c.cli("report", "expiring", env=dict(c.env, COLUMNS="250"))
    assert r.code == 0 and "== Within 7 days (1) ==" in r.out and "week.example.test" in r.out, r.err
    r = c.cli("report", "expiring", env=dict(c.env, COLUMNS="100"))
    assert r.code == 0 and "== Within 90 days (1) ==" in r.out, r.err
    assert all(len(line) <= 100 for line in r.out.splitlines() if "reports-host" in line), r.out

    # a table shows at most --limit detail rows per window (100 unless told), every location counted;
    # the counts per owner are in the full report (--all, CSV, JSON, HTML)
    r = c.cli("report", "expiring", "--limit", "0", env=dict(c.env, COLUMNS="200"))
    assert r.code == 0, r.err
    assert "== Within 7 days (0) ==" in r.out and "showing the soonest 0 of 1 (--all for every row)" in r.out
    assert "week.example.test" not in r.out
    summary_lines = {line.split("  ")[1].strip(): line.split()[-1] for line in r.out.splitlines()
                     if line.startswith("  Within") or line.startswith("  Expired")}
    assert summary_lines["Within 7 days: locations"] == "1" and summary_lines["Within 90 days: certificates"] == "1"
    assert "== By owner" not in r.out and "Locations per owner" in r.out
    r = c.cli("report", "expiring", "--all", env=dict(c.env, COLUMNS="200"))
    assert r.code == 0 and "week.example.test" in r.out and "quarter.example.test" in r.out, r.err
    assert "== By owner (2) ==" in r.out and "web-team" in r.out
    r = c.cli("report", "coverage", "--limit", "5")
    assert r.code == 1 and "takes no parameter limit" in r.err, r.err


def test_owners_coverage_audit_and_roles(fleet) -> None:  # type: ignore[no-untyped-def]
    c, work, roles = fleet
    r = c.cli("report", "owners", "--format", "json", env=roles["auditor"])
    assert r.code == 0, r.err
    d = json.loads(r.out)
    orphaned = {pathlib.Path(x["path"]).name: x["reason"] for x in d["sections"][0]["rows"]}
    assert orphaned == {"quarter.pem": "no_owner", "year.pem": "no_owner"}

    r = c.cli("report", "coverage", "--format", "json")
    assert r.code == 0, r.err
    d = json.loads(r.out)
    (agent,) = next(s for s in d["sections"] if s["title"] == "Agents")["rows"]
    assert agent["host"] == "reports-host" and agent["locations"] == 4 and agent["stores"] == 4
    assert agent["silent"] is False and agent["last_report"]

    out = work / "audit.html"
    r = c.cli("report", "audit", "--since", "2000-01-01", "--format", "html", "--out", str(out), env=roles["auditor"])
    assert r.code == 0, r.err
    page = out.read_text(encoding="utf-8")
    assert "rule.add" in page and "the shop" in page and "owner.create" in page

    # the operator may read reports, but not the audit trail; the refusal is audited
    r = c.cli("report", "expiring", env=roles["operator"])
    assert r.code == 0, r.err
    r = c.cli("report", "audit", env=roles["operator"])
    assert r.code == 1 and "may not audit read" in r.err, r.err
    r = c.cli("report", "audit", "--format", "json")
    refused = next(s for s in json.loads(r.out)["sections"] if s["title"] == "Refused calls")["rows"]
    assert any(x["actor"] == "operator:operator1" and "GetReport" in x["target"] for x in refused), refused

    r = c.cli("report", "nope")
    assert r.code == 1 and "no report 'nope'" in r.err, r.err
    r = c.cli("report", "expiring", "--within", "soon")
    assert r.code == 1 and "is not a duration" in r.err, r.err


def test_an_owner_reads_its_team_reports_only(fleet) -> None:  # type: ignore[no-untyped-def]
    """Role owner (team web-team) runs expiring, violations and owners narrowed to its team;
    coverage and audit cover the whole fleet and are refused, and the refusals audited."""
    c, work, _ = fleet
    r = run("certfleet-collector", "init-admin", "--config", str(c.config), "--out", str(work / "wendy"),
            "--name", "wendy", "--role", "owner", "--team", "web-team", env=c.env)
    assert r.code == 0, r.err
    wendy = dict(c.env, CERTFLEET_CONFIG=str(work / "wendy" / "certfleet.toml"))

    r = c.cli("report", "expiring", "--format", "json", "--within", "400d", env=wendy)
    assert r.code == 0, r.err
    d = json.loads(r.out)
    shown = {x["subject"]: x["owner"] for s in d["sections"][1:] for x in s["rows"]}
    assert shown == {"week.example.test": "web-team", "month.example.test": "web-team"}   # not quarter, year
    assert "(team web-team)" in d["title"]
    assert {x["label"]: x["value"] for x in d["summary"]}["Team"] == "web-team"
    r = c.cli("report", "expiring", env=dict(wendy, COLUMNS="200"))
    assert r.code == 0 and "week.example.test" in r.out and "quarter.example.test" not in r.out, r.err

    r = c.cli("report", "owners", "--format", "json", env=wendy)
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert d["sections"][0]["rows"] == [] and d["sections"][1]["rows"] == []   # web-team: a rule, a contact
    assert {x["label"]: x["value"] for x in d["summary"]}["Locations present"] == 2
    r = c.cli("report", "violations", "--format", "json", env=wendy)
    assert r.code == 0, r.err
    assert {x["label"]: x["value"] for x in json.loads(r.out)["summary"]}["Team"] == "web-team"

    r = c.cli("report", "coverage", env=wendy)
    assert r.code == 1 and "role owner (team web-team) may not read report coverage" in r.err, r.err
    r = c.cli("report", "audit", env=wendy)
    assert r.code == 1 and "may not audit read" in r.err, r.err
    r = c.cli("audit", "list", "--format", "json", "--action", "call.refused", "--actor", "owner:wendy")
    assert r.code == 0, r.err
    refused = [(e["target"], e["detail"].get("report"), e["detail"].get("team")) for e in r.json()]
    assert ("ReportService.GetReport", "coverage", "web-team") in refused, refused
    assert len([t for t in refused if t[0] == "ReportService.GetReport"]) == 2
    assert c.cli("audit", "verify").code == 0
