"""What a report carries against what the collector acknowledged: agent/delta.py, pure."""
from __future__ import annotations

import dataclasses

from agent.delta import Delta, plan
from agent.inventory import CERTIFICATE, NO_KEY, FoundCert, LocationKey
from agent.state import key_str


def _entry(path: str, fp: str, store_type: str = "pem", mode: int = 0o644) -> FoundCert:
    return FoundCert(LocationKey(store_type, path, "", 0), b"0\x82", fp, False, False, NO_KEY, CERTIFICATE,
                     "root", "root", mode, 1.0)


A, B, C = _entry("/a.pem", "a" * 64), _entry("/b.pem", "b" * 64), _entry("/c.pem", "c" * 64)
ACKED = {key_str(e.key): e.digest() for e in (A, B)}


def test_a_delta_sends_what_is_new_or_changed_and_removes_what_is_gone() -> None:
    b_chmod = dataclasses.replace(B, file_mode=0o600)                 # a change the collector stores
    upserts, removals = plan([B, b_chmod, C], ACKED)
    assert upserts == [b_chmod, C] and removals == [A.key]


def test_nothing_changed_nothing_sent() -> None:
    assert plan([A, B], ACKED) == ([], [])


def test_a_full_report_sends_everything_and_removes_nothing() -> None:
    assert plan([A, C], ACKED, full=True) == ([A, C], [])


def test_a_source_that_could_not_look_keeps_what_it_last_reported() -> None:
    ep = _entry("127.0.0.1:443", "e" * 64, store_type="endpoint")
    acked = dict(ACKED, **{key_str(ep.key): ep.digest()})
    d = Delta(acked, full=False)
    assert not d.offer(A) and not d.offer(B)
    d.keep({"endpoint"})
    assert d.removals() == [] and set(d.current) == set(acked)        # the next acknowledged state keeps it
