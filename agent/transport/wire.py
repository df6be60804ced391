"""Domain <-> wire: the agent's dataclasses and the certfleet.v1 messages, converted in one place.

Out: locations (:class:`~agent.inventory.FoundCert`), scan problems, host facts, job
updates, network scan progress. In: the collector's commands, report acknowledgements.
What comes in is untrusted input: ids and paths are checked where they are used
(:mod:`agent.commands`), never here.
"""
from __future__ import annotations

import datetime as dt

from google.protobuf import unknown_fields
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from agent.host import HostFacts
from agent.inventory import MATCHES, MISMATCH, NO_KEY, UNKNOWN, FoundCert, LocationKey, ScanProblem
from agent.jobs import (CHALLENGE_FAILED, CHALLENGE_READY, CSR_READY, FAILED, INSTALLING, JOB_STATES, ROLLED_BACK,
                        VERIFIED, Command, InstallCertificate, JobStep, JobUpdate, PlaceChallenge, PrepareRenewal,
                        RemoveChallenge, RequestFullReport, UnknownCommand)
from agent.netscan.plan import ScanRequest
from agent.netscan.records import ScanProgress
from agent.sync import ReportAck
from certfleet.v1 import agent_pb2, common_pb2

__all__ = [
    "location_out", "location_key_out", "location_key_in", "problem_out", "host_out", "job_update_out",
    "job_update_in", "job_update_from_legacy_bytes", "command_in", "scan_request_in", "scan_progress_out",
    "report_ack_in", "timestamp",
]

_KEY_MATCH = {
    NO_KEY: common_pb2.KEY_MATCH_NO_KEY,
    MATCHES: common_pb2.KEY_MATCH_MATCHES,
    MISMATCH: common_pb2.KEY_MATCH_MISMATCH,
    UNKNOWN: common_pb2.KEY_MATCH_UNKNOWN,
}
_STATE_OUT = {
    CSR_READY: agent_pb2.JOB_UPDATE_STATE_CSR_READY,
    INSTALLING: agent_pb2.JOB_UPDATE_STATE_INSTALLING,
    VERIFIED: agent_pb2.JOB_UPDATE_STATE_VERIFIED,
    ROLLED_BACK: agent_pb2.JOB_UPDATE_STATE_ROLLED_BACK,
    FAILED: agent_pb2.JOB_UPDATE_STATE_FAILED,
    CHALLENGE_READY: agent_pb2.JOB_UPDATE_STATE_CHALLENGE_READY,
    CHALLENGE_FAILED: agent_pb2.JOB_UPDATE_STATE_CHALLENGE_FAILED,
}
_STATE_IN = {v: k for k, v in _STATE_OUT.items()}
#: JobUpdate's field 2, reserved since the enum: agents before 0.2 wrote the state there as text
_LEGACY_STATE_FIELD = 2


def timestamp(seconds: float | None = None, when: dt.datetime | None = None) -> Timestamp:
    t = Timestamp()
    if when is not None:
        t.FromDatetime(when)
    elif seconds is not None:
        t.FromNanoseconds(int(seconds * 1e9))
    return t


# --------------------------------------------------------------------------- reports

def location_key_out(k: LocationKey) -> common_pb2.LocationKey:
    return common_pb2.LocationKey(store_type=k.store_type, path=k.path, alias=k.alias, chain_index=k.chain_index)


def location_key_in(k: common_pb2.LocationKey) -> LocationKey:
    return LocationKey(k.store_type, k.path, k.alias, k.chain_index)


