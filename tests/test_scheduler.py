"""The scheduler (collector/server/scheduler.py): two collectors on one database run each slot once."""
from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from pathlib import Path

from collector.registry import Registry
from collector.registry.leases import slot_of
from collector.server.scheduler import Scheduler

INTERVAL = 0.5


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def test_two_schedulers_run_each_slot_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    runs: list[tuple[str, float]] = []
    lock = threading.Lock()

    def job(who: str) -> int:
        with lock:
            runs.append((who, time.time()))
            return len(runs)

    async def main() -> tuple[dt.datetime, dt.datetime, list[Scheduler]]:
        with Registry.open(url) as r1, Registry.open(url) as r2:
            scheds = [Scheduler(r1, "host:1:a"), Scheduler(r2, "host:2:b")]
            for s in scheds:
                s.add("count", lambda s=s: job(s.instance_id), INTERVAL, ttl=2, jitter=0.05)
            start = now()
            for s in scheds:
                s.start()
            await asyncio.sleep(3.0)
            for s in scheds:
                await s.shutdown()
            end = now()
            lease = r1.leases.get("count")
            assert lease is not None and lease.last_result.startswith("ok: ")
            return start, end, scheds

    start, end, scheds = asyncio.run(main())
    slots = (slot_of(end, INTERVAL) - slot_of(start, INTERVAL)) // int(INTERVAL * 1000) + 1
    total = sum(s.runs.get("count", 0) for s in scheds)
    assert total == len(runs)
    assert slots - 2 <= total <= slots, (total, slots, runs)
    # no slot ran twice (runs start right after the claim, well inside their slot)
    ran = [slot_of(dt.datetime.fromtimestamp(t, dt.timezone.utc), INTERVAL) for _, t in runs]
    assert len(set(ran)) == len(ran), runs


def test_a_dead_holder_is_taken_over_after_the_ttl(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    release = threading.Event()
    started = threading.Event()
    runs: list[tuple[str, float]] = []

    def job(who: str) -> None:
        runs.append((who, time.monotonic()))
        if who == "a":
            started.set()
            release.wait(10)     # a is stuck in its run ... and then dies

    async def main() -> None:
        with Registry.open(url) as r1, Registry.open(url) as r2:
            a = Scheduler(r1, "host:1:a")
            b = Scheduler(r2, "host:2:b")
            a.add("stuck", lambda: job("a"), INTERVAL, ttl=1.0, jitter=0)
            b.add("stuck", lambda: job("b"), INTERVAL, ttl=1.0, jitter=0)
            a.start()
            assert await asyncio.to_thread(started.wait, 5)
            b.start()
            await asyncio.sleep(1.2)         # a renews its lease while it runs: b runs nothing
            assert [w for w, _ in runs] == ["a"]
            await a.shutdown()               # cancelled without release: the lease is left to expire
            died = time.monotonic()
            try:
                for _ in range(50):
                    if any(w == "b" for w, _ in runs):
                        break
                    await asyncio.sleep(0.1)
                took_over = next(t for w, t in runs if w == "b")
                assert took_over - died >= 0.5      # not before the lease expired (ttl 1 s, renewed every 1/3 s)
                assert took_over - died <= 1.0 + 2 * INTERVAL + 0.5
                assert r2.leases.get("stuck").holder == "host:2:b"
            finally:
                release.set()
                await b.shutdown()

    asyncio.run(main())
