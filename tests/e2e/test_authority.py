"""Issuance authority end to end, as an attacker would try it, against a running collector with an
internal CA (issue 11): a rogue agent reporting a victim's certificate, a team-b owner renewing at
its own location, auto-renewal of a rogue report. Nothing is issued: a pending approval or a
refusal with the reason, audited. Then the approval flow with two identities (the requester cannot
approve; an approver can; deny ends the job denied; expiry ends it expired) and adoption."""
from __future__ import annotations

import pathlib
import re
import shutil
import time

import subprocess

import pytest

from tests.conftest import need_tools
from tests.e2e.harness import Agent, Collector, run
from tests.e2e.test_renewal import COLLECTOR_EXTRA
from tests.e2e.test_sync_lifecycle import pem_store

AUTO = """
[[renewal.auto]]
template = "web"
days_before = 30
jitter = 0
"""


def make_cert(path: pathlib.Path, cn: str, days: int = 90) -> None:
    """A self-signed leaf (not a CA: auto-renewal leaves CAs alone)."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(path.with_suffix(".key")), "-out", str(path), "-days", str(days), "-subj", f"/CN={cn}",
         "-addext", f"subjectAltName=DNS:{cn}", "-addext", "basicConstraints=critical,CA:FALSE"],
        check=True, capture_output=True,
    )


def init_admin(c: Collector, name: str, role: str, out: pathlib.Path, *extra: str):  # noqa: ANN201
    r = run("certfleet-collector", "init-admin", "--config", str(c.config), "--out", str(out), "--name", name,
            "--role", role, *extra, env=c.env)
    assert r.code == 0, r.err
    return dict(c.env, CERTFLEET_CONFIG=str(out / "certfleet.toml"))


def enroll(c: Collector, work: pathlib.Path, name: str, stores: pathlib.Path, reports: str) -> Agent:
    """An agent enrolled with a token bound to ``name``; it reports the host name ``reports``."""
    r = c.cli("token", "create", "--host", name, "--format", "json")
    assert r.code == 0, r.err
    agent = Agent(work / name, pem_store(stores))
    agent.write_config(hostname=reports)
    r = agent.enroll(c, r.json())
    assert r.code == 0, r.err
    r = agent.run_once()
    assert r.code == 0, r.out + r.err
    return agent


def audit(c: Collector, *args: str) -> list:
    r = c.cli("audit", "list", "--format", "json", *args)
    assert r.code == 0, r.err
    return r.json()


def agent_id(c: Collector, host: str) -> str:
    r = c.cli("agents", "list", "--format", "json")
    (a,) = [a for a in r.json() if a["hostname"] == host]
    return a["agent_id"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):
    """pay-01 holds payments' certificate; build-07, compromised, copied the public certificate into
    its own store (it is in every TLS handshake) and claims to be pay-01; team-b's b-01 holds a copy
    of team-a's billing certificate in a folder an owner rule gives team-b."""
    need_tools("openssl")
    work = tmp_path_factory.mktemp("authority")
    c = Collector(work / "collector", extra_tables=COLLECTOR_EXTRA.replace(
        '[renewal]\ndefault_template = "web"', '[renewal]\ndefault_template = "web"\ncheck_interval = "1s"') + AUTO)
    c.start()
    try:
        assert c.init_admin().code == 0
        for d in ("pay", "rogue", "a", "b"):
            (work / "stores" / d).mkdir(parents=True)
        make_cert(work / "stores" / "pay" / "payments.pem", "payments.example.test", days=10)
        shutil.copy(work / "stores" / "pay" / "payments.pem", work / "stores" / "rogue" / "stolen.pem")
        make_cert(work / "stores" / "a" / "billing.pem", "billing.example.test", days=200)
        shutil.copy(work / "stores" / "a" / "billing.pem", work / "stores" / "b" / "billing.pem")
        for team in ("payments", "team-a", "team-b"):
            assert c.cli("owners", "add", team, "--email", f"{team}@example.com").code == 0
        r = c.cli("owners", "rules", "add", "--name", "b-files", "--owner", "team-b", "--path",
                  f"{work / 'stores' / 'b'}/**")
        assert r.code == 0, r.err
        # the authority: payments holds its name on pay-*, team-a its billing name on a-*
        for args in (("names", "grant", "--owner", "payments", "payments.example.test"),
                     ("names", "allow", "--hosts", "pay-*", "--pattern", "payments.example.test"),
                     ("names", "grant", "--owner", "team-a", "billing.example.test"),
                     ("names", "allow", "--hosts", "a-*", "--pattern", "billing.example.test")):
            r = c.cli(*args)
            assert r.code == 0, r.out + r.err
        enroll(c, work, "pay-01.example.test", work / "stores" / "pay", "pay-01.example.test")
        enroll(c, work, "build-07.example.test", work / "stores" / "rogue", "pay-01.example.test")
        enroll(c, work, "a-01.example.test", work / "stores" / "a", "a-01.example.test")
        enroll(c, work, "b-01.example.test", work / "stores" / "b", "b-01.example.test")
        yield c, work
    finally:
        c.stop()


