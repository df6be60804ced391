"""Role owner through the real programs: an identity acting for web-team sees, renews and follows
only web-team's certificates; another team's certificate is not found for it and its renewal is
refused (and audited); an auditor is refused a renewal too."""
from __future__ import annotations

import json
import pathlib
import re

import pytest

from tests.conftest import need_tools
from tests.e2e.harness import Agent, Collector, run
from tests.e2e.test_renewal import COLLECTOR_EXTRA
from tests.e2e.test_sync_lifecycle import make_cert, pem_store


def init_admin(c: Collector, name: str, role: str, out: pathlib.Path, *extra: str):  # noqa: ANN201
    return run("certfleet-collector", "init-admin", "--config", str(c.config), "--out", str(out), "--name", name,
               "--role", role, *extra, env=c.env)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):
    need_tools("openssl")
    work = tmp_path_factory.mktemp("owner-role")
    c = Collector(work / "collector", extra_tables=COLLECTOR_EXTRA)
    c.start()
    try:
        assert c.init_admin().code == 0
        stores = work / "stores"
        (stores / "web").mkdir(parents=True)
        (stores / "db").mkdir()
        make_cert(stores / "web" / "www.pem", "www.example.test")
        make_cert(stores / "db" / "db.pem", "db.example.test")
        agent = Agent(work / "agent", pem_store(stores))
        agent.write_config(hostname="owner-host")
        r = agent.enroll(c, c.token())
        assert r.code == 0, r.err
        r = agent.run_once()
        assert r.code == 0, r.out + r.err
        r = c.cli("certs", "list", "--format", "json")
        assert r.code == 0, r.err
        fps = {pathlib.Path(loc["path"]).name: cert["fingerprint_sha256"] for cert in r.json()
               for loc in cert["locations"]}
        assert set(fps) == {"www.pem", "db.pem"}
        for team, folder in (("web-team", "web"), ("db-team", "db")):
            r = c.cli("owners", "add", team, "--email", f"{team}@example.com")
            assert r.code == 0, r.err
            r = c.cli("owners", "rules", "add", "--name", f"{folder}-files", "--owner", team,
                      "--path", f"{stores}/{folder}/**")
            assert r.code == 0, r.err
        # the team holding a certificate's names is the one whose owner role may renew it (issue 11)
        c.authorize("www.example.test", owner="web-team")
        c.authorize("db.example.test", owner="db-team")
        yield c, work, fps
    finally:
        c.stop()


def test_init_admin_team_rules(fleet) -> None:  # type: ignore[no-untyped-def]
    c, work, _ = fleet
    r = init_admin(c, "wendy", "owner", work / "no-team")
    assert r.code == 2 and "needs --team" in r.err, r.err
    r = init_admin(c, "wendy", "owner", work / "bad-team", "--team", "ops-team")
    assert r.code == 2 and "no owner 'ops-team'" in r.err and "web-team" in r.err, r.err
    r = init_admin(c, "carol", "auditor", work / "auditor-team", "--team", "web-team")
    assert r.code == 2 and "only for role owner" in r.err, r.err
    assert not (work / "no-team" / "admin.pem").exists() and not (work / "bad-team" / "admin.pem").exists()


