"""An agent's command stream, as a service: what the agent gets now, and what its messages do.

The servicer (collector/api/agents.py ``Connect``) only reads and writes the stream: it opens a
session for the connected agent, asks :meth:`AgentSession.commands` whenever it looks (woken by
the hub or by its poll interval) and hands every message the agent sends to the session:

- renewal jobs: the commands the job state machine asks for, each claimed so that only one
  collector replica sends it (collector/services/renewal.py ``commands_for``); a job update goes
  to ``RenewalService.on_update``;
- ACME http-01 challenges an issuance in progress wants placed (collector/services/challenges.py);
  the agent's answer goes straight back to the issuance waiting for it (:meth:`take_answer`);
- network scans queued for the agent, claimed; on a stream that just (re)connected also the scans
  it was sent before and has not finished (collector/domain/netscan.py); progress reports go to
  the registry.

Every method but :meth:`AgentSession.take_answer` reads or writes the registry (blocking: run it
off the event loop). One bad message is logged and never drops the stream.

A job whose command went out on an earlier stream (the agent restarted or lost its connection
mid-job) is sent again as soon as the agent reconnects, not after the resend interval. A job
update that arrives while the database is unavailable is kept and applied again on the next
look, so an install result is not lost to an outage; the outage itself is logged once, by the
registry (collector/registry/db.py).
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Callable

from collector import errors
from collector.domain import jobstates as jobs
from collector.domain import netscan
from collector.domain.commands import Command, NetworkScan
from collector.domain.ratelimit import RateLimits
from collector.registry import Registry
from collector.services.renewal import RenewalService

log = logging.getLogger(__name__)


#: log lines a minute about one agent's stream messages (refusals, failures)
LOG_LINES_PER_MINUTE = 20


class AgentSessions:
    """Opens a session per connected command stream."""

    def __init__(self, registry: Registry, clock: Callable[[], dt.datetime],
                 renewal: RenewalService | None = None) -> None:
        self.registry = registry
        self.clock = clock
        self.renewal = renewal      # None: renewal is not configured (no issuers); jobs are left alone

    def open(self, agent_id: str) -> AgentSession:
        return AgentSession(agent_id, self.registry, self.clock, self.renewal)


class AgentSession:
    def __init__(self, agent_id: str, registry: Registry, clock: Callable[[], dt.datetime],
                 renewal: RenewalService | None) -> None:
        self.agent_id = agent_id
        self.registry = registry
        self.clock = clock
        self.renewal = renewal
        self._fresh = True          # the stream just connected: unfinished network scans are sent again
        self.connected_at = clock() # jobs in flight sent before this are sent again at once
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], jobs.AgentJobUpdate] = {}   # updates the database missed
        # what an agent sends is untrusted: a flood of bad messages gets a few log lines a minute, not one each
        self._log_limit = RateLimits(per_minute=LOG_LINES_PER_MINUTE, burst=LOG_LINES_PER_MINUTE)
        self._suppressed = 0

    # -- what the agent gets --------------------------------------------------------------

    def commands(self) -> list[Command]:
        """The commands due for the agent now (blocking). A failure to prepare one kind is logged;
        the others are still sent, and the next look tries again."""
        out: list[Command] = []
        if self.renewal is not None:
            self._apply_pending()
            try:
                out += self.renewal.commands_for(self.agent_id, connected_at=self.connected_at)
            except errors.DatabaseUnavailable:
                log.debug("no commands for %s: the database is unavailable", self.agent_id)
            except Exception:  # noqa: BLE001 - tried again on the next look
                log.exception("could not prepare commands for %s", self.agent_id)
            out += self.renewal.broker.take(self.agent_id)
        try:
            out += self._scans(resend=self._fresh)
            self._fresh = False
        except errors.DatabaseUnavailable:
            log.debug("no network scans for %s: the database is unavailable", self.agent_id)
        except Exception:  # noqa: BLE001 - tried again on the next look
            log.exception("could not prepare network scans for %s", self.agent_id)
        return out

    def _apply_pending(self) -> None:
        """Job updates that arrived during a database outage, applied again (oldest first)."""
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
        for update in pending:
            self.on_job_update(update)

    def _scans(self, resend: bool) -> list[Command]:
        """Queued network scans (claimed, so one collector sends each) and, with ``resend``, the ones
        the agent was sent and has not finished (collector/registry/discovery.py)."""
        return [
            NetworkScan(
                command_id=f"{s.scan_id}:netscan", scan_id=s.scan_id, targets=tuple(s.targets), ports=tuple(s.ports),
                rate_per_second=s.rate_per_second, timeout_seconds=s.timeout_seconds, concurrency=s.concurrency,
                sni_names=tuple(s.sni_names), starttls=dict(s.starttls),
                max_addresses=netscan.MAX_PROBES)   # the agent reads it as address x port pairs
            for s in self.registry.discovery.claim_for_agent(self.agent_id, self.clock(), resend=resend)
        ]

    # -- what its messages do -------------------------------------------------------------

    def take_answer(self, update: jobs.AgentJobUpdate) -> bool:
        """An answer to an ACME challenge placement goes to the issuance waiting for it, at once (it
        never blocks); True when ``update`` was one. Anything else is for :meth:`on_job_update`."""
        if not jobs.is_challenge_answer(update.state):
            return False
        if self.renewal is not None:
            self.renewal.broker.ack(update, self.agent_id)
        return True

    def _log_allowed(self) -> bool:
        """Whether this session may log one more line now (:data:`LOG_LINES_PER_MINUTE`); says how many were
        held back when it may again."""
        if not self._log_limit.allow(self.agent_id, time.monotonic()):
            self._suppressed += 1
            return False
        if self._suppressed:
            log.warning("%d more message(s) about agent %s were not logged (rate limit)", self._suppressed,
                        self.agent_id)
            self._suppressed = 0
        return True

    def _warn(self, msg: str, *args: object) -> None:
        if self._log_allowed():
            log.warning(msg, *args)

    def on_job_update(self, update: jobs.AgentJobUpdate) -> None:
        """A job's progress (blocking: a CSR is issued at once, and an ACME issuance may wait for
        this same stream to place its challenge)."""
        if self.renewal is None:
            return
        try:
            self.renewal.on_update(self.agent_id, update)
        except errors.DatabaseUnavailable:      # kept, applied again on the next look (commands)
            with self._lock:
                self._pending.setdefault((update.job_id, update.state), update)
            log.debug("job update %s %s from %s kept: the database is unavailable", update.job_id, update.state,
                      self.agent_id)
        except errors.CollectorError as e:
            self._warn("job update from %s refused: %s", self.agent_id, e)
        except Exception:  # noqa: BLE001 - one bad update must not drop the stream
            if self._log_allowed():
                log.exception("job update from %s failed", self.agent_id)

    def on_scan_progress(self, scan_id: str, progress: netscan.Progress) -> None:
        """A network scan's progress, into the registry (blocking)."""
        try:
            v = self.registry.discovery.record_progress(self.agent_id, scan_id, progress, self.clock())
        except errors.DatabaseUnavailable:      # the next progress report carries the counts again
            log.debug("network scan progress from %s dropped: the database is unavailable", self.agent_id)
            return
        except errors.CollectorError as e:
            self._warn("network scan progress from %s refused: %s", self.agent_id, e)
            return
        except Exception:  # noqa: BLE001 - one bad message must not drop the stream
            if self._log_allowed():
                log.exception("network scan progress from %s failed", self.agent_id)
            return
        if v is not None and v.state in netscan.FINAL:
            log.info("network scan %s on agent %s %s: %d probed, %d TLS endpoints, %d errors; %s", v.scan_id,
                     self.agent_id, v.state, v.probed, v.tls_found, v.errors, v.reason)