def location_out(c: FoundCert) -> common_pb2.Location:
    k = c.key
    msg = common_pb2.Location(
        key=common_pb2.LocationKey(store_type=k.store_type, path=k.path, alias=k.alias, chain_index=k.chain_index),
        certificate_der=c.der,
        fingerprint_sha256=c.fingerprint,
        has_private_key=c.has_private_key,
        key_encrypted=c.key_encrypted,
        key_match=_KEY_MATCH.get(c.key_match, common_pb2.KEY_MATCH_UNSPECIFIED),
        entry_type=c.entry_type,
        file_owner=c.file_owner,
        file_group=c.file_group,
        file_mode=c.file_mode,
        file_mtime=timestamp(seconds=c.file_mtime),
        labels=dict(c.labels),
        role=c.role,
        processes=[common_pb2.ProcessLink(
            pid=p.pid, name=p.name, executable=p.executable, user=p.user, service=p.service, listen=list(p.listen),
            evidence=p.evidence, config_path=p.config_path, suggested_reload=p.suggested_reload,
        ) for p in c.processes],
        iis_bindings=[common_pb2.IisBinding(
            site=b.site, protocol=b.protocol, ip=b.ip, port=b.port, host_name=b.host_name, sni=b.sni,
            certificate_hash=b.certificate_hash, store_name=b.store_name,
        ) for b in c.iis_bindings],
    )
    if c.endpoint is not None:
        e = c.endpoint
        msg.endpoint.CopyFrom(common_pb2.EndpointInfo(
            host=e.host, port=e.port, sni=e.sni, protocol=e.protocol, cipher=e.cipher, starttls=e.starttls,
            chain_valid=e.chain_valid, validation_error=e.validation_error,
            chain_fingerprints=list(e.chain_fingerprints), source=e.source, scan_id=e.scan_id,
            handshake_seconds=e.handshake_seconds, scan_ids=list(e.scan_ids),
        ))
    if c.stale is not None:
        st = c.stale
        msg.stale.CopyFrom(common_pb2.StaleService(
            endpoint=st.endpoint, served_fingerprint=st.served_fingerprint, pid=st.pid,
            process_name=st.process_name, since=timestamp(seconds=st.since),
        ))
    if c.windows is not None:
        w = c.windows
        msg.windows.CopyFrom(common_pb2.WindowsStoreEntry(
            store_location=w.store_location, store_name=w.store_name, thumbprint=w.thumbprint,
            friendly_name=w.friendly_name, key_exportable=w.key_exportable, key_provider=w.key_provider,
            key_container=w.key_container,
        ))
    return msg


def problem_out(p: ScanProblem, now: dt.datetime) -> common_pb2.ScanError:
    return common_pb2.ScanError(
        store_type=p.store_type, path=p.path, alias=p.alias, reason=p.reason, message=p.message,
        observed_at=timestamp(when=now),
    )


def host_out(h: HostFacts) -> common_pb2.HostInfo:
    return common_pb2.HostInfo(hostname=h.hostname, os=h.os, os_version=h.os_version, agent_version=h.agent_version,
                               addresses=list(h.addresses), labels=dict(h.labels))


def report_ack_in(ack: agent_pb2.ReportAck) -> ReportAck:
    return ReportAck(stored=ack.stored, sequence=ack.sequence, resync_required=ack.resync_required,
                     message=ack.message, locations_upserted=ack.locations_upserted,
                     locations_removed=ack.locations_removed, certificates_new=ack.certificates_new)


# --------------------------------------------------------------------------- the command stream

def scan_request_in(s: agent_pb2.NetworkScan) -> ScanRequest:
    return ScanRequest(scan_id=s.scan_id, targets=tuple(s.targets), ports=tuple(s.ports),
                       rate_per_second=s.rate_per_second, timeout_seconds=s.timeout_seconds,
                       concurrency=s.concurrency, sni_names=tuple(s.sni_names), starttls=dict(s.starttls),
                       max_addresses=s.max_addresses)


