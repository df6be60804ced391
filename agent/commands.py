"""What the agent does with the collector's commands: jobs, their files, challenges, scans, full reports.

Commands are idempotent here: a PrepareRenewal resent after a reconnect reuses
the key already made for that job (a new CSR for the same key), and an
InstallCertificate for a job that already finished resends the recorded result.
Per-job state lives in ``<data_dir>/jobs/<job_id>/`` (:class:`JobDir`: the key, mode
0600, and ``result.json``, the JSON of the job's :class:`~agent.jobs.JobUpdate`), so a
restart of the agent loses nothing either.

Commands come in and job updates go out as dataclasses (:mod:`agent.jobs`); the command
stream that carries them is :mod:`agent.transport.commands`.
"""
from __future__ import annotations

import json
import logging
import pathlib
import re
import threading
from typing import Any, Callable

from agent.config import AgentConfig
from agent.errors import AgentError
from agent.fsutil import atomic_write
from agent.inventory import LocationKey
from agent.jobs import (CHALLENGE_FAILED, CHALLENGE_READY, CSR_READY, FAILED, VERIFIED, Command,
                        InstallCertificate, JobUpdate, PlaceChallenge, PrepareRenewal, RemoveChallenge,
                        RequestFullReport, ScanRequest, UnknownCommand)
from agent.keys import PrivateKey, load_pem_private_key, make_csr, new_key, private_key_pem

__all__ = ["CommandHandler", "JobDir", "JobInstaller", "LegacyResultReader"]

log = logging.getLogger(__name__)
_JOB_ID = re.compile(r"[A-Za-z0-9-]{8,64}")   # fullmatch: no trailing newline
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,256}")   # base64url, as RFC 8555 requires: no path can hide in it

#: installs the issued certificate of a job with the job's key: (job, command, key) -> the job's update
JobInstaller = Callable[["JobDir", InstallCertificate, PrivateKey], JobUpdate]
#: reads a result.json written by an agent before 0.2 (protobuf bytes of the wire JobUpdate): the transport's
LegacyResultReader = Callable[[bytes], JobUpdate]


class JobDir:
    """Files of one renewal job on this host."""

    def __init__(self, data_dir: pathlib.Path, job_id: str, legacy_result: LegacyResultReader | None = None) -> None:
        if not _JOB_ID.fullmatch(job_id):
            raise AgentError(f"refusing a job id that is not an id: {job_id!r}")
        self.path = data_dir / "jobs" / job_id
        self.job_id = job_id
        self.legacy_result = legacy_result

    @property
    def key_path(self) -> pathlib.Path:
        return self.path / "key.pem"

    @property
    def result_path(self) -> pathlib.Path:
        return self.path / "result.json"

    def key(self, spec: str) -> PrivateKey:
        """The job's key: made once, reused when the command comes again."""
        if self.key_path.exists():
            return load_pem_private_key(self.key_path.read_bytes())
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = new_key(spec)
        atomic_write(self.key_path, private_key_pem(key), 0o600)
        return key

    def existing_key(self) -> PrivateKey:
        if not self.key_path.exists():
            raise AgentError("no key was made on this host for this job (was the agent's data directory reset?)")
        return load_pem_private_key(self.key_path.read_bytes())

    def save_result(self, update: JobUpdate) -> None:
        """Keep the job's final update (JSON); once verified, the job's copy of the key is no longer needed."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)   # a job whose key was never made here has none
        atomic_write(self.result_path, (json.dumps({"version": 1, "update": update.to_json()}, indent=2) + "\n")
                     .encode("utf-8"), 0o600)
        if update.state == VERIFIED:
            # The key now lives in the store; the job's copy is no longer needed.
            try:
                self.key_path.unlink()
            except FileNotFoundError:
                pass

    @property
    def install_path(self) -> pathlib.Path:
        return self.path / "install.json"

    def save_install(self, c: InstallCertificate) -> None:
        """Keep the install command (certificates only, no secret) so an interrupted install can be resumed."""
        loc = c.location
        doc = {"version": 1, "job_id": c.job_id,
               "location": {"store_type": loc.store_type, "path": loc.path, "alias": loc.alias,
                            "chain_index": loc.chain_index},
               "certificate_der": c.certificate_der.hex(), "chain_der": [d.hex() for d in c.chain_der],
               "expected_old_fingerprint": c.expected_old_fingerprint, "trust_anchor_der": c.trust_anchor_der.hex()}
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.install_path, (json.dumps(doc, indent=1) + "\n").encode("utf-8"), 0o600)

    def pending_install(self) -> InstallCertificate | None:
        """The install this job was doing when the agent stopped: its command, when it has no result yet."""
        if self.result_path.exists():
            return None
        try:
            doc = json.loads(self.install_path.read_bytes())
            loc = doc["location"]
            return InstallCertificate(
                job_id=str(doc["job_id"]),
                location=LocationKey(str(loc["store_type"]), str(loc["path"]), str(loc["alias"]),
                                     int(loc["chain_index"])),
                certificate_der=bytes.fromhex(doc["certificate_der"]),
                chain_der=tuple(bytes.fromhex(d) for d in doc["chain_der"]),
                expected_old_fingerprint=str(doc["expected_old_fingerprint"]),
                trust_anchor_der=bytes.fromhex(doc["trust_anchor_der"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("job %s: %s is unreadable (%s); the job waits for the collector", self.job_id,
                        self.install_path, e)
            return None

    def result(self) -> JobUpdate | None:
        """The job's recorded final update, or None when it has none (or none this agent can read)."""
        try:
            data = self.result_path.read_bytes()
        except FileNotFoundError:
            return None
        if data.lstrip()[:1] == b"{":
            try:
                return JobUpdate.from_json(json.loads(data)["update"])
            except (ValueError, KeyError, TypeError) as e:
                log.warning("job %s: %s is unreadable (%s); the job runs again", self.job_id, self.result_path, e)
                return None
        # an agent before 0.2 wrote the wire message itself, in protobuf bytes
        if self.legacy_result is None:
            log.warning("job %s: %s holds a result of an earlier agent that cannot be read here", self.job_id,
                        self.result_path)
            return None
        try:
            return self.legacy_result(data)
        except ValueError as e:
            log.warning("job %s: %s is unreadable (%s); the job runs again", self.job_id, self.result_path, e)
            return None


