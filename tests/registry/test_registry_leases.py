"""Scheduler leases (collector/registry/leases.py): one winner per lease and per run slot, on both databases."""
from __future__ import annotations

import datetime as dt
import threading
from typing import Callable

from collector.registry import Registry
from collector.registry.leases import slot_of
from tests.helpers.registry_certs import T0

S = dt.timedelta(seconds=1)


def race(n: int, attempt: Callable[[int], bool]) -> list[bool]:
    """``attempt(i)`` from ``n`` threads released together; their results by i."""
    barrier = threading.Barrier(n)
    results: list[bool] = [False] * n

    def run(i: int) -> None:
        barrier.wait()
        results[i] = attempt(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_racing_holders_one_wins_the_lease_and_the_slot(registry: Registry, db_url: str) -> None:
    with Registry.open(db_url) as other:
        stores = [registry.leases, other.leases] * 3
        won = race(6, lambda i: stores[i].try_acquire("job", f"holder-{i}", T0, 30))
        assert won.count(True) == 1
        winner = f"holder-{won.index(True)}"
        assert registry.leases.get("job").holder == winner

        slot = slot_of(T0 + 60 * S, 10)
        won = race(6, lambda i: stores[i].claim_run("run", slot, f"holder-{i}", T0 + 60 * S, 30))
        assert won.count(True) == 1
        # the slot is taken even after its run ended: no second run of it
        holder = f"holder-{won.index(True)}"
        assert registry.leases.release("run", holder, T0 + 61 * S, "ok: 3")
        assert not other.leases.claim_run("run", slot, "late", T0 + 62 * S, 30)
        # the next slot is free for anyone, once
        nxt = slot_of(T0 + 70 * S, 10)
        assert nxt > slot
        won = race(4, lambda i: stores[i].claim_run("run", nxt, f"holder-{i}", T0 + 70 * S, 30))
        assert won.count(True) == 1


def test_held_lease_is_refused_expired_lease_is_taken_over(registry: Registry) -> None:
    leases = registry.leases
    assert leases.try_acquire("job", "a", T0, 10)
    assert leases.try_acquire("job", "a", T0 + S, 10)            # re-entrant for its holder
    assert not leases.try_acquire("job", "b", T0 + 5 * S, 10)
    assert not leases.renew("job", "b", T0 + 5 * S, 10)
    # a dies: no renewal; after the ttl, b takes over and a cannot renew any more
    assert leases.try_acquire("job", "b", T0 + 11 * S, 10)
    assert leases.get("job").holder == "b"
    assert not leases.renew("job", "a", T0 + 12 * S, 10)
    assert not leases.release("job", "a", T0 + 12 * S, "ok")
    # a run slot: not while another holds the lease, taken over once it expired
    assert not leases.claim_run("job", slot_of(T0 + 15 * S, 5), "c", T0 + 15 * S, 10)
    assert leases.claim_run("job", slot_of(T0 + 25 * S, 5), "c", T0 + 25 * S, 10)
    assert leases.get("job").holder == "c"


def test_renew_keeps_the_lease_release_records_the_result(registry: Registry) -> None:
    leases = registry.leases
    slot = slot_of(T0, 60)
    assert leases.claim_run("eval", slot, "a", T0, 10)
    for k in range(1, 6):                                          # renewed every 5s for 25s
        assert leases.renew("eval", "a", T0 + 5 * k * S, 10)
        assert not leases.try_acquire("eval", "b", T0 + 5 * k * S + S, 10)
    lease = leases.get("eval")
    assert lease.expires_at == T0 + 35 * S and lease.held(T0 + 30 * S)
    assert lease.last_run_at is None and lease.last_result == ""
    assert leases.release("eval", "a", T0 + 30 * S, "ok: 42 certificates")
    lease = leases.get("eval")
    assert (lease.holder, lease.last_run_at, lease.last_result, lease.last_slot) == (
        "a", T0 + 30 * S, "ok: 42 certificates", slot)
    assert not lease.held(T0 + 30 * S)
    assert not leases.renew("eval", "a", T0 + 31 * S, 10)          # released: nothing to renew
    assert leases.try_acquire("eval", "b", T0 + 31 * S, 10)        # free for anyone
    assert [x.name for x in leases.list()] == ["eval"]


def test_slots_are_interval_starts_in_milliseconds() -> None:
    t = dt.datetime(2030, 1, 1, 0, 0, 7, 600000, tzinfo=dt.timezone.utc)
    base = int(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc).timestamp()) * 1000
    assert slot_of(t, 5) == base + 5000
    assert slot_of(t, 0.5) == base + 7500
    assert slot_of(t, dt.timedelta(hours=1)) == base
