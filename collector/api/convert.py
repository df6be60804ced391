"""Wire messages to domain values and registry records, and back: the collector's door to the wire.

No logic beyond field mapping. In: what agents send (reports, job updates, scan progress, their
0.1 spelling of a job update's state). Out: agent commands (collector/domain/commands.py) and
what the admin API answers (certificates, agents, jobs, locations).
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

from google.protobuf import json_format, unknown_fields
from google.protobuf.timestamp_pb2 import Timestamp

from certfleet.v1 import admin_pb2, agent_pb2, common_pb2
from collector.domain import commands as cmd
from collector.domain import jobstates as jobs
from collector.domain import netscan
from collector.registry import types as t
from collector.services.inventory import ReportChunkIn

_KEY_MATCH = {
    common_pb2.KEY_MATCH_NO_KEY: "no_key",
    common_pb2.KEY_MATCH_MATCHES: "matches",
    common_pb2.KEY_MATCH_MISMATCH: "mismatch",
    common_pb2.KEY_MATCH_UNKNOWN: "unknown",
}


def ts_to_dt(ts: Timestamp, present: bool = True) -> dt.datetime | None:
    if not present or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.ToDatetime(tzinfo=dt.timezone.utc)


def dt_to_ts(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def host_in(msg: common_pb2.HostInfo) -> t.HostFacts:
    return t.HostFacts(
        hostname=msg.hostname,
        os=msg.os,
        os_version=msg.os_version,
        agent_version=msg.agent_version,
        addresses=tuple(msg.addresses),
        labels=dict(msg.labels),
    )


def report_header_in(h: agent_pb2.ReportHeader) -> t.ReportHeaderIn:
    return t.ReportHeaderIn(
        report_id=h.report_id, full=h.full, sequence=h.sequence, base_sequence=h.base_sequence,
        host=host_in(h.host), scanned_at=ts_to_dt(h.scanned_at, h.HasField("scanned_at")),
        stores_scanned=h.stores_scanned, files_scanned=h.files_scanned,
    )


def report_chunk_in(chunk: agent_pb2.ReportChunk) -> ReportChunkIn:
    return ReportChunkIn(
        header=report_header_in(chunk.header) if chunk.HasField("header") else None,
        upserts=[location_in(m) for m in chunk.upserts],
        removals=[location_key_in(m) for m in chunk.removals],
        errors=[scan_error_in(m) for m in chunk.errors],
    )


def report_ack_out(r: t.ReportResult) -> agent_pb2.ReportAck:
    return agent_pb2.ReportAck(
        stored=r.stored, sequence=r.sequence, resync_required=r.resync_required, message=r.message,
        locations_upserted=r.locations_upserted, locations_removed=r.locations_removed,
        certificates_new=r.certificates_new,
    )


def location_in(msg: common_pb2.Location) -> t.LocationIn:
    return t.LocationIn(
        store_type=msg.key.store_type,
        path=msg.key.path,
        alias=msg.key.alias,
        chain_index=msg.key.chain_index,
        der=msg.certificate_der,
        fingerprint=msg.fingerprint_sha256.lower(),
        has_private_key=msg.has_private_key,
        key_encrypted=msg.key_encrypted,
        key_match=_KEY_MATCH.get(msg.key_match, "unknown" if msg.has_private_key else "no_key"),
        entry_type=msg.entry_type,
        file_owner=msg.file_owner,
        file_group=msg.file_group,
        file_mode=msg.file_mode,
        file_mtime=ts_to_dt(msg.file_mtime, msg.HasField("file_mtime")),
        labels=dict(msg.labels),
        role=msg.role or "service",
        endpoint=_as_dict(msg.endpoint) if msg.HasField("endpoint") else None,
        processes=[_as_dict(p) for p in msg.processes] or None,
        windows=({"entry": _as_dict(msg.windows) if msg.HasField("windows") else None,
                  "iis_bindings": [_as_dict(b) for b in msg.iis_bindings]}
                 if msg.HasField("windows") or msg.iis_bindings else None),
        stale_served_fingerprint=(msg.stale.served_fingerprint.lower() or None) if msg.HasField("stale") else None,
        stale_endpoint=msg.stale.endpoint if msg.HasField("stale") else None,
        stale_detail=({"pid": msg.stale.pid, "process_name": msg.stale.process_name}
                      if msg.HasField("stale") else None),
        stale_since=ts_to_dt(msg.stale.since, msg.stale.HasField("since")) if msg.HasField("stale") else None,
    )


def _as_dict(msg: Any) -> dict[str, Any]:
    """A sub-message as a JSON-safe dict with the proto's field names (defaults included)."""
    return json_format.MessageToDict(msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def location_key_in(msg: common_pb2.LocationKey) -> t.LocationKeyIn:
    return t.LocationKeyIn(store_type=msg.store_type, path=msg.path, alias=msg.alias, chain_index=msg.chain_index)


def scan_error_in(msg: common_pb2.ScanError) -> t.ScanErrorIn:
    return t.ScanErrorIn(
        store_type=msg.store_type,
        path=msg.path,
        alias=msg.alias,
        reason=msg.reason,
        message=msg.message,
        observed_at=ts_to_dt(msg.observed_at, msg.HasField("observed_at")),
    )


def location_out(view: t.LocationView) -> admin_pb2.LocationInfo:
    return admin_pb2.LocationInfo(
        agent_id=view.agent_id,
        hostname=view.hostname,
        store_type=view.store_type,
        path=view.path,
        alias=view.alias,
        chain_index=view.chain_index,
        has_private_key=view.has_private_key,
        key_encrypted=view.key_encrypted,
        key_match=view.key_match,
        status=view.status,
        first_seen=dt_to_ts(view.first_seen),
        last_seen=dt_to_ts(view.last_seen),
        removed_at=dt_to_ts(view.removed_at),
        file_owner=view.file_owner,
        file_group=view.file_group,
        file_mode=view.file_mode,
        file_mtime=dt_to_ts(view.file_mtime),
        labels=view.labels,
        entry_type=view.entry_type,
        role=view.role or "service",
        endpoint=_msg(common_pb2.EndpointInfo, view.endpoint),
        processes=[_msg(common_pb2.ProcessLink, p) for p in view.processes],
        stale=(common_pb2.StaleService(
            endpoint=view.stale_endpoint or "", served_fingerprint=view.stale_served_fingerprint,
            pid=int((view.stale_detail or {}).get("pid") or 0),
            process_name=str((view.stale_detail or {}).get("process_name") or ""),
            since=dt_to_ts(view.stale_since)) if view.stale_served_fingerprint else None),
        windows=_msg(common_pb2.WindowsStoreEntry, (view.windows or {}).get("entry")),
        iis_bindings=[_msg(common_pb2.IisBinding, b) for b in (view.windows or {}).get("iis_bindings") or ()],
    )


def _msg(cls: Any, value: dict[str, Any] | None) -> Any:
    """A sub-message back from the dict ``_as_dict`` stored (None for none); unknown keys (a newer
    agent's) are ignored."""
    if not value:
        return None
    return json_format.ParseDict(value, cls(), ignore_unknown_fields=True)


def certificate_out(view: t.CertificateView) -> admin_pb2.CertificateInfo:
    return admin_pb2.CertificateInfo(
        fingerprint_sha256=view.fingerprint,
        subject=view.subject,
        issuer=view.issuer,
        serial=view.serial,
        sans=[admin_pb2.SubjectAltName(type=s.type, value=s.value) for s in view.sans],
        not_before=dt_to_ts(view.not_before),
        not_after=dt_to_ts(view.not_after),
        key_type=view.key_type,
        key_size=view.key_size,
        key_curve=view.key_curve,
        signature_algorithm=view.signature_algorithm,
        is_ca=view.is_ca,
        self_signed=view.self_signed,
        key_usage=list(view.key_usage),
        extended_key_usage=list(view.extended_key_usage),
        issuer_fingerprint_sha256=view.issuer_fingerprint,
        der=view.der,
        locations=[location_out(loc) for loc in view.locations],
    )


def agent_out(view: t.AgentView) -> admin_pb2.AgentInfo:
    return admin_pb2.AgentInfo(
        agent_id=view.agent_id,
        hostname=view.hostname,
        os=view.os,
        os_version=view.os_version,
        agent_version=view.agent_version,
        addresses=list(view.addresses),
        first_seen=dt_to_ts(view.first_seen),
        last_seen=dt_to_ts(view.last_seen),
        status=view.status,
        identity_not_after=dt_to_ts(view.identity_not_after),
        last_sequence=view.last_sequence,
        location_count=view.location_count,
        errors=[
            admin_pb2.AgentScanError(
                store_type=e.store_type, path=e.path, alias=e.alias, reason=e.reason,
                message=e.message, observed_at=dt_to_ts(e.observed_at),
            )
            for e in view.errors
        ],
        labels=view.labels,
        reported_hostname=view.reported_hostname,
        admin_labels={k: str(v) for k, v in view.admin_labels.items()},
    )


def job_out(view: t.JobView) -> admin_pb2.JobInfo:
    return admin_pb2.JobInfo(
        job_id=view.job_id,
        kind=view.kind,
        agent_id=view.agent_id,
        hostname=view.hostname,
        store_type=view.store_type,
        path=view.path,
        alias=view.alias,
        chain_index=view.chain_index,
        old_fingerprint=view.old_fingerprint,
        new_fingerprint=view.new_fingerprint,
        template=view.template,
        state=view.state,
        reason=view.events[-1].reason if view.events else view.reason,
        attempts=view.attempts,
        created_at=dt_to_ts(view.created_at),
        updated_at=dt_to_ts(view.updated_at),
        deadline=dt_to_ts(view.deadline),
        finished_at=dt_to_ts(view.finished_at),
        requested_by=view.requested_by,
        served_fingerprint=view.served_fingerprint,
        events=[
            admin_pb2.JobEventInfo(at=dt_to_ts(e.at), from_state=e.from_state, to_state=e.to_state, reason=e.reason,
                                   actor=e.actor)
            for e in view.events
        ],
        result_detail=_install_result(view.result_detail),
        suggested_reload=_reload_suggestion(view.suggested_reload),
    )


def _install_result(detail: Any) -> str:
    """The agent's install steps as JSON ("" before it reported); the reload suggestion has its own field."""
    if isinstance(detail, dict):
        detail = {k: v for k, v in detail.items() if k != "suggested_reload"} or None
    return json.dumps(detail) if detail is not None else ""


def _reload_suggestion(hint: Any) -> admin_pb2.ReloadSuggestion | None:
    if hint is None:
        return None
    return admin_pb2.ReloadSuggestion(action=hint.action, process=hint.process, pid=hint.pid, service=hint.service)


_JOB_UPDATE_STATES = {
    agent_pb2.JOB_UPDATE_STATE_CSR_READY: jobs.CSR_READY,
    agent_pb2.JOB_UPDATE_STATE_INSTALLING: jobs.INSTALLING,
    agent_pb2.JOB_UPDATE_STATE_VERIFIED: jobs.VERIFIED,
    agent_pb2.JOB_UPDATE_STATE_ROLLED_BACK: jobs.ROLLED_BACK,
    agent_pb2.JOB_UPDATE_STATE_FAILED: jobs.FAILED,
    agent_pb2.JOB_UPDATE_STATE_CHALLENGE_READY: jobs.CHALLENGE_READY,
    agent_pb2.JOB_UPDATE_STATE_CHALLENGE_FAILED: jobs.CHALLENGE_FAILED,
}
#: JobUpdate's field 2, reserved since the enum: agents before 0.2 sent the state there as text
_LEGACY_STATE_FIELD = 2


def _legacy_state(msg: agent_pb2.JobUpdate) -> str:
    for field in unknown_fields.UnknownFieldSet(msg):
        if field.field_number == _LEGACY_STATE_FIELD and isinstance(field.data, bytes):
            text = field.data.decode("utf-8", "replace")
            return text if text in jobs.AGENT_STATES else ""
    return ""


def job_update_in(msg: agent_pb2.JobUpdate) -> jobs.AgentJobUpdate:
    """An agent's JobUpdate; from an agent before 0.2 the state comes from the old text field."""
    state = _JOB_UPDATE_STATES.get(msg.state, "") or _legacy_state(msg)
    return jobs.AgentJobUpdate(
        job_id=msg.job_id, state=state, reason=msg.reason, csr_der=bytes(msg.csr_der),
        served_fingerprint=msg.served_fingerprint,
        steps=tuple(jobs.InstallStep(s.step, s.ok, s.detail, s.seconds) for s in msg.steps),
        reload_seconds=msg.reload_seconds, challenge_token=msg.challenge_token, verified_by=msg.verified_by,
    )


def scan_progress_in(p: agent_pb2.NetworkScanProgress) -> netscan.Progress:
    return netscan.Progress(state=p.state, targets_total=p.targets_total, probed=p.probed, tls_found=p.tls_found,
                            errors=p.errors, reason=p.reason)


# -- commands to an agent ------------------------------------------------------------------


def _location_key_out(k: cmd.LocationKey) -> common_pb2.LocationKey:
    return common_pb2.LocationKey(store_type=k.store_type, path=k.path, alias=k.alias, chain_index=k.chain_index)


def command_out(c: cmd.Command) -> agent_pb2.CollectorCommand:
    """A command (collector/domain/commands.py) as the CollectorCommand the agent reads."""
    if isinstance(c, cmd.PrepareRenewal):
        return agent_pb2.CollectorCommand(command_id=c.command_id, prepare_renewal=agent_pb2.PrepareRenewal(
            job_id=c.job_id, location=_location_key_out(c.location), key_spec=c.key_spec,
            common_name=c.common_name, dns_names=list(c.dns_names), ip_addresses=list(c.ip_addresses)))
    if isinstance(c, cmd.InstallCertificate):
        return agent_pb2.CollectorCommand(command_id=c.command_id, install_certificate=agent_pb2.InstallCertificate(
            job_id=c.job_id, location=_location_key_out(c.location), certificate_der=c.certificate_der,
            chain_der=list(c.chain_der), expected_old_fingerprint=c.expected_old_fingerprint,
            trust_anchor_der=c.trust_anchor_der))
    if isinstance(c, cmd.PlaceChallenge):
        return agent_pb2.CollectorCommand(command_id=c.command_id, place_challenge=agent_pb2.PlaceChallenge(
            job_id=c.job_id, location=_location_key_out(c.location), token=c.token,
            key_authorization=c.key_authorization, domain=c.domain))
    if isinstance(c, cmd.RemoveChallenge):
        return agent_pb2.CollectorCommand(command_id=c.command_id, remove_challenge=agent_pb2.RemoveChallenge(
            job_id=c.job_id, location=_location_key_out(c.location), token=c.token))
    if isinstance(c, cmd.NetworkScan):
        return agent_pb2.CollectorCommand(command_id=c.command_id, network_scan=agent_pb2.NetworkScan(
            scan_id=c.scan_id, targets=list(c.targets), ports=list(c.ports), rate_per_second=c.rate_per_second,
            timeout_seconds=c.timeout_seconds, concurrency=c.concurrency, sni_names=list(c.sni_names),
            starttls=dict(c.starttls), max_addresses=c.max_addresses))
    raise TypeError(f"no wire form for {type(c).__name__}")