def command_in(cmd: agent_pb2.CollectorCommand) -> Command:
    """The collector's command as the agent's dataclass (UnknownCommand for one this agent does not know)."""
    kind = cmd.WhichOneof("body")
    if kind == "prepare_renewal":
        p = cmd.prepare_renewal
        return PrepareRenewal(job_id=p.job_id, location=location_key_in(p.location), key_spec=p.key_spec,
                              common_name=p.common_name, dns_names=tuple(p.dns_names),
                              ip_addresses=tuple(p.ip_addresses))
    if kind == "install_certificate":
        c = cmd.install_certificate
        return InstallCertificate(job_id=c.job_id, location=location_key_in(c.location),
                                  certificate_der=bytes(c.certificate_der), chain_der=tuple(bytes(d) for d in c.chain_der),
                                  expected_old_fingerprint=c.expected_old_fingerprint,
                                  trust_anchor_der=bytes(c.trust_anchor_der))
    if kind == "place_challenge":
        c = cmd.place_challenge
        return PlaceChallenge(job_id=c.job_id, location=location_key_in(c.location), token=c.token,
                              key_authorization=c.key_authorization, domain=c.domain)
    if kind == "remove_challenge":
        c = cmd.remove_challenge
        return RemoveChallenge(job_id=c.job_id, location=location_key_in(c.location), token=c.token)
    if kind == "request_full_report":
        return RequestFullReport()
    if kind == "network_scan":
        return scan_request_in(cmd.network_scan)
    return UnknownCommand(cmd.command_id)


def job_update_out(u: JobUpdate) -> agent_pb2.JobUpdate:
    return agent_pb2.JobUpdate(
        job_id=u.job_id, state=_STATE_OUT.get(u.state, agent_pb2.JOB_UPDATE_STATE_UNSPECIFIED), reason=u.reason,
        csr_der=u.csr_der, served_fingerprint=u.served_fingerprint, reload_seconds=u.reload_seconds,
        challenge_token=u.challenge_token, verified_by=u.verified_by,
        steps=[agent_pb2.JobStep(step=s.step, ok=s.ok, detail=s.detail, seconds=s.seconds) for s in u.steps],
    )


def _legacy_state(msg: agent_pb2.JobUpdate) -> str:
    for field in unknown_fields.UnknownFieldSet(msg):
        if field.field_number == _LEGACY_STATE_FIELD and isinstance(field.data, bytes):
            text = field.data.decode("utf-8", "replace")
            return text if text in JOB_STATES else ""
    return ""


def job_update_in(msg: agent_pb2.JobUpdate) -> JobUpdate:
    """A wire JobUpdate as the dataclass; the state from the enum, else from the text field of agents before 0.2."""
    return JobUpdate(
        job_id=msg.job_id, state=_STATE_IN.get(msg.state, "") or _legacy_state(msg), reason=msg.reason,
        csr_der=bytes(msg.csr_der), served_fingerprint=msg.served_fingerprint,
        steps=tuple(JobStep(s.step, s.ok, s.detail, s.seconds) for s in msg.steps),
        reload_seconds=msg.reload_seconds, challenge_token=msg.challenge_token, verified_by=msg.verified_by,
    )


def job_update_from_legacy_bytes(data: bytes) -> JobUpdate:
    """A job's ``result.json`` as an agent before this one wrote it: the wire JobUpdate's protobuf bytes.

    Raises ValueError when the bytes are not such a message (or name no state).
    """
    msg = agent_pb2.JobUpdate()
    try:
        msg.ParseFromString(data)
    except DecodeError as e:
        raise ValueError(f"not a JobUpdate message ({e})") from None
    update = job_update_in(msg)
    if not update.job_id or update.state not in JOB_STATES:
        raise ValueError("not a JobUpdate message (no job id or no state)")
    return update


def scan_progress_out(p: ScanProgress) -> agent_pb2.NetworkScanProgress:
    return agent_pb2.NetworkScanProgress(scan_id=p.scan_id, state=p.state, targets_total=p.targets_total,
                                         probed=p.probed, tls_found=p.tls_found, errors=p.errors, reason=p.reason)
