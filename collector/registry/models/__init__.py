"""The registry's tables (SQLAlchemy 2 declarative, typed), one module per concern.

    base         the declarative Base, its naming convention and the shared column types
    inventory    certificates, locations, scan_errors (what agents report)
    agents       agents, enrollment_tokens
    admins       admin_identities
    jobs         jobs, job_events
    owners       owners, assignment_rules, explicit_assignments
    policy       policy_documents, policy_violations, policy_exceptions
    netscans     network_scans
    notify       notices_sent, deliveries
    leases       scheduler_leases
    audit        audit_events, audit_head
    authority    name_grants, name_allows, approvals
    issuer_state ca_hierarchies, ca_issued, ca_revoked, issuer_secrets (issuers' shared state)

These classes describe the schema; the migrations in ``collector/registry/migrations``
create it, and a test checks the two agree. The stores read and write with Core
statements on these tables (bulk, executemany), not object by object; they import the
table from its module (``from collector.registry.models.inventory import certificates``).

This package only gathers the modules, so that ``Base.metadata`` is complete for the
migrations and their check whichever table module was imported first. Each table module
imports ``base`` and SQLAlchemy, nothing else of the project; nothing here imports a store.
"""
from __future__ import annotations

from collector.registry.models import (  # noqa: F401 - imported for Base.metadata
    admins,
    agents,
    audit,
    authority,
    inventory,
    issuer_state,
    jobs,
    leases,
    netscans,
    notify,
    owners,
    policy,
)
from collector.registry.models.base import Base

__all__ = ["Base"]
