"""What every install pipeline shares: the Installer interface, steps, the result, and verify-until-served.

An install is a list of steps (:data:`STEPS`), each recorded in ``result.steps`` with its
duration and announced to ``on_step(step, detail)`` when it starts: ``check``, ``backup``,
``write``, ``reload``, ``verify`` (and ``cleanup`` where a pipeline has one); after a
failure once something changed, ``rollback.restore``, ``rollback.reload``,
``rollback.verify``. The result is ``verified``, ``rolled_back`` (with the reason) or
``failed`` (nothing changed, or the rollback could not be confirmed).

Every pipeline proves its work the same way, with :func:`await_served`: handshakes with
each endpoint until it has served the new certificate steadily (``confirmations``
handshakes in a row over at least ``settle`` seconds: a reloading server keeps old
workers serving the old certificate for a moment), judged by the target's own rule for
the served chain, before one shared deadline.

This module is the contract: it imports no pipeline. The pipelines are
:mod:`agent.install.files` and :mod:`agent.install.windows`; :mod:`agent.install` chooses.
"""
from __future__ import annotations

import logging
import os
import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from agent.config import AgentConfig
from agent.errors import ProbeError
from agent.inventory import LocationKey
from agent.keys import PrivateKey
from agent.probe import ProbeResult, probe
from agent.stores.base import split_chain

__all__ = [
    "Installer", "InstallResult", "Step", "StepFailed", "StepBook", "VerifyTarget", "Judgement", "Served",
    "await_served", "backup_dir", "chain_roots_pem", "OnStep", "VERIFIED", "VERIFIED_BY_ENDPOINTS", "VERIFIED_BY_NONE", "ROLLED_BACK", "FAILED", "STEPS",
]

log = logging.getLogger(__name__)

VERIFIED = "verified"
VERIFIED_BY_ENDPOINTS = "endpoints"      # InstallResult.verified_by: every verify target serves it
VERIFIED_BY_NONE = "none"                # no verify entry: installed and reloaded, nothing probed
ROLLED_BACK = "rolled_back"
FAILED = "failed"

STEPS = ("check", "backup", "write", "reload", "verify", "cleanup", "rollback.restore", "rollback.reload",
         "rollback.verify")

OnStep = Callable[[str, str], None]


@dataclass(frozen=True)
class Step:
    """One step of an install: its name (see :data:`STEPS`), whether it succeeded, what happened, how long."""

    step: str
    ok: bool
    detail: str
    seconds: float

    def __iter__(self) -> Iterator[Any]:        # (step, ok, detail, seconds) unpacking
        return iter((self.step, self.ok, self.detail, self.seconds))


@dataclass
class InstallResult:
    """The outcome of an install. ``reason`` is "" when verified and safe to show a user."""

    state: str                          # VERIFIED, ROLLED_BACK or FAILED
    reason: str
    steps: list[Step]
    new_fingerprint: str
    old_fingerprint: str
    served_fingerprint: str | None = None    # what the (last checked) endpoint served at the end
    reload_seconds: float | None = None      # the install's reload (not the rollback's)
    verify_seconds: float | None = None
    seconds: float = 0.0
    written: bool = False                    # the new content was written (and, when verified, stays)
    backup_dir: str | None = None
    warnings: list[str] = field(default_factory=list)   # verified, but worth telling (incomplete served chain)
    #: how a VERIFIED install was verified: "endpoints" (every verify target serves the new
    #: certificate) or "none" (the store has no verify entry: written and reloaded, nothing probed)
    verified_by: str = ""

    @property
    def ok(self) -> bool:
        return self.state == VERIFIED

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (for job reports)."""
        return {
            "state": self.state, "reason": self.reason, "new_fingerprint": self.new_fingerprint,
            "old_fingerprint": self.old_fingerprint, "served_fingerprint": self.served_fingerprint,
            "reload_seconds": self.reload_seconds, "verify_seconds": self.verify_seconds,
            "seconds": round(self.seconds, 3), "written": self.written, "backup_dir": self.backup_dir,
            "warnings": list(self.warnings), "verified_by": self.verified_by,
            "steps": [{"step": s.step, "ok": s.ok, "detail": s.detail, "seconds": round(s.seconds, 3)}
                      for s in self.steps],
        }


class StepFailed(Exception):
    """A step of an install pipeline failed; ``reason`` says why (the pipelines turn it into rollback)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Installer(ABC):
    """One install pipeline: builds its requests from the agent's config and runs them.

    :mod:`agent.install` picks the installer by the location's store type.
    """

    @abstractmethod
    def request(self, config: AgentConfig, *, job_id: str, location: LocationKey, key: PrivateKey, cert_der: bytes,
                chain_ders: tuple[bytes, ...] | list[bytes] = (), expected_old_fingerprint: str,
                ca_bundle: bytes | None = None) -> Any:
        """The request to install ``cert_der`` (made for ``key``) at ``location``, as this agent's config says.

        Raises :class:`~agent.errors.AgentError` subclasses with a clear message.
        """

    @abstractmethod
    def install(self, request: Any, data_dir: str | os.PathLike[str], on_step: OnStep | None = None) -> InstallResult:
        """Run the pipeline; never raises for a failed install: see ``result.state``."""


