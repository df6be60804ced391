"""The collector's scheduled work, once per run across collectors on one database.

One APScheduler ``AsyncIOScheduler`` per collector runs every periodic job (stuck
job sweep, auto-renewal, policy evaluation, notifications, audit retention). A job
every ``interval`` seconds fires at the interval boundaries (``floor(now /
interval) * interval``, plus a small random jitter so that collectors do not hit
the database at the same instant), and once when the scheduler starts. Each firing:

1. claims the run of its slot in the database (``Registry.leases.claim_run``, see
   collector/registry/leases.py): of several collectors firing for one slot, one
   wins; the others skip (logged at debug);
2. runs the job's synchronous function in a thread (``asyncio.to_thread``), renewing
   the lease every ``ttl / 3`` while it runs;
3. releases the lease with the result (``ok: <return value>`` or ``error: ...``).

A collector that dies mid-run stops renewing: its lease expires ``ttl`` after the
last renewal and another collector runs the next slot. ``shutdown()`` acts like
that death for a run in progress (the run's thread cannot be stopped, so the lease
is not released early: nobody else starts the job while it may still be running).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from collector.errors import DatabaseUnavailable
from collector.metrics.recorder import NULL, Recorder
from collector.registry.leases import slot_of

log = logging.getLogger(__name__)
UTC = dt.timezone.utc
#: default lease lifetime without renewal (a dead collector's run is taken over after this)
DEFAULT_TTL = 60.0


def _failed(msg: str, *args: Any) -> None:
    """Log the exception being handled: a database outage in one line at debug level (the
    registry logs the outage once), anything else with its traceback."""
    if isinstance(sys.exc_info()[1], DatabaseUnavailable):
        log.debug(msg + ": the database is unavailable", *args)
    else:
        log.exception(msg, *args)


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


def new_instance_id() -> str:
    """This collector process: host:pid:uuid."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    func: Callable[[], Any]
    interval: float        # seconds
    ttl: float             # seconds
    jitter: float          # seconds


class Scheduler:
    """``add()`` jobs, then ``start()`` (in a running event loop) and ``shutdown()``."""

    def __init__(self, registry: Any, instance_id: str | None = None,
                 clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.registry = registry
        self.instance_id = instance_id or new_instance_id()
        self.clock = clock
        self.jobs: dict[str, ScheduledJob] = {}
        self.runs: dict[str, int] = {}          # runs this instance won, by job name
        self._aps: AsyncIOScheduler | None = None
        self._running: set[asyncio.Task[Any]] = set()
        self.recorder: Recorder = NULL     # the metrics (collector/metrics/recorder.py); set by the composition root

    def add(self, name: str, func: Callable[[], Any], interval_seconds: float, ttl: float | None = None,
            *, jitter: float | None = None) -> None:
        if interval_seconds <= 0:
            raise ValueError(f"{name}: the interval must be positive")
        if name in self.jobs:
            raise ValueError(f"{name}: scheduled twice")
        ttl = float(ttl if ttl is not None else DEFAULT_TTL)
        if ttl <= 0:
            raise ValueError(f"{name}: the ttl must be positive")
        if jitter is None:
            jitter = min(interval_seconds * 0.1, 5.0)
        if not 0 <= jitter < interval_seconds:
            raise ValueError(f"{name}: the jitter must be below the interval")
        self.jobs[name] = ScheduledJob(name, func, float(interval_seconds), ttl, float(jitter))
        if self._aps is not None:
            self._schedule(self.jobs[name])

    def start(self, *, run_now: bool = True) -> None:
        """Start firing (call in the event loop); with ``run_now`` every job also fires at once."""
        quiet = logging.getLogger("apscheduler")
        if quiet.level == logging.NOTSET:     # "Running job ..." every firing: our own log says what matters
            quiet.setLevel(logging.WARNING)
        self._aps = AsyncIOScheduler(timezone=UTC, event_loop=asyncio.get_running_loop())
        for job in self.jobs.values():
            self._schedule(job, run_now=run_now)
        self._aps.start()

    def _schedule(self, job: ScheduledJob, run_now: bool = True) -> None:
        assert self._aps is not None
        now = utcnow()
        boundary = dt.datetime.fromtimestamp(slot_of(now, job.interval) / 1000, UTC)
        trigger = IntervalTrigger(seconds=job.interval, start_date=boundary, timezone=UTC,
                                  jitter=job.jitter or None)
        extra: dict[str, Any] = {"next_run_time": now} if run_now else {}
        self._aps.add_job(self.fire, trigger, args=[job.name], id=job.name, name=job.name,
                          max_instances=1, coalesce=True, misfire_grace_time=None, **extra)

    async def shutdown(self) -> None:
        """Stop firing; runs in progress are cancelled without releasing (their leases expire)."""
        if self._aps is not None and self._aps.running:
            self._aps.shutdown(wait=False)
        self._aps = None
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def fire(self, name: str) -> bool:
        """One firing of ``name``: claim this slot, run, release. True if this instance ran it."""
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            return await self._fire(self.jobs[name])
        finally:
            if task is not None:
                self._running.discard(task)

    async def _fire(self, job: ScheduledJob) -> bool:
        leases = self.registry.leases
        now = self.clock()
        slot = slot_of(now, job.interval)
        try:
            won = await asyncio.to_thread(leases.claim_run, job.name, slot, self.instance_id, now, job.ttl)
        except Exception:  # noqa: BLE001 - the database may be away; the next slot tries again
            _failed("%s: could not claim the run", job.name)
            return False
        if not won:
            log.debug("%s: slot %d runs elsewhere (or ran already); skipped", job.name, slot)
            return False
        self.runs[job.name] = self.runs.get(job.name, 0) + 1
        renewer = asyncio.create_task(self._renew(job))
        t0 = time.perf_counter()
        try:
            try:
                value = await asyncio.to_thread(job.func)
                result = "ok" if value is None else f"ok: {value!r}"
            except Exception as e:  # noqa: BLE001 - keep scheduling
                _failed("%s failed", job.name)
                result = f"error: {type(e).__name__}: {e}"
        finally:
            renewer.cancel()     # cancelled (shutdown, death): the lease is left to expire
        self.recorder.scheduler_run(job.name, result.split(":", 1)[0], time.perf_counter() - t0)
        try:
            if not await asyncio.to_thread(leases.release, job.name, self.instance_id, self.clock(), result):
                log.warning("%s: the lease had expired before the run ended (ttl %.0fs)", job.name, job.ttl)
        except Exception:  # noqa: BLE001
            _failed("%s: could not release the lease", job.name)
        return True

    async def _renew(self, job: ScheduledJob) -> None:
        every = max(job.ttl / 3, 0.05)
        while True:
            await asyncio.sleep(every)
            try:
                ok = await asyncio.to_thread(self.registry.leases.renew, job.name, self.instance_id,
                                             self.clock(), job.ttl)
            except Exception:  # noqa: BLE001 - try again at the next renewal
                _failed("%s: could not renew the lease", job.name)
                continue
            if not ok:
                log.warning("%s: lost the lease while running", job.name)
