"""Which servicer answers which gRPC service: the registration the server's composition root calls.

The collector serves two listeners (collector/server/server.py): the mutual-TLS one for agents and
the admin CLI (:func:`add_main_services`) and the enrollment one, TLS without client certificates
(:func:`add_enrollment_service`). The composition root makes the servicers; this is the only
place outside the servicers that knows the generated ``*_pb2_grpc`` registration functions.
"""
from __future__ import annotations

import grpc

from certfleet.v1 import (
    admin_pb2_grpc, agent_pb2_grpc, audit_pb2_grpc, discovery_pb2_grpc, governance_pb2_grpc, notify_pb2_grpc,
    policy_pb2_grpc, report_pb2_grpc,
)
from collector.api.admin import AdminServicer
from collector.api.agents import AgentServicer
from collector.api.audit import AuditServicer
from collector.api.enrollment import EnrollmentServicer
from collector.api.governance import GovernanceServicer
from collector.api.netscan import DiscoveryServicer
from collector.api.notify import NotifyServicer
from collector.api.policy import PolicyServicer
from collector.api.reports import ReportServicer


def add_main_services(
    server: grpc.aio.Server, *, agents: AgentServicer, admin: AdminServicer, audit: AuditServicer,
    governance: GovernanceServicer, policy: PolicyServicer, reports: ReportServicer, notify: NotifyServicer,
    netscan: DiscoveryServicer,
) -> None:
    """Every service of the mutual-TLS listener."""
    agent_pb2_grpc.add_AgentServiceServicer_to_server(agents, server)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(admin, server)
    audit_pb2_grpc.add_AuditServiceServicer_to_server(audit, server)
    governance_pb2_grpc.add_GovernanceServiceServicer_to_server(governance, server)
    policy_pb2_grpc.add_PolicyServiceServicer_to_server(policy, server)
    report_pb2_grpc.add_ReportServiceServicer_to_server(reports, server)
    notify_pb2_grpc.add_NotifyServiceServicer_to_server(notify, server)
    discovery_pb2_grpc.add_DiscoveryServiceServicer_to_server(netscan, server)


def add_enrollment_service(server: grpc.aio.Server, enrollment: EnrollmentServicer) -> None:
    """The enrollment listener's one service."""
    agent_pb2_grpc.add_EnrollmentServicer_to_server(enrollment, server)
