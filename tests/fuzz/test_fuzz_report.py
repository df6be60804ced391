"""A batch of mutated stores through the agent's report path: ``certfleet-agent run --once`` to a real
collector (subprocesses), then the registry's listing. Zero crashes, every scan error stored with a reason."""
from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.harness import Agent, Collector, run
from tests.fuzz.corpus import PASSWORD, Seed
from tests.fuzz.mutate import case_rng, mutate

BATCH = 300


def test_mutated_batch_through_run_once(seeds: list[Seed], fuzz_seed: int, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    (tmp_path / "pw").chmod(0o600)
    stores = tmp_path / "stores"
    stores.mkdir()
    for case in range(BATCH):
        s = seeds[case % len(seeds)]
        (stores / f"{case:04d}-{s.name}{s.suffix}").write_bytes(mutate(s.data, case_rng(fuzz_seed + 3, case),
                                                                      s.store_type))
    collector = Collector(tmp_path / "collector")
    collector.start()
    try:
        assert collector.init_admin().code == 0
        agent = Agent(tmp_path / "agent", f'[[store]]\nname = "fuzz"\ntype = "auto"\npaths = ["{stores}/*"]\n'
                                          f'password_file = "{tmp_path / "pw"}"\n')
        agent.write_config(hostname="fuzz-host")
        r = agent.enroll(collector, collector.token())
        assert r.code == 0, r.err
        r = agent.run_once()
        assert r.code == 0 and "stored" in r.out and "Traceback" not in r.err, r.out + r.err
        again = agent.run_once()                                       # a delta over the same damage
        assert again.code == 0 and "Traceback" not in again.err, again.out + again.err
        listed = collector.cli("certs", "list", "--host", "fuzz-host", "--format", "json")
        assert listed.code == 0, listed.err
        stored = {c["fingerprint_sha256"] for c in json.loads(listed.out)}
        scan = run("certfleet-agent", "scan", "--config", str(agent.config), "--format", "json")
        assert scan.code == 0, scan.err
        doc = json.loads(scan.out)
        unparsed = {(e["path"], e["message"].split(" ", 2)[1]) for e in doc["errors"] if "cannot be parsed" in e["message"]}
        readable = {c["fingerprint_sha256"] for c in doc["certificates"] + doc["trust_anchors"]
                    if (c["path"], str(c["chain_index"])) not in unparsed}
        assert readable and readable <= stored, sorted(readable - stored)[:5]
        hosts = collector.cli("agents", "list", "--format", "json")
        assert hosts.code == 0 and "fuzz-host" in hosts.out, hosts.err
    finally:
        collector.stop()
