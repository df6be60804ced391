"""The command stream's vocabulary as the agent's domain sees it: what the collector asks, what the agent answers.

Commands (:class:`PrepareRenewal`, :class:`InstallCertificate`, :class:`PlaceChallenge`,
:class:`RemoveChallenge`, :class:`RequestFullReport`, a network scan's
:class:`~agent.netscan.plan.ScanRequest`) and the answer, :class:`JobUpdate` with its
:class:`JobStep` records, are plain dataclasses. The wire messages (``CollectorCommand``,
``JobUpdate`` with its ``JOB_UPDATE_STATE_*`` enum) are converted at the door,
:mod:`agent.transport.wire`; nothing here imports them.

A job's result is kept in ``<data_dir>/jobs/<id>/result.json`` as the JSON of
:meth:`JobUpdate.to_json` (see :mod:`agent.commands`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Union

from agent.inventory import LocationKey
from agent.netscan.plan import ScanRequest

__all__ = [
    "JobUpdate", "JobStep", "PrepareRenewal", "InstallCertificate", "PlaceChallenge", "RemoveChallenge",
    "RequestFullReport", "UnknownCommand", "Command", "ScanRequest", "JOB_STATES", "CSR_READY", "INSTALLING",
    "VERIFIED", "ROLLED_BACK", "FAILED", "CHALLENGE_READY", "CHALLENGE_FAILED",
]

# What an agent says about a job (JobUpdate.state). The install pipeline's outcomes
# (agent.install: verified, rolled_back, failed) are three of them.
CSR_READY = "csr_ready"                  # the key is made on the host; csr_der carries the CSR
INSTALLING = "installing"
VERIFIED = "verified"                    # the service serves the new certificate
ROLLED_BACK = "rolled_back"              # the install failed and the old certificate is served again
FAILED = "failed"
CHALLENGE_READY = "challenge_ready"      # an ACME http-01 challenge file is in place
CHALLENGE_FAILED = "challenge_failed"
JOB_STATES = (CSR_READY, INSTALLING, VERIFIED, ROLLED_BACK, FAILED, CHALLENGE_READY, CHALLENGE_FAILED)


@dataclass(frozen=True)
class JobStep:
    """One step of an install, as reported (see agent.install.pipeline.Step)."""

    step: str
    ok: bool
    detail: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class JobUpdate:
    """What the agent says about a job. ``reason`` is safe to show a user (never a secret)."""

    job_id: str
    state: str                                  # one of JOB_STATES
    reason: str = ""
    csr_der: bytes = b""                        # with csr_ready
    served_fingerprint: str = ""
    steps: tuple[JobStep, ...] = ()
    reload_seconds: float = 0.0
    challenge_token: str = ""                   # with challenge_ready / challenge_failed
    verified_by: str = ""                       # with verified: "endpoints", or "none" (nothing probed)

    def to_json(self) -> dict[str, Any]:
        """The JSON form kept in a job's result.json (a CSR, were there one, as hex)."""
        return {
            "job_id": self.job_id, "state": self.state, "reason": self.reason, "csr_der": self.csr_der.hex(),
            "served_fingerprint": self.served_fingerprint, "reload_seconds": self.reload_seconds,
            "challenge_token": self.challenge_token, "verified_by": self.verified_by,
            "steps": [{"step": s.step, "ok": s.ok, "detail": s.detail, "seconds": s.seconds} for s in self.steps],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "JobUpdate":
        """The inverse of :meth:`to_json`; ValueError (or KeyError/TypeError) for anything else."""
        state = str(doc["state"])
        if state not in JOB_STATES:
            raise ValueError(f"unknown job state {state!r}")
        return cls(
            job_id=str(doc["job_id"]), state=state, reason=str(doc.get("reason", "")),
            csr_der=bytes.fromhex(str(doc.get("csr_der", ""))), served_fingerprint=str(doc.get("served_fingerprint", "")),
            reload_seconds=float(doc.get("reload_seconds", 0.0)), challenge_token=str(doc.get("challenge_token", "")),
            verified_by=str(doc.get("verified_by", "")),
            steps=tuple(JobStep(str(s["step"]), bool(s["ok"]), str(s.get("detail", "")), float(s.get("seconds", 0.0)))
                        for s in doc.get("steps", [])),
        )


@dataclass(frozen=True)
class PrepareRenewal:
    """Make a new key on this host and a CSR for these names."""

    job_id: str
    location: LocationKey
    key_spec: str                               # rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384
    common_name: str = ""
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class InstallCertificate:
    """Install the issued certificate with the key made for this job, reload, verify."""

    job_id: str
    location: LocationKey
    certificate_der: bytes
    chain_der: tuple[bytes, ...] = ()           # issuer first
    expected_old_fingerprint: str = ""          # what the registry believes is there now
    trust_anchor_der: bytes = b""               # the issuer's root, to validate what the service serves


@dataclass(frozen=True)
class PlaceChallenge:
    """ACME http-01: put ``key_authorization`` where the host serves /.well-known/acme-challenge/<token>."""

    job_id: str
    location: LocationKey
    token: str
    key_authorization: str
    domain: str = ""


@dataclass(frozen=True)
class RemoveChallenge:
    job_id: str
    location: LocationKey
    token: str


@dataclass(frozen=True)
class RequestFullReport:
    """Send a full inventory report next."""


@dataclass(frozen=True)
class UnknownCommand:
    """A command this agent does not know (from a newer collector): ignored."""

    command_id: str


Command = Union[PrepareRenewal, InstallCertificate, PlaceChallenge, RemoveChallenge, RequestFullReport, ScanRequest,
                UnknownCommand]