def test_owner_sees_renews_and_follows_only_its_team(fleet) -> None:  # type: ignore[no-untyped-def]
    c, work, fps = fleet
    r = init_admin(c, "wendy", "owner", work / "wendy", "--team", "Web-Team")
    assert r.code == 0 and "team web-team" in r.out, r.err
    wendy = dict(c.env, CERTFLEET_CONFIG=str(work / "wendy" / "certfleet.toml"))
    mine, other = fps["www.pem"], fps["db.pem"]

    # lists only its certificate, with only its locations
    r = c.cli("certs", "list", "--format", "json", env=wendy)
    assert r.code == 0, r.err
    assert [cert["fingerprint_sha256"] for cert in r.json()] == [mine]
    assert [pathlib.Path(loc["path"]).name for loc in r.json()[0]["locations"]] == ["www.pem"]
    assert c.cli("certs", "show", mine[:16], env=wendy).code == 0
    r = c.cli("certs", "show", other[:16], env=wendy)
    assert r.code != 0 and "not found" in r.err.lower() and "web-team" in r.err, r.err
    # agents are not owned: listed read-only
    r = c.cli("agents", "list", env=wendy)
    assert r.code == 0 and "owner-host" in r.out, r.err

    # the other team's renewal is refused, and audited
    r = c.cli("renew", other, env=wendy)
    assert r.code == 1 and "role owner (team web-team) may renew only its team's certificates" in r.err, r.err
    r = c.cli("audit", "list", "--format", "json", "--action", "call.refused", "--actor", "owner:wendy")
    assert r.code == 0, r.err
    (refused,) = [e for e in r.json() if e["target"] == "AdminService.Renew"]
    assert refused["detail"]["team"] == "web-team" and refused["detail"]["fingerprint"] == other
    assert "may renew only its team's" in refused["reason"]

    # its own renewal makes a job (no agent service: the job just waits)
    r = c.cli("renew", mine[:16], "--reason", "owner test", env=wendy)
    assert r.code == 0, r.err
    (job_id,) = re.findall(r"job (\S+) \(", r.out)
    # an admin renews the other team's certificate: the owner does not see that job
    r = c.cli("renew", other[:16])
    assert r.code == 0, r.err
    (other_job,) = re.findall(r"job (\S+) \(", r.out)
    r = c.cli("jobs", "list", "--format", "json", env=wendy)
    assert r.code == 0, r.err
    assert [j["job_id"] for j in r.json()] == [job_id]
    assert r.json()[0]["requested_by"] == "owner:wendy"
    r = c.cli("jobs", "list", "--format", "json")
    assert {j["job_id"] for j in r.json()} == {job_id, other_job}
    assert c.cli("jobs", "show", job_id, env=wendy).code == 0
    r = c.cli("jobs", "show", other_job, env=wendy)
    assert r.code != 0 and "not found" in r.err.lower(), r.err
    r = c.cli("jobs", "cancel", other_job, env=wendy)
    assert r.code == 1 and "may change only its team's jobs" in r.err, r.err
    r = c.cli("jobs", "cancel", job_id, env=wendy)
    assert r.code == 0 and "cancelled" in r.out, r.out + r.err

    # what covers the whole fleet is refused: fleet-wide reports, orphans, revocation (the team's
    # own reports -- expiring, violations, owners -- are narrowed to it: tests/e2e/test_reports.py)
    r = c.cli("report", "coverage", env=wendy)
    assert r.code != 0 and "role owner (team web-team) may not read report coverage" in r.err, r.err
    r = c.cli("owners", "orphans", env=wendy)
    assert r.code != 0 and "may not call" in r.err, r.err
    r = c.cli("revoke", mine[:16], "--reason", "superseded", env=wendy)
    assert r.code != 0 and "may not revoke" in r.err, r.err
    r = c.cli("audit", "verify")
    assert r.code == 0, r.out + r.err


def test_an_auditor_is_refused_a_renewal(fleet) -> None:  # type: ignore[no-untyped-def]
    c, work, fps = fleet
    r = init_admin(c, "carol", "auditor", work / "carol")
    assert r.code == 0, r.err
    carol = dict(c.env, CERTFLEET_CONFIG=str(work / "carol" / "certfleet.toml"))
    r = c.cli("certs", "list", "--format", "json", env=carol)
    assert {cert["fingerprint_sha256"] for cert in r.json()} == set(fps.values())   # reads everything
    r = c.cli("renew", fps["www.pem"], env=carol)
    assert r.code == 1 and "may not renew" in r.err, r.err
    r = c.cli("audit", "list", "--format", "json", "--action", "call.refused", "--actor", "auditor:carol")
    assert [e["target"] for e in r.json()] == ["AdminService.Renew"]
    assert json.dumps(r.json())
