"""The agent's command stream: it dials the collector and keeps the stream open.

Commands are idempotent here: a PrepareRenewal resent after a reconnect reuses
the key already made for that job (a new CSR for the same key), and an
InstallCertificate for a job that already finished resends the recorded result.
Per-job state lives in ``<data_dir>/jobs/<job_id>/`` (the key, mode 0600, and
the result), so a restart of the agent loses nothing either.
"""
from __future__ import annotations

import dataclasses
import logging
import pathlib
import queue
import random
import re
import threading
from typing import Callable, Iterator

import grpc

from agent import __version__
from agent.config import AgentConfig
from agent.errors import AgentError
from agent.fsutil import atomic_write
from agent.inventory import LocationKey
from agent.keys import load_pem_private_key, make_csr, new_key, private_key_pem
from agent.netscan.records import ScanProgress
from certfleet.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger(__name__)
_JOB_ID = re.compile(r"^[A-Za-z0-9-]{8,64}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,256}$")   # base64url, as RFC 8555 requires: no path can hide in it


class JobDir:
    """Files of one renewal job on this host."""

    def __init__(self, data_dir: pathlib.Path, job_id: str) -> None:
        if not _JOB_ID.match(job_id):
            raise AgentError(f"refusing a job id that is not an id: {job_id!r}")
        self.path = data_dir / "jobs" / job_id

    @property
    def key_path(self) -> pathlib.Path:
        return self.path / "key.pem"

    @property
    def result_path(self) -> pathlib.Path:
        return self.path / "result.json"

    def key(self, spec: str):  # noqa: ANN201
        """The job's key: made once, reused when the command comes again."""
        if self.key_path.exists():
            return load_pem_private_key(self.key_path.read_bytes())
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = new_key(spec)
        atomic_write(self.key_path, private_key_pem(key), 0o600)
        return key

    def existing_key(self):  # noqa: ANN201
        if not self.key_path.exists():
            raise AgentError("no key was made on this host for this job (was the agent's data directory reset?)")
        return load_pem_private_key(self.key_path.read_bytes())

    def save_result(self, update: agent_pb2.JobUpdate) -> None:
        self.result_path.write_bytes(update.SerializeToString())
        if update.state == agent_pb2.JOB_UPDATE_STATE_VERIFIED:
            # The key now lives in the store; the job's copy is no longer needed.
            try:
                self.key_path.unlink()
            except FileNotFoundError:
                pass

    def result(self) -> agent_pb2.JobUpdate | None:
        if not self.result_path.exists():
            return None
        u = agent_pb2.JobUpdate()
        u.ParseFromString(self.result_path.read_bytes())
        return u


