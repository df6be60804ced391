"""Owners' rows as the records of ``collector.domain.ownership`` (``Owner``, ``Rule``,
``Explicit``), the SELECTs that read them with their owner's name, and the details their
changes are audited with. Shared by the owner store and the expiry reads; no transactions,
no decisions."""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from collector.domain import ownership as own
from collector.domain.outbound import redact_url
from collector.registry.models.agents import agents
from collector.registry.models.owners import assignment_rules, explicit_assignments, owners


def rules_select() -> Any:
    """SELECT of assignment rules with their owner's name."""
    r = assignment_rules
    return (select(r, owners.c.name.label("owner_name"))
            .select_from(r.outerjoin(owners, owners.c.id == r.c.owner_id)))


def owner_view(r: Any) -> own.Owner:
    return own.Owner(
        name=r.name, contacts=tuple(r.contacts or ()), webhook=r.webhook, escalation=r.escalation,
        description=r.description, created_at=r.created_at, updated_at=r.updated_at,
    )


def rule_view(r: Any) -> own.Rule:
    return own.Rule(
        name=r.name, priority=r.priority, owner=r.owner_name or "", environment=r.environment,
        criticality=r.criticality, service=r.service, host=r.host_glob, path=r.path_glob, san=r.san_glob,
        issuer=r.issuer_contains, labels=dict(r.labels or {}), description=r.description, created_by=r.created_by,
        created_at=r.created_at, updated_at=r.updated_at,
    )


def explicit_view(r: Any) -> own.Explicit:
    return own.Explicit(
        scope=r.scope, fingerprint=r.fingerprint or "", agent_id=r.agent_id or "", store_type=r.store_type,
        path=r.path, alias=r.alias, owner=r.owner_name or "", environment=r.environment, criticality=r.criticality,
        service=r.service, reason=r.reason, assigned_by=r.assigned_by, hostname=getattr(r, "hostname", "") or "",
        created_at=r.created_at, updated_at=r.updated_at,
    )


def explicit_select() -> Any:
    """SELECT of explicit assignments with their owner's name and their agent's hostname."""
    e = explicit_assignments
    return (select(e, owners.c.name.label("owner_name"), agents.c.hostname)
            .select_from(e.outerjoin(owners, owners.c.id == e.c.owner_id)
                         .outerjoin(agents, agents.c.agent_id == e.c.agent_id)))


def owner_detail(o: own.Owner) -> dict[str, Any]:
    # the webhook's path and query often hold a secret: the audit trail keeps scheme and host only
    return {"name": o.name, "contacts": list(o.contacts), "webhook": redact_url(o.webhook), "escalation": o.escalation,
            "description": o.description}


def rule_detail(r: own.Rule) -> dict[str, Any]:
    return {"name": r.name, "priority": r.priority, "sets": r.sets(), "when": r.conditions()}
