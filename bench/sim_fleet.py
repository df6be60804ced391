"""Simulated agents for bench/bench_renewal.py: many agents in one Python process on grpc.aio.

Each ``SimAgent`` is enrolled for real (a single-use token, a key and CSR made
here, the collector's Enrollment RPC) and then speaks the real agent protocol
over mutual TLS with its own identity:

- ``report()``: one full inventory (``AgentService.Report``) of
  ``certs_per_agent`` distinct certificates, one per fake PEM path; nothing is
  read from or written to disk;
- ``serve()``: the command stream (``AgentService.Connect``). PrepareRenewal is
  answered with a real CSR for a new key made here (agent.keys.new_key and
  make_csr, one key per job, reused when the command comes again);
  InstallCertificate is answered with ``verified`` and the SHA-256 of the
  received certificate as the served fingerprint, after checking that the
  certificate is for the job's key and carries the location's names (a
  mismatch is answered ``failed`` and counted).

Every command received is counted per job, so resends and duplicates show.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.protobuf.timestamp_pb2 import Timestamp

from agent.identity import make_key_and_csr
from agent.keys import make_csr, new_key
from certfleet.v1 import agent_pb2, agent_pb2_grpc, common_pb2

PEM = serialization.Encoding.PEM
MAX_MESSAGE = 32 * 1024 * 1024


def ts(when: dt.datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(when)
    return t


@dataclass(frozen=True)
class FakeCert:
    path: str
    names: tuple[str, ...]
    der: bytes

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.der).hexdigest()


def make_inventory(hostname: str, count: int, key: ec.EllipticCurvePrivateKey) -> list[FakeCert]:
    """``count`` distinct self-signed certificates ``<hostname>-<i>.example.test`` (one shared key: cheap)."""
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)
    out = []
    for i in range(count):
        name = f"{hostname}-{i}.example.test"
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(key, hashes.SHA256()))
        out.append(FakeCert(f"/etc/ssl/{hostname}/site-{i}.pem", (name,), cert.public_bytes(serialization.Encoding.DER)))
    return out


async def enroll(enroll_endpoint: str, ca_pem: bytes, token: str, hostname: str) -> "SimAgent":
    """Enroll one simulated agent (a key and CSR made here, a single-use token) and return it."""
    key, csr = make_key_and_csr()
    host = common_pb2.HostInfo(hostname=hostname, os="Linux", os_version="bench", agent_version="bench",
                               addresses=["127.0.0.1"], labels={"environment": "bench"})
    async with grpc.aio.secure_channel(enroll_endpoint, grpc.ssl_channel_credentials(root_certificates=ca_pem)) as ch:
        resp = await agent_pb2_grpc.EnrollmentStub(ch).Enroll(
            agent_pb2.EnrollRequest(token=token, csr_der=csr, host=host), timeout=60)
    key_pem = key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    cert_pem = x509.load_der_x509_certificate(resp.certificate_der).public_bytes(PEM)
    creds = grpc.ssl_channel_credentials(root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem)
    return SimAgent(agent_id=resp.agent_id, hostname=hostname, host=host, endpoint=resp.agent_endpoint, creds=creds)


@dataclass
class SimAgent:
    agent_id: str
    hostname: str
    host: common_pb2.HostInfo
    endpoint: str
    creds: grpc.ChannelCredentials
    inventory: list[FakeCert] = field(default_factory=list)
    commands: Counter = field(default_factory=Counter)            # (job_id, kind) -> times received
    keys: dict = field(default_factory=dict)                      # job_id -> the key made for it
    installed: dict = field(default_factory=dict)                 # job_id -> fingerprint answered as served
    answered: dict = field(default_factory=dict)                  # job_id -> monotonic time of the final answer
    csr_sent_at: dict = field(default_factory=dict)               # job_id -> monotonic time the CSR went up
    turnaround: list = field(default_factory=list)                # seconds from CSR sent to install received
    problems: list = field(default_factory=list)
    channel: grpc.aio.Channel | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    def open(self) -> None:
        self.channel = grpc.aio.secure_channel(self.endpoint, self.creds, options=[
            ("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)])
        self.stub = agent_pb2_grpc.AgentServiceStub(self.channel)

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()

    async def report(self) -> agent_pb2.ReportAck:
        """One full report of the inventory, in one chunk."""
        now = dt.datetime.now(dt.timezone.utc)
        header = agent_pb2.ReportHeader(report_id=str(uuid.uuid4()), full=True, sequence=1, host=self.host,
                                        scanned_at=ts(now), stores_scanned=1, files_scanned=len(self.inventory))
        mtime = ts(now - dt.timedelta(days=10))
        upserts = [common_pb2.Location(
            key=common_pb2.LocationKey(store_type="pem", path=c.path, alias="", chain_index=0),
            certificate_der=c.der, fingerprint_sha256=c.fingerprint, has_private_key=True,
            key_match=common_pb2.KEY_MATCH_MATCHES, entry_type="certificate", file_owner="root",
            file_group="root", file_mode=0o644, file_mtime=mtime, labels={"service": "web"},
        ) for c in self.inventory]

        async def chunks():  # noqa: ANN202
            yield agent_pb2.ReportChunk(header=header, upserts=upserts)

        return await self.stub.Report(chunks(), timeout=120)

    def _answer(self, cmd: agent_pb2.CollectorCommand) -> agent_pb2.JobUpdate | None:
        kind = cmd.WhichOneof("body")
        if kind == "prepare_renewal":
            p = cmd.prepare_renewal
            self.commands[(p.job_id, "prepare")] += 1
            key = self.keys.get(p.job_id)
            if key is None:
                key = self.keys[p.job_id] = new_key(p.key_spec)
            csr = make_csr(key, p.common_name or None, list(p.dns_names), list(p.ip_addresses))
            return agent_pb2.JobUpdate(job_id=p.job_id, state=agent_pb2.JOB_UPDATE_STATE_CSR_READY, csr_der=csr)
        if kind == "install_certificate":
            c = cmd.install_certificate
            self.commands[(c.job_id, "install")] += 1
            if c.job_id in self.csr_sent_at and self.commands[(c.job_id, "install")] == 1:
                self.turnaround.append(time.monotonic() - self.csr_sent_at[c.job_id])
            fp = hashlib.sha256(c.certificate_der).hexdigest()
            reason = self._check_install(c)
            self.answered.setdefault(c.job_id, time.monotonic())
            if reason:
                self.problems.append(f"{self.hostname} job {c.job_id}: {reason}")
                return agent_pb2.JobUpdate(job_id=c.job_id, state=agent_pb2.JOB_UPDATE_STATE_FAILED, reason=reason)
            self.installed[c.job_id] = fp
            step = agent_pb2.JobStep(step="write", ok=True, detail="simulated", seconds=0.0)
            return agent_pb2.JobUpdate(job_id=c.job_id, state=agent_pb2.JOB_UPDATE_STATE_VERIFIED, reason="simulated install",
                                       served_fingerprint=fp, steps=[step])
        self.problems.append(f"{self.hostname}: unexpected command {kind} ({cmd.command_id})")
        return None

    def _check_install(self, c: agent_pb2.InstallCertificate) -> str:
        key = self.keys.get(c.job_id)
        if key is None:
            return "install for a job this host made no key for"
        cert = x509.load_der_x509_certificate(c.certificate_der)
        pub = serialization.PublicFormat.SubjectPublicKeyInfo
        if cert.public_key().public_bytes(serialization.Encoding.DER, pub) != \
                key.public_key().public_bytes(serialization.Encoding.DER, pub):
            return "the issued certificate is not for the key made for this job"
        held = {x.path: x for x in self.inventory}.get(c.location.path)
        if held is None:
            return f"install for an unknown location {c.location.path}"
        if c.expected_old_fingerprint != held.fingerprint:
            return f"expected_old_fingerprint {c.expected_old_fingerprint[:12]} is not what {c.location.path} holds"
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            sans = []
        if tuple(sans) != held.names:
            return f"names {sans} are not the location's {list(held.names)}"
        return ""

    async def serve(self, stop: asyncio.Event) -> None:
        """The command stream, until ``stop`` is set."""
        call = self.stub.Connect()
        await call.write(agent_pb2.AgentMessage(hello=agent_pb2.AgentHello(agent_version="bench", reload_actions=[])))
        self.connected.set()

        async def read() -> None:
            async for cmd in call:
                update = self._answer(cmd)
                if update is not None:
                    await call.write(agent_pb2.AgentMessage(job_update=update))
                    if update.state == "csr_ready":
                        self.csr_sent_at.setdefault(update.job_id, time.monotonic())

        reader = asyncio.create_task(read())
        stopper = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done and not stop.is_set():
                exc = reader.exception()
                self.problems.append(f"{self.hostname}: command stream ended: {exc!r}")
        finally:
            stopper.cancel()
            call.cancel()
            reader.cancel()
            self.connected.clear()
