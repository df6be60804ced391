"""Deltas, resyncs, removals with history, revocation and an unreachable collector, through the real programs."""
from __future__ import annotations

import pathlib
import subprocess

import pytest

from tests.conftest import need_tools
from tests.e2e.harness import Agent, Collector


def pem_store(path: pathlib.Path) -> str:
    return f'[[store]]\nname = "certs"\ntype = "pem"\npaths = ["{path}/**/*.pem"]\n'


def make_cert(path: pathlib.Path, cn: str, days: int = 90) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(path.with_suffix(".key")), "-out", str(path), "-days", str(days), "-subj", f"/CN={cn}",
         "-addext", f"subjectAltName=DNS:{cn}"],
        check=True, capture_output=True,
    )


@pytest.fixture()
def setup(tmp_path: pathlib.Path):
    need_tools("openssl")
    c = Collector(tmp_path / "collector")
    c.start()
    assert c.init_admin().code == 0
    stores = tmp_path / "stores"
    stores.mkdir()
    make_cert(stores / "a.pem", "a.example.test")
    make_cert(stores / "b.pem", "b.example.test")
    agent = Agent(tmp_path / "agent", pem_store(stores))
    agent.write_config(hostname="sync-host")
    r = agent.enroll(c, c.token())
    assert r.code == 0, r.err
    yield c, agent, stores
    c.stop()


def locations(c: Collector, *args: str) -> dict[str, str]:
    r = c.cli("certs", "list", "--format", "json", "--host", "sync-host", *args)
    assert r.code == 0, r.err
    return {pathlib.Path(loc["path"]).name: loc["status"] for cert in r.json() for loc in cert["locations"]}


def test_first_full_then_deltas_with_history(setup) -> None:
    c, agent, stores = setup
    r = agent.run_once()
    assert r.code == 0 and "full report 1 stored by the collector" in r.out, r.err
    assert locations(c) == {"a.pem": "present", "b.pem": "present"}

    r = agent.run_once()
    assert r.code == 0 and "delta report 2 stored by the collector: 0 locations sent, 0 removed" in r.out, r.out + r.err

    (stores / "b.pem").unlink()
    make_cert(stores / "c.pem", "c.example.test")
    r = agent.run_once()
    assert r.code == 0 and "delta report 3 stored by the collector: 1 locations sent, 1 removed" in r.out, r.out + r.err
    assert locations(c) == {"a.pem": "present", "c.pem": "present"}
    assert locations(c, "--include-removed") == {"a.pem": "present", "b.pem": "removed", "c.pem": "present"}


def test_collector_asks_for_resync(setup) -> None:
    c, agent, stores = setup
    assert agent.run_once().code == 0
    r = c.cli("agents", "resync", "--all")
    assert r.code == 0 and "1 agent" in r.out
    r = agent.run_once()
    assert r.code == 0 and "full report" in r.out.splitlines()[-1], r.out


def test_lost_agent_state_means_full_report(setup) -> None:
    c, agent, stores = setup
    assert agent.run_once().code == 0
    (agent.workdir / "data" / "state.json").unlink()
    r = agent.run_once()
    assert r.code == 0 and "full report" in r.out
    assert locations(c) == {"a.pem": "present", "b.pem": "present"}


def test_revoked_agent_is_refused(setup) -> None:
    c, agent, stores = setup
    assert agent.run_once().code == 0
    agent_id = c.cli("agents", "list", "--format", "json").json()[0]["agent_id"]
    assert c.cli("agents", "revoke", agent_id, "--reason", "host decommissioned").code == 0
    r = agent.run_once()
    assert r.code != 0 and "refused" in r.err


def test_unreachable_collector_fails_with_reason_and_loses_nothing(setup) -> None:
    c, agent, stores = setup
    assert agent.run_once().code == 0
    c.stop()
    (stores / "a.pem").unlink()
    r = agent.run_once()
    assert r.code != 0 and "unreachable" in r.err
    c.start()
    r = agent.run_once()
    assert r.code == 0 and "1 removed" in r.out, r.out + r.err
    assert locations(c) == {"b.pem": "present"}
