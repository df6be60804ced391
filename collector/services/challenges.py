"""ACME http-01 answered by the agent on the host: the collector asks, the agent places the file.

The ACME client runs in a worker thread of the collector (inside a job's
issuance) and calls :meth:`ChallengeBroker.present`; that queues a
PlaceChallenge command for the job's agent, wakes the agent's command stream
and waits until the agent says the challenge is in place. The agent's answer
arrives on its stream and is handed to :meth:`ChallengeBroker.ack`, which takes it only from the
job's own agent (another agent cannot answer, or fake, someone else's challenge).

The command goes to the agent's stream on this collector; with several
collectors, an agent connected elsewhere cannot be reached and the issuance
fails with that reason (the job can be retried).
"""
from __future__ import annotations

import collections
import contextlib
import logging
import threading
from typing import Callable, Iterator

from collector import errors
from collector.domain.commands import Command, LocationKey, PlaceChallenge, RemoveChallenge
from collector.domain.jobstates import CHALLENGE_READY, AgentJobUpdate
from collector.registry.types import JobView

log = logging.getLogger(__name__)

PLACE_TIMEOUT = 60.0


class ChallengeBroker:
    def __init__(self, notify: Callable[[str], None] | None = None, timeout: float = PLACE_TIMEOUT) -> None:
        self._notify = notify or (lambda agent_id: None)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._outbox: dict[str, collections.deque[Command]] = collections.defaultdict(collections.deque)
        # token -> (done, outcome, the job's agent, the job): only that agent's answer counts
        self._waiting: dict[str, tuple[threading.Event, list[str], str, str]] = {}
        self._local = threading.local()

    def set_notifier(self, notify: Callable[[str], None]) -> None:
        self._notify = notify

    @contextlib.contextmanager
    def for_job(self, job: JobView) -> Iterator[None]:
        """Challenges presented in this thread belong to ``job``."""
        self._local.job = job
        try:
            yield
        finally:
            self._local.job = None

    def _job(self) -> JobView:
        job = getattr(self._local, "job", None)
        if job is None:
            raise errors.IssuerError("an http-01 challenge outside a renewal job cannot be placed by an agent")
        return job

    def _location(self, job: JobView) -> LocationKey:
        return LocationKey(store_type=job.store_type, path=job.path, alias=job.alias, chain_index=job.chain_index)

    def _send(self, agent_id: str, cmd: Command) -> None:
        with self._lock:
            self._outbox[agent_id].append(cmd)
        self._notify(agent_id)

    def take(self, agent_id: str) -> list[Command]:
        """Commands queued for ``agent_id`` (called by its command stream)."""
        with self._lock:
            box = self._outbox.pop(agent_id, None)
        return list(box or ())

    def present(self, token: str, key_authorization: str, domain: str) -> None:
        job = self._job()
        done = threading.Event()
        outcome: list[str] = []
        with self._lock:
            self._waiting[token] = (done, outcome, job.agent_id, job.job_id)
        self._send(job.agent_id, PlaceChallenge(
            command_id=f"{job.job_id}:challenge:{token[:16]}", job_id=job.job_id, location=self._location(job),
            token=token, key_authorization=key_authorization, domain=domain,
        ))
        try:
            if not done.wait(self._timeout):
                raise errors.IssuerUnavailable(
                    f"agent {job.agent_id} did not place the http-01 challenge for {domain} within "
                    f"{self._timeout:.0f}s (is it connected to this collector?)")
        finally:
            with self._lock:
                self._waiting.pop(token, None)
        if outcome and outcome[0]:
            raise errors.IssuerError(f"the agent could not place the http-01 challenge for {domain}: {outcome[0]}")
        log.info("job %s: agent placed the http-01 challenge for %s", job.job_id, domain)

    def cleanup(self, token: str, key_authorization: str, domain: str) -> None:
        job = self._job()
        self._send(job.agent_id, RemoveChallenge(
            command_id=f"{job.job_id}:challenge-cleanup:{token[:16]}", job_id=job.job_id,
            location=self._location(job), token=token,
        ))

    def ack(self, update: AgentJobUpdate, agent_id: str) -> bool:
        """The answer of ``agent_id``: ``challenge_ready`` or ``challenge_failed`` (reason). Taken only
        from the agent of the job the challenge is for, naming that job; False when it is not taken."""
        with self._lock:
            waiting = self._waiting.get(update.challenge_token)
        if waiting is None:
            return False
        done, outcome, job_agent, job_id = waiting
        if agent_id != job_agent or update.job_id != job_id:
            log.warning("challenge answer for job %s from agent %s ignored: the challenge is agent %s's, job %s",
                        update.job_id, agent_id, job_agent, job_id)
            return False
        outcome.append("" if update.state == CHALLENGE_READY else (update.reason or "failed"))
        done.set()
        return True