def fingerprint(c: Collector, cn: str) -> str:
    r = c.cli("certs", "list", "--format", "json")
    (fp,) = {x["fingerprint_sha256"] for x in r.json() if x["subject"].endswith(cn) or cn in str(x)}
    return fp


def test_the_bound_name_decides_and_the_claimed_one_is_drift(fleet) -> None:  # type: ignore[no-untyped-def]
    c, _ = fleet
    r = c.cli("agents", "list", "--format", "json")
    rogue = [a for a in r.json() if a["hostname"] == "build-07.example.test"]
    assert rogue and rogue[0]["drift"] == "pay-01.example.test"
    r = c.cli("agents", "list")
    assert "build-07.example.test (reports pay-01.example.test: drift)" in r.out
    r = c.cli("names", "check", "build-07.example.test", "payments.example.test")
    assert r.code == 1 and "NOT AUTHORIZED" in r.out and "held by payments" in r.out, r.out
    r = c.cli("names", "check", "pay-01.example.test", "payments.example.test")
    assert r.code == 0 and "allow #" in r.out, r.out + r.err
    r = c.cli("certs", "show", fingerprint(c, "payments.example.test")[:16])
    assert "also on 1 other host(s)" in r.out, r.out + r.err


def test_attacks_1_and_3_rogue_report_renewed_by_hand_and_by_the_scheduler(fleet) -> None:  # type: ignore[no-untyped-def]
    c, _ = fleet
    fp = fingerprint(c, "payments.example.test")
    rogue = agent_id(c, "build-07.example.test")
    # auto-renewal (the certificate is due: 10 days left, rule at 30) runs every second
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = c.cli("jobs", "list", "--format", "json").json()
        if {j["agent"] for j in jobs if j["old_fingerprint"] == fp} >= {rogue, agent_id(c, "pay-01.example.test")}:
            break
        time.sleep(0.5)
    jobs = [j for j in c.cli("jobs", "list", "--format", "json").json() if j["old_fingerprint"] == fp]
    by_agent = {j["agent"]: j for j in jobs}
    assert by_agent[rogue]["state"] == "awaiting_approval" and not by_agent[rogue]["new_fingerprint"]
    assert by_agent[agent_id(c, "pay-01.example.test")]["state"] == "requested"   # the authorized host: as ever
    # a human renewing the whole certificate: the rogue location only queues (the same) approval
    r = c.cli("renew", fp[:16], "--reason", "rotate")
    assert r.code == 0 and "awaits an approval" in r.out, r.out + r.err
    time.sleep(3)   # several more scheduler runs: still one approval, never a flood
    r = c.cli("approvals", "list", "--format", "json")
    mine = [a for a in r.json() if a["agent_id"] == rogue]
    assert len(mine) == 1 and mine[0]["requested_by"] == "auto-renew"
    assert any("no allow lets build-07.example.test receive it" in x for x in mine[0]["reasons"])
    (ev,) = [e for e in audit(c, "--action", "approval.request") if e["detail"]["agent_id"] == rogue]
    assert ev["detail"]["names"] == ["payments.example.test"]


def test_attack_2_team_b_owner_cannot_renew_team_a_names_at_its_own_location(fleet) -> None:  # type: ignore[no-untyped-def]
    c, work = fleet
    bob = init_admin(c, "bob", "owner", work / "bob", "--team", "team-b")
    fp = fingerprint(c, "billing.example.test")
    r = c.cli("renew", fp[:16], "--agent", agent_id(c, "b-01.example.test"), env=bob)
    assert r.code == 1 and "held by team-a" in r.err, r.out + r.err
    (refused,) = [e for e in audit(c, "--action", "call.refused", "--actor", "owner:bob")
                  if e["target"] == "AdminService.Renew"]
    assert "held by team-a" in refused["reason"]
    jobs = [j for j in c.cli("jobs", "list", "--format", "json").json() if j["old_fingerprint"] == fp]
    assert jobs == []
    # an owner sees its team's grants only (team-b holds none); an admin sees them all
    r = c.cli("names", "list", "--format", "json", env=bob)
    assert r.code == 0 and r.json() == {"grants": [], "allows": []}, r.out + r.err
    assert {g["owner"] for g in c.cli("names", "list", "--format", "json").json()["grants"]} >= {"payments", "team-a"}
    r = c.cli("names", "grant", "--owner", "team-b", "billing.example.test", env=bob)
    assert r.code == 1 and "may not" in r.err, r.err


