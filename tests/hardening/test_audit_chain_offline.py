"""An exported trail across the cut-over checks offline: unkeyed SHA-256 events before ``audit.keyed``,
HMAC events from it on (checked with the key file, only linked without it); a rewrite of a keyed
event made without the key fails."""
from __future__ import annotations

import hashlib

from collector.domain.auditchain import CUT_OVER, GENESIS_HASH, event_hash, keyed_hash, verify_events

KEY = bytes(range(32))


def _chain(n_plain: int, n_keyed: int, key: bytes = KEY) -> list[dict]:
    out, prev = [], GENESIS_HASH
    for seq in range(1, n_plain + n_keyed + 1):
        keyed = seq > n_plain
        action = CUT_OVER if seq == n_plain + 1 else "token.create"
        e = {"seq": seq, "at": f"2026-12-01T00:00:{seq:02d}.000000Z", "actor": "admin:a", "action": action,
             "target": "t", "reason": "", "detail": {"n": seq}, "prev_hash": prev}
        args = (prev, seq, e["at"], e["actor"], e["action"], e["target"], e["reason"], e["detail"])
        e["hash"] = keyed_hash(key, *args) if keyed else event_hash(*args)
        out.append(e)
        prev = e["hash"]
    return out


def test_export_across_the_cut_over_verifies_with_and_without_the_key() -> None:
    events = _chain(3, 4)
    with_key = verify_events(events, key=KEY)
    assert with_key.ok and with_key.checked == 7 and with_key.keyed_from == 4 and with_key.unauthenticated == 0
    without = verify_events(events)
    assert without.ok and without.unauthenticated == 4


def test_a_keyed_event_rewritten_without_the_key_fails() -> None:
    events = _chain(3, 4)
    e = events[5]
    e["reason"] = "nothing to see"
    e["hash"] = hashlib.sha256(b"attacker has no key").hexdigest()
    events[6]["prev_hash"] = e["hash"]
    r = verify_events(events, key=KEY)
    assert not r.ok and r.first_broken_seq == 6 and "audit key" in r.reason
    assert not verify_events(_chain(3, 4, key=b"another key of 32 bytes........."), key=KEY).ok
