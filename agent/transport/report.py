"""The Report RPC: one inventory report streamed in chunks, and the collector's acknowledgement.

The first chunk carries the header; upserts go in chunks of :data:`CHUNK` locations as the
report's stream produces them (the scan is still running); the last chunk carries the
complete set of scan errors and, for a delta, the removals.
"""
from __future__ import annotations

from typing import Iterator

import grpc

from agent.sync import OutgoingReport, ReportAck, SyncError
from agent.transport.channel import describe_rpc_error
from agent.transport.wire import host_out, location_key_out, location_out, problem_out, report_ack_in, timestamp
from certfleet.v1 import agent_pb2, agent_pb2_grpc, common_pb2

__all__ = ["GrpcReports", "chunks", "CHUNK", "REPORT_TIMEOUT"]

CHUNK = 1000            # locations per chunk
REPORT_TIMEOUT = 600.0  # seconds for one whole report


def chunks(report: OutgoingReport) -> Iterator[agent_pb2.ReportChunk]:
    """The chunks of ``report`` as they go on the wire."""
    header = agent_pb2.ReportHeader(
        report_id=report.report_id, full=report.full, sequence=report.sequence,
        base_sequence=report.base_sequence, host=host_out(report.host), scanned_at=timestamp(when=report.scanned_at),
    )
    pending: list[common_pb2.Location] = []
    first = True
    for entry in report.upserts:
        pending.append(location_out(entry))
        if len(pending) >= CHUNK:
            chunk = agent_pb2.ReportChunk(upserts=pending)
            if first:
                chunk.header.CopyFrom(header)
                first = False
            pending = []
            yield chunk
    chunk = agent_pb2.ReportChunk(upserts=pending, removals=[location_key_out(k) for k in report.removals])
    if first:
        chunk.header.CopyFrom(header)
    chunk.errors.extend(problem_out(p, report.scanned_at) for p in report.problems)
    yield chunk


class GrpcReports:
    """A :class:`~agent.sync.ReportSender` over the collector's AgentService.Report."""

    def __init__(self, channel: grpc.Channel, timeout: float = REPORT_TIMEOUT) -> None:
        self.stub = agent_pb2_grpc.AgentServiceStub(channel)
        self.timeout = timeout

    def send(self, report: OutgoingReport) -> ReportAck:
        try:
            ack = self.stub.Report(chunks(report), timeout=self.timeout)
        except grpc.RpcError as e:
            raise SyncError(describe_rpc_error(e)) from None
        return report_ack_in(ack)