class CommandHandler:
    """Turns commands into job updates. Install work is delegated to ``installer``."""

    def __init__(self, config: AgentConfig, installer: JobInstaller, on_installed: Callable[[], None] | None = None,
                 legacy_result: LegacyResultReader | None = None) -> None:
        self.config = config
        self.installer = installer
        self.on_installed = on_installed or (lambda: None)
        self.legacy_result = legacy_result
        self.full_report_requested = threading.Event()
        self.network_scans: Any = None   # agent.netscan.runner.NetworkScans, set by the service (runs scans off this thread)

    def job(self, job_id: str) -> JobDir:
        return JobDir(self.config.data_dir, job_id, self.legacy_result)

    def handle(self, cmd: Command) -> list[JobUpdate]:
        if isinstance(cmd, PrepareRenewal):
            return [self.prepare(cmd)]
        if isinstance(cmd, InstallCertificate):
            return [self.install(cmd)]
        if isinstance(cmd, PlaceChallenge):
            return [self.place_challenge(cmd)]
        if isinstance(cmd, RemoveChallenge):
            self.remove_challenge(cmd)
            return []
        if isinstance(cmd, RequestFullReport):
            self.full_report_requested.set()
            return []
        if isinstance(cmd, ScanRequest):
            if self.network_scans is None:
                log.warning("network scan %s ignored: this agent runs scans only as a service", cmd.scan_id)
            else:
                self.network_scans.submit(cmd)   # progress goes out through the command stream's send
            return []
        log.warning("ignoring unknown command %s", cmd.command_id if isinstance(cmd, UnknownCommand) else cmd)
        return []

    def prepare(self, p: PrepareRenewal) -> JobUpdate:
        job = self.job(p.job_id)
        try:
            key = job.key(p.key_spec)
            csr = make_csr(key, p.common_name or None, list(p.dns_names), list(p.ip_addresses))
        except AgentError as e:
            return JobUpdate(job_id=p.job_id, state=FAILED, reason=f"key or CSR: {e}")
        log.info("job %s: new %s key made on this host, CSR sent", p.job_id, p.key_spec)
        return JobUpdate(job_id=p.job_id, state=CSR_READY, csr_der=csr)

    def _challenge_file(self, location: LocationKey, token: str) -> pathlib.Path:
        if not _TOKEN.fullmatch(token):
            raise AgentError("the ACME token has characters a token cannot have")
        store = self.config.store_for(location.path)
        if store is None:
            raise AgentError(f"{location.path} is not in any store of this agent's configuration")
        if not store.acme_webroot:
            raise AgentError(f"store {store.name!r} has no acme_webroot: this host cannot answer http-01 challenges")
        return pathlib.Path(store.acme_webroot) / ".well-known" / "acme-challenge" / token

    def place_challenge(self, c: PlaceChallenge) -> JobUpdate:
        """Write the key authorization where the web server serves /.well-known/acme-challenge/."""
        try:
            path = self._challenge_file(c.location, c.token)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            atomic_write(path, c.key_authorization.encode(), 0o644)
        except (AgentError, OSError) as e:
            why = str(e) if isinstance(e, AgentError) else f"cannot write the challenge file: {e.strerror}"
            log.warning("job %s: http-01 challenge for %s not placed: %s", c.job_id, c.domain, why)
            return JobUpdate(job_id=c.job_id, state=CHALLENGE_FAILED, reason=why, challenge_token=c.token)
        log.info("job %s: http-01 challenge for %s placed at %s", c.job_id, c.domain, path)
        return JobUpdate(job_id=c.job_id, state=CHALLENGE_READY, challenge_token=c.token)

    def remove_challenge(self, c: RemoveChallenge) -> None:
        try:
            self._challenge_file(c.location, c.token).unlink()
        except FileNotFoundError:
            pass
        except (AgentError, OSError) as e:
            log.warning("job %s: challenge file not removed: %s", c.job_id, e)

    def install(self, c: InstallCertificate) -> JobUpdate:
        job = self.job(c.job_id)
        done = job.result()
        if done is not None:
            return done   # already installed (or rolled back): say it again
        try:
            key = job.existing_key()
        except AgentError as e:
            update = JobUpdate(job_id=c.job_id, state=FAILED, reason=str(e))
        else:
            job.save_install(c)
            update = self.installer(job, c, key)
        job.save_result(update)
        # whatever the outcome (verified, rolled back, or failed after a write), the touched files go
        # to the collector in the next report, at once
        self.on_installed()
        return update

    def resume_pending(self) -> list[JobUpdate]:
        """Finish the installs the agent was doing when it stopped (or lost the collector): at once, from the
        job directories, without waiting for the collector to send them again. Their updates, to send."""
        jobs_dir = self.config.data_dir / "jobs"
        try:
            names = sorted(p.name for p in jobs_dir.iterdir() if p.is_dir())
        except OSError:
            return []
        out = []
        for name in names:
            try:
                job = self.job(name)
            except AgentError:
                continue
            cmd = job.pending_install()
            if cmd is None or cmd.job_id != name:
                continue
            log.info("job %s: resuming the install into %s that was interrupted", name, cmd.location.path)
            out.append(self.install(cmd))
        return out