class CommandHandler:
    """Turns commands into job updates. Install work is delegated to ``installer``."""

    def __init__(self, config: AgentConfig, installer: Callable[..., agent_pb2.JobUpdate],
                 on_installed: Callable[[], None] | None = None) -> None:
        self.config = config
        self.installer = installer
        self.on_installed = on_installed or (lambda: None)
        self.full_report_requested = threading.Event()
        self.network_scans = None   # agent.netscan.runner.NetworkScans, set by the service (runs scans off this thread)

    def handle(self, cmd: agent_pb2.CollectorCommand) -> list[agent_pb2.JobUpdate]:
        kind = cmd.WhichOneof("body")
        if kind == "prepare_renewal":
            return [self.prepare(cmd.prepare_renewal)]
        if kind == "install_certificate":
            return [self.install(cmd.install_certificate)]
        if kind == "place_challenge":
            return [self.place_challenge(cmd.place_challenge)]
        if kind == "remove_challenge":
            self.remove_challenge(cmd.remove_challenge)
            return []
        if kind == "request_full_report":
            self.full_report_requested.set()
            return []
        if kind == "network_scan":
            if self.network_scans is None:
                log.warning("network scan %s ignored: this agent runs scans only as a service", cmd.network_scan.scan_id)
            else:
                self.network_scans.submit(cmd.network_scan)   # progress goes out through CommandStream.send
            return []
        log.warning("ignoring unknown command %s", cmd.command_id)
        return []

    def prepare(self, p: agent_pb2.PrepareRenewal) -> agent_pb2.JobUpdate:
        job = JobDir(self.config.data_dir, p.job_id)
        try:
            key = job.key(p.key_spec)
            csr = make_csr(key, p.common_name or None, list(p.dns_names), list(p.ip_addresses))
        except AgentError as e:
            return agent_pb2.JobUpdate(job_id=p.job_id, state=agent_pb2.JOB_UPDATE_STATE_FAILED, reason=f"key or CSR: {e}")
        log.info("job %s: new %s key made on this host, CSR sent", p.job_id, p.key_spec)
        return agent_pb2.JobUpdate(job_id=p.job_id, state=agent_pb2.JOB_UPDATE_STATE_CSR_READY, csr_der=csr)

    def _challenge_file(self, location: agent_pb2.LocationKey, token: str) -> pathlib.Path:
        if not _TOKEN.match(token):
            raise AgentError("the ACME token has characters a token cannot have")
        loc = LocationKey(location.store_type, location.path, location.alias, location.chain_index)
        store = self.config.store_for(loc.path)
        if store is None:
            raise AgentError(f"{loc.path} is not in any store of this agent's configuration")
        if not store.acme_webroot:
            raise AgentError(f"store {store.name!r} has no acme_webroot: this host cannot answer http-01 challenges")
        return pathlib.Path(store.acme_webroot) / ".well-known" / "acme-challenge" / token

    def place_challenge(self, c: agent_pb2.PlaceChallenge) -> agent_pb2.JobUpdate:
        """Write the key authorization where the web server serves /.well-known/acme-challenge/."""
        try:
            path = self._challenge_file(c.location, c.token)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            atomic_write(path, c.key_authorization.encode(), 0o644)
        except (AgentError, OSError) as e:
            why = str(e) if isinstance(e, AgentError) else f"cannot write the challenge file: {e.strerror}"
            log.warning("job %s: http-01 challenge for %s not placed: %s", c.job_id, c.domain, why)
            return agent_pb2.JobUpdate(job_id=c.job_id, state=agent_pb2.JOB_UPDATE_STATE_CHALLENGE_FAILED, reason=why, challenge_token=c.token)
        log.info("job %s: http-01 challenge for %s placed at %s", c.job_id, c.domain, path)
        return agent_pb2.JobUpdate(job_id=c.job_id, state=agent_pb2.JOB_UPDATE_STATE_CHALLENGE_READY, challenge_token=c.token)

    def remove_challenge(self, c: agent_pb2.RemoveChallenge) -> None:
        try:
            self._challenge_file(c.location, c.token).unlink()
        except FileNotFoundError:
            pass
        except (AgentError, OSError) as e:
            log.warning("job %s: challenge file not removed: %s", c.job_id, e)

    def install(self, c: agent_pb2.InstallCertificate) -> agent_pb2.JobUpdate:
        job = JobDir(self.config.data_dir, c.job_id)
        done = job.result()
        if done is not None:
            return done   # already installed (or rolled back): say it again
        try:
            key = job.existing_key()
        except AgentError as e:
            update = agent_pb2.JobUpdate(job_id=c.job_id, state=agent_pb2.JOB_UPDATE_STATE_FAILED, reason=str(e))
        else:
            update = self.installer(job, c, key)
        job.save_result(update)
        if update.state in (agent_pb2.JOB_UPDATE_STATE_VERIFIED, agent_pb2.JOB_UPDATE_STATE_ROLLED_BACK):
            self.on_installed()
        return update


class CommandStream:
    """Keeps the stream to the collector open, with backoff and jitter between attempts."""

    def __init__(self, channel_factory: Callable[[], grpc.Channel], handler: CommandHandler,
                 reload_actions: list[str], rng: random.Random | None = None) -> None:
        self.channel_factory = channel_factory
        self.handler = handler
        self.reload_actions = reload_actions
        self.rng = rng or random.Random()
        self.connected = threading.Event()
        self._out: queue.Queue[agent_pb2.AgentMessage | None] | None = None

    def send(self, msg: agent_pb2.AgentMessage | ScanProgress) -> bool:
        """Send a message on the open stream from any thread; False when not connected (it is dropped)."""
        if isinstance(msg, ScanProgress):
            msg = agent_pb2.AgentMessage(scan_progress=agent_pb2.NetworkScanProgress(**dataclasses.asdict(msg)))
        out = self._out
        if out is None:
            return False
        out.put(msg)
        return True

    def _outgoing(self, out: "queue.Queue[agent_pb2.AgentMessage | None]") -> Iterator[agent_pb2.AgentMessage]:
        yield agent_pb2.AgentMessage(hello=agent_pb2.AgentHello(agent_version=__version__,
                                                               reload_actions=self.reload_actions))
        while True:
            msg = out.get()
            if msg is None:
                return
            yield msg

    def run_once(self, stop: threading.Event) -> None:
        """One connection, until it drops or ``stop`` is set."""
        out: queue.Queue[agent_pb2.AgentMessage | None] = queue.Queue()
        channel = self.channel_factory()
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        call = stub.Connect(self._outgoing(out))
        stopper = threading.Thread(target=lambda: (stop.wait(), call.cancel()), daemon=True)
        stopper.start()
        try:
            self._out = out
            self.connected.set()
            for cmd in call:
                for update in self.handler.handle(cmd):
                    out.put(agent_pb2.AgentMessage(job_update=update))
        finally:
            self._out = None
            self.connected.clear()
            out.put(None)
            channel.close()

    def run_forever(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                self.run_once(stop)
                failures = 0
            except grpc.RpcError as e:
                if stop.is_set():
                    break
                failures += 1
                log.warning("command stream lost (%s): %s", e.code().name if hasattr(e, "code") else "error",
                            e.details() if hasattr(e, "details") else e)
            except Exception:  # noqa: BLE001 - the stream must come back
                failures += 1
                log.exception("command stream failed")
            cap = min(60.0, 1.0 * 2 ** min(failures, 6))
            stop.wait(self.rng.uniform(cap / 2, cap) if failures else 0.5)