def test_four_eyes_approve_and_deny_with_two_identities(fleet) -> None:  # type: ignore[no-untyped-def]
    c, work = fleet
    ann = init_admin(c, "ann", "approver", work / "ann")
    fp = fingerprint(c, "billing.example.test")
    b01 = agent_id(c, "b-01.example.test")
    r = c.cli("renew", fp[:16], "--agent", b01, "--reason", "please")
    assert r.code == 0 and "awaiting_approval" in r.out, r.out + r.err
    (job_id,) = re.findall(r"job (\S+) \(awaiting_approval\)", r.out)
    r = c.cli("approvals", "show", job_id)
    assert r.code == 0 and "held by team-a" in r.out and "requested by: admin:admin" in r.out, r.out + r.err
    # the requester may not approve its own request: refused and audited
    r = c.cli("approvals", "approve", job_id)
    assert r.code == 1 and "four eyes" in r.err, r.out + r.err
    assert [e for e in audit(c, "--action", "approval.refused") if e["actor"] == "admin:admin"]
    # an approver may not change grants
    r = c.cli("names", "grant", "--owner", "team-b", "billing.example.test", env=ann)
    assert r.code == 1 and "may not manage names" in r.err, r.err
    r = c.cli("approvals", "deny", job_id, "--reason", "team-b does not hold billing", env=ann)
    assert r.code == 0 and "denied" in r.out, r.out + r.err
    job = c.cli("jobs", "show", job_id, "--format", "json").json()
    assert job["state"] == "denied" and not job["new_fingerprint"]
    # asked again, the approver says yes: the job goes ahead
    r = c.cli("renew", fp[:16], "--agent", b01, "--reason", "migrating billing to b-01")
    (job2,) = re.findall(r"job (\S+) \(awaiting_approval\)", r.out)
    r = c.cli("approvals", "approve", job2, "--reason", "migration ticket 42", env=ann)
    assert r.code == 0 and "goes ahead" in r.out, r.out + r.err
    assert c.cli("jobs", "show", job2, "--format", "json").json()["state"] == "requested"
    actions = {e["action"] for e in audit(c, "--actor", "approver:ann")}
    assert {"approval.deny", "approval.approve"} <= actions


def test_pending_approvals_expire(tmp_path: pathlib.Path) -> None:
    need_tools("openssl")
    c = Collector(tmp_path / "collector", extra_tables=COLLECTOR_EXTRA + '\n[approvals]\nexpire_after = "2s"\n')
    c.start()
    try:
        assert c.init_admin().code == 0
        ann = init_admin(c, "ann", "approver", tmp_path / "ann")
        (tmp_path / "s").mkdir()
        make_cert(tmp_path / "s" / "x.pem", "x.example.test")
        enroll(c, tmp_path, "x-01.example.test", tmp_path / "s", "x-01.example.test")
        r = c.cli("renew", fingerprint(c, "x.example.test")[:16])
        (job_id,) = re.findall(r"job (\S+) \(awaiting_approval\)", r.out)   # nothing granted: unauthorized
        time.sleep(3)
        r = c.cli("approvals", "approve", job_id, env=ann)
        assert r.code == 1 and "expired" in r.out, r.out + r.err
        assert c.cli("jobs", "show", job_id, "--format", "json").json()["state"] == "expired"
        assert audit(c, "--action", "approval.expire")
    finally:
        c.stop()


def test_adoption_proposes_from_the_inventory_and_adopts_audited(fleet) -> None:  # type: ignore[no-untyped-def]
    c, _ = fleet
    r = c.cli("names", "propose", "--format", "json")
    assert r.code == 0, r.err
    props = {p["name"]: p for p in r.json()}
    # billing is on a-01 (allowed) and b-01 (not): proposed with both hosts, owner not single
    assert "billing.example.test" in props
    r = c.cli("names", "adopt", "--all-matching")
    assert r.code != 0 and "--owner" in r.err, r.err
    r = c.cli("names", "adopt", "--proposal", props["billing.example.test"]["proposal_id"])
    assert "skipped" in r.out + r.err
    assert audit(c, "--action", "names.grant")
