"""Network scans are opt-in on the agent and limited on the collector: loopback, link-local
metadata addresses and public ranges are refused with the reason unless listed; starting a scan
needs the admin role."""
from __future__ import annotations

import ipaddress
import os
import pathlib

import pytest

from agent.netscan.plan import ScanRefused, ScanRequest, plan_scan
from agent.netscan.records import ScanProgress
from agent.netscan.runner import NetworkScans
from tests.e2e.harness import Agent, Collector


def nets(*n: str):  # noqa: ANN201
    return tuple(ipaddress.ip_network(x) for x in n)


@pytest.mark.parametrize("targets, allowed, why", [
    (["10.0.0.5"], (), "allows no network scans"),
    (["127.0.0.1"], nets("0.0.0.0/0"), "loopback or link-local"),
    (["169.254.169.254"], nets("0.0.0.0/0"), "loopback or link-local"),
    (["8.8.8.0/30"], nets("10.0.0.0/8"), "outside the allowed ranges"),
    (["10.0.0.0/7"], nets("10.0.0.0/8"), "outside the allowed ranges"),
])
def test_agent_plan_refuses_outside_its_allow_list(targets, allowed, why) -> None:  # noqa: ANN001
    with pytest.raises(ScanRefused, match=why):
        plan_scan("s1", targets, [443], allowed=allowed)


def test_agent_plan_allows_listed_ranges_and_explicit_loopback() -> None:
    assert len(plan_scan("s1", ["10.1.0.0/30"], [443], allowed=nets("10.0.0.0/8")).targets) == 4
    assert len(plan_scan("s2", ["127.0.0.1"], [443], allowed=nets("127.0.0.0/8")).targets) == 1


class Sent:
    def __init__(self) -> None:
        self.progress: list[ScanProgress] = []

    def __call__(self, p: ScanProgress) -> None:
        self.progress.append(p)


def test_agent_by_default_refuses_every_scan_with_the_reason(tmp_path: pathlib.Path) -> None:
    sent = Sent()
    rec = NetworkScans(tmp_path, sent).run(ScanRequest("d-1", ("127.0.0.1",), (443,)))
    assert rec.state == "failed" and "network_scan_allowed" in rec.reason
    assert sent.progress[-1].state == "failed"


@pytest.fixture()
def collector(tmp_path: pathlib.Path):
    c = Collector(tmp_path / "collector", extra_tables='[netscan]\nallowed_ranges = ["10.0.0.0/8", "0.0.0.0/0"]\n')
    c.start()
    assert c.init_admin().code == 0
    (tmp_path / "stores").mkdir()
    agent = Agent(tmp_path / "agent", f'[[store]]\nname = "c"\ntype = "pem"\npaths = ["{tmp_path}/stores/*.pem"]\n')
    agent.write_config(hostname="scanner")
    assert agent.enroll(c, c.token()).code == 0
    yield c, c.cli("agents", "list", "--format", "json").json()[0]["agent_id"]
    c.stop()


@pytest.mark.parametrize("targets, why", [
    ("127.0.0.1", "loopback or link-local"),
    ("169.254.169.254", "loopback or link-local"),
])
def test_collector_refuses_loopback_and_metadata_even_under_a_wide_range(collector, targets: str, why: str) -> None:  # noqa: ANN001
    c, agent_id = collector
    r = c.cli("netscan", "start", "--agent", agent_id, "--targets", targets, "--ports", "443")
    assert r.code != 0 and why in r.err, r.out + r.err


def test_collector_scan_start_needs_the_admin_role(collector, tmp_path: pathlib.Path) -> None:  # noqa: ANN001
    c, agent_id = collector
    out = tmp_path / "operator"
    assert c.init_admin(name="op1", role="operator", out=out).code == 0
    env = dict(os.environ, CERTFLEET_CONFIG=str(out / "certfleet.toml"))
    r = c.cli("netscan", "start", "--agent", agent_id, "--targets", "10.0.0.1", "--ports", "443", env=env)
    assert r.code != 0 and "may not network scan" in r.err, r.err
    r = c.cli("netscan", "start", "--agent", agent_id, "--targets", "10.0.0.1", "--ports", "443")
    assert r.code == 0, r.err


def test_collector_without_allowed_ranges_refuses_every_scan(tmp_path: pathlib.Path) -> None:
    c = Collector(tmp_path / "collector")
    c.start()
    try:
        assert c.init_admin().code == 0
        r = c.cli("netscan", "start", "--agent", "nobody", "--targets", "10.0.0.1", "--ports", "443")
        assert r.code != 0 and "allowed_ranges is empty" in r.err, r.err
    finally:
        c.stop()