def chain_roots_pem(chain_ders: Sequence[bytes]) -> bytes | None:
    """The self-signed certificates at the end of an issued chain, as PEM roots to validate with (None: none)."""
    _, roots = split_chain(chain_ders)
    if not roots:
        return None
    return b"".join(x509.load_der_x509_certificate(r).public_bytes(Encoding.PEM) for r in roots)


def backup_dir(data_dir: str | os.PathLike[str], job_id: str) -> Path:
    """Where an install keeps the backup for ``job_id``."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", job_id)[:128].lstrip(".") or "job"
    return Path(data_dir) / "backups" / safe


# --------------------------------------------------------------------------- verify until served

@dataclass(frozen=True)
class Judgement:
    """What a target makes of the chain one handshake showed.

    ``valid``: acceptable; ``note``: how it was judged, for the step's detail ("chain valid",
    "chain valid for www.example.com"); ``warn``: acceptable only with help, and the note says
    why (it becomes a warning of the result); ``problem``: why it is not valid.
    """

    valid: bool
    note: str = ""
    warn: bool = False
    problem: str = ""


class VerifyTarget(Protocol):
    """Something to handshake with after an install: an endpoint of a store, an http.sys binding."""

    noun: str                 # "endpoint", "binding": how messages name it
    host: str                 # where to connect
    port: int
    sni: str | None           # what the client sends

    def __str__(self) -> str: ...

    def judge(self, result: ProbeResult, want: str, roots: bytes | None) -> Judgement: ...


@dataclass(frozen=True)
class Served:
    """The outcome of :func:`await_served` for one target."""

    ok: bool
    detail: str                      # for the step's detail (ok) or the install's reason (not ok)
    fingerprint: str | None = None   # what the target served last (None: it never answered)
    warning: str = ""                # ok, but worth telling


def await_served(target: VerifyTarget, want: str, *, deadline: float, roots: bytes | None, require_valid: bool,
                 old_fingerprint: str, timeout: float, probe_timeout: float = 3.0, confirmations: int = 3,
                 settle: float = 0.3, quick: bool = False) -> Served:
    """Handshake with ``target`` until ``want`` has been served steadily, or until ``deadline``.

    Steadily: ``confirmations`` handshakes in a row over at least ``settle`` seconds (a
    reloading server keeps old workers serving the old certificate for a moment: nginx waits
    100 ms before it stops them), each with a chain the target accepts (unless
    ``require_valid`` is False). ``timeout`` is the verify timeout the deadline came from
    (for the message); ``quick``: give up at the first handshake that does not show ``want``.
    """
    noun = target.noun
    delay = 0.03
    last: ProbeResult | None = None
    judged: Judgement | None = None
    error: str = ""
    attempts = agreeing = 0
    streak_start = 0.0
    needed = max(1, confirmations)
    while True:
        attempts += 1
        remaining = deadline - time.perf_counter()
        try:
            last = probe(target.host, target.port, target.sni, timeout=max(0.2, min(probe_timeout, remaining)),
                         ca_bundle=roots)
            error = ""
            judged = target.judge(last, want, roots)
            if last.fingerprint == want and (judged.valid or not require_valid):
                now = time.perf_counter()
                if agreeing == 0:
                    streak_start = now
                agreeing += 1
                if agreeing >= needed and now - streak_start >= settle:
                    warning = ""
                    if not judged.valid:
                        note = f"chain not checked ({judged.problem})"
                    else:
                        note = judged.note
                        if judged.warn:
                            warning = f"{noun} {target}: {note}"
                    return Served(True, f"{target} serves {want} ({last.protocol}, {note}, {attempts} handshake(s))",
                                  last.fingerprint, warning)
                if now >= deadline:
                    return Served(False, f"{noun} {target} served {want} only since {now - streak_start:.2f} s "
                                         f"when the verify timeout ({timeout:g} s) ran out", last.fingerprint)
                time.sleep(min(max(settle / max(needed - 1, 1), 0.02), 0.1, deadline - now))
                continue
            agreeing = 0
        except ProbeError as e:
            error = str(e)
            agreeing = 0
        if quick:
            break
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            break
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.5, 0.25)
    served = last.fingerprint if last is not None else None
    if error and last is None:
        return Served(False, f"{noun} {target} cannot be reached: {error}", served)
    if error:
        return Served(False, f"{noun} {target} stopped answering: {error}", served)
    assert last is not None and judged is not None
    if last.fingerprint == want:
        return Served(False, f"{noun} {target} serves {want} but its chain does not validate: {judged.problem}", served)
    if last.fingerprint == old_fingerprint:
        return Served(False, f"{noun} {target} still serves {old_fingerprint}", served)
    return Served(False, f"{noun} {target} serves {last.fingerprint}, not {want}", served)


# --------------------------------------------------------------------------- bookkeeping

class StepBook(ABC):
    """The bookkeeping every install pipeline shares: steps announced to the caller, logged, kept for the
    result; every target verified with :func:`await_served` before one shared deadline."""

    req: Any
    on_step: OnStep | None
    steps: list[Step]
    t0: float
    new_fp: str
    old_fp: str
    served: str | None
    reload_seconds: float | None
    verify_seconds: float | None
    backup: Path | None
    warnings: list[str]

    def _announce(self, step: str, detail: str) -> None:
        if self.on_step is not None:
            try:
                self.on_step(step, detail)
            except Exception:  # noqa: BLE001 - a progress reporter must not break an install
                log.exception("install progress callback failed")

    def record(self, step: str, ok: bool, detail: str, started: float) -> None:
        self.steps.append(Step(step, ok, detail, time.perf_counter() - started))
        log.info("install %s %s: %s %s", self.req.job_id, step, "ok" if ok else "FAILED", detail)

    @abstractmethod
    def _roots_for(self, target: VerifyTarget) -> bytes | None:
        """PEM roots to validate what ``target`` serves (None: the system trust store); StepFailed if unreadable."""

    def _await(self, target: VerifyTarget, want: str, deadline: float, require_valid: bool, timeout: float,
               quick: bool = False) -> tuple[bool, str]:
        """:func:`await_served` for one target, keeping what it served and its warning."""
        req = self.req
        outcome = await_served(target, want, deadline=deadline, roots=self._roots_for(target),
                               require_valid=require_valid, old_fingerprint=self.old_fp, timeout=timeout,
                               probe_timeout=req.probe_timeout, confirmations=req.confirmations, settle=req.settle,
                               quick=quick)
        if outcome.fingerprint is not None:
            self.served = outcome.fingerprint
        if outcome.warning and outcome.warning not in self.warnings:
            self.warnings.append(outcome.warning)
        return outcome.ok, outcome.detail

    def _verify_each(self, step: str, targets: Sequence[VerifyTarget], noun: str, want: str, timeout: float,
                     require_valid: bool) -> None:
        """Every target serves ``want`` before one shared deadline; the first that does not fails the step
        and aborts the install."""
        started = time.perf_counter()
        self._announce(step, f"waiting for {len(targets)} {noun}(s) to serve {want[:16]}...")
        deadline = started + timeout
        details = []
        for target in targets:
            ok, detail = self._await(target, want, deadline, require_valid, timeout)
            details.append(detail)
            if not ok:
                if step == "verify":
                    self.verify_seconds = time.perf_counter() - started
                self.record(step, False, detail, started)
                raise StepFailed(detail)
        if step == "verify":
            self.verify_seconds = time.perf_counter() - started
        self.record(step, True, "; ".join(details), started)

    def _result(self, state: str, reason: str, written: bool) -> InstallResult:
        verified_by = ""
        if state == VERIFIED:
            probed = any(s.step == "verify" and s.ok for s in self.steps)
            verified_by = VERIFIED_BY_ENDPOINTS if probed else VERIFIED_BY_NONE
        return InstallResult(
            state=state, reason=reason, steps=self.steps, new_fingerprint=self.new_fp, old_fingerprint=self.old_fp,
            served_fingerprint=self.served, reload_seconds=self.reload_seconds, verify_seconds=self.verify_seconds,
            seconds=time.perf_counter() - self.t0, written=written and state == VERIFIED,
            backup_dir=str(self.backup) if self.backup else None, warnings=list(self.warnings),
            verified_by=verified_by,
        )
