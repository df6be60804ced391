"""A keyed, anchored audit trail: a rewrite done with database access alone (delete events, re-hash
the chain as the unkeyed SHA-256 formula says) is detected by ``certfleet audit verify``; a trail
cut back before an exported, signed checkpoint is detected by ``audit verify --checkpoint``."""
from __future__ import annotations

import hashlib
import json
import pathlib
import sqlite3
import time

import pytest

from tests.e2e.harness import Collector


def _sha_chain(db: pathlib.Path, drop_action: str | None = None, keep_upto: int | None = None) -> None:
    """What an attacker with the database file alone does: drop rows, renumber, re-hash, fix the head."""
    con = sqlite3.connect(db)
    rows = con.execute("SELECT seq, at, actor, action, target, reason, detail FROM audit_events ORDER BY seq").fetchall()
    kept = [r for r in rows if r[3] != drop_action and (keep_upto is None or r[0] <= keep_upto)]
    con.execute("DELETE FROM audit_events")
    prev = "0" * 64
    for n, (_seq, at, actor, action, target, reason, detail) in enumerate(kept, 1):
        at_t = at.replace(" ", "T")[:26] + "Z" if not at.endswith("Z") else at
        canon = json.dumps([n, at_t, actor, action, target, reason, json.loads(detail)], sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False).encode()
        h = hashlib.sha256(prev.encode() + canon).hexdigest()
        con.execute("INSERT INTO audit_events (seq, at, actor, action, target, reason, detail, prev_hash, hash) "
                    "VALUES (?,?,?,?,?,?,?,?,?)", (n, at, actor, action, target, reason, detail, prev, h))
        prev = h
    con.execute("UPDATE audit_head SET last_seq = ?, last_hash = ?", (len(kept), prev))
    con.commit()
    con.close()


@pytest.fixture()
def collector(tmp_path: pathlib.Path):
    c = Collector(tmp_path / "collector", extra_tables='[audit]\ncheckpoint_interval = "1s"\n')
    c.start()
    assert c.init_admin().code == 0
    yield c
    c.stop()


def _restart(c: Collector) -> None:
    c.stop()
    c.start()


def test_key_file_is_private_and_outside_the_database(collector: Collector) -> None:
    key = collector.workdir / "data" / "audit.key"
    assert key.stat().st_mode & 0o777 == 0o600
    collector.stop()
    key.chmod(0o644)
    with pytest.raises(RuntimeError, match="audit key"):
        collector.start()
    key.chmod(0o600)
    collector.start()


def test_rewrite_with_database_access_alone_is_detected(collector: Collector) -> None:
    for _ in range(3):
        collector.token()
    r = collector.cli("audit", "verify")
    assert r.code == 0 and "intact" in r.out, r.out + r.err
    collector.stop()
    _sha_chain(collector.workdir / "data" / "registry.db", drop_action="token.create")
    collector.start()
    r = collector.cli("audit", "verify")
    assert r.code == 1, r.out
    assert "BROKEN" in r.out and "audit key" in r.out


def test_cut_back_before_a_checkpoint_is_detected(collector: Collector, tmp_path: pathlib.Path) -> None:
    for _ in range(3):
        collector.token()
    cp = tmp_path / "checkpoint.json"
    deadline = time.monotonic() + 30
    while True:
        r = collector.cli("audit", "checkpoint", "export", "--out", str(cp))
        if r.code == 0:
            break
        assert time.monotonic() < deadline, r.err
        time.sleep(1)
    seq = json.loads(cp.read_text())["seq"]
    r = collector.cli("audit", "verify", "--checkpoint", str(cp))
    assert r.code == 0 and f"checkpoint event {seq} unchanged" in r.out, r.out + r.err
    # a forged checkpoint is refused
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**json.loads(cp.read_text()), "seq": 1}))
    r = collector.cli("audit", "verify", "--checkpoint", str(forged))
    assert r.code == 1 and "NOT signed" in r.out
    # cut the trail back before the checkpoint's event: the keyed chain itself still links
    collector.stop()
    con = sqlite3.connect(collector.workdir / "data" / "registry.db")
    con.execute("DELETE FROM audit_events WHERE seq >= ?", (seq - 1,))
    last_seq, last_hash = con.execute("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
    con.execute("UPDATE audit_head SET last_seq = ?, last_hash = ?", (last_seq, last_hash))
    con.commit()
    con.close()
    collector.start()
    r = collector.cli("audit", "verify", "--checkpoint", str(cp))
    assert r.code == 1 and "BROKEN" in r.out, r.out + r.err
