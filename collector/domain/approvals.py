"""The approval policy: what makes an issuance atypical, as data (``[approvals]``), decided purely.

Issuance that is not authorized (collector/domain/authority.py) always waits for an approver; on
top of that the policy calls a request atypical, each with a reason:

- its template is listed in ``always_templates`` (``approval = "always"`` for that template);
- ``wildcards``: it names a wildcard (``*.shop.example.com``);
- ``longer_validity``: it asks for a validity above the template's default;
- ``new_names``: it names a name never issued before (by certfleet);
- ``owner_outside_grants``: the owner role asks for a name outside its team's grants.

``expire_after`` is how long an approval waits (default 7 days); ``trust_on_first_sight`` (a pilot
setting, off by default, warned about at start-up) treats unheld names as authorized.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Iterable

__all__ = ["ApprovalPolicy", "RequestShape", "atypical"]


@dataclass(frozen=True)
class ApprovalPolicy:
    always_templates: frozenset[str] = frozenset()
    wildcards: bool = False
    longer_validity: bool = True
    new_names: bool = False
    owner_outside_grants: bool = True
    expire_after: dt.timedelta = dt.timedelta(days=7)
    trust_on_first_sight: bool = False


@dataclass(frozen=True)
class RequestShape:
    """The facts of one issuance request the policy looks at."""

    template: str
    names: tuple[str, ...]
    validity: dt.timedelta | None = None
    default_validity: dt.timedelta | None = None
    never_issued: tuple[str, ...] = ()
    by_owner_role: bool = False
    outside_team_grants: tuple[str, ...] = field(default=())


def atypical(policy: ApprovalPolicy, req: RequestShape) -> list[str]:
    """Why ``req`` needs an approval under ``policy`` (empty: it is a standard request)."""
    out: list[str] = []
    if req.template in policy.always_templates:
        out.append(f"template {req.template} always needs an approval")
    if policy.wildcards:
        wild = [n for n in req.names if n.startswith("*.")]
        if wild:
            out.append("wildcard name(s): " + ", ".join(wild))
    if (policy.longer_validity and req.validity is not None and req.default_validity is not None
            and req.validity > req.default_validity):
        out.append(f"validity {req.validity} is above the template's default {req.default_validity}")
    if policy.new_names and req.never_issued:
        out.append("never issued before: " + ", ".join(req.never_issued))
    if policy.owner_outside_grants and req.by_owner_role and req.outside_team_grants:
        out.append("requested by the owner role for name(s) outside its team's grants: "
                   + ", ".join(req.outside_team_grants))
    return out


def merge(*groups: Iterable[str]) -> list[str]:
    """Reasons from several checks, each once, in order."""
    seen: list[str] = []
    for g in groups:
        for r in g:
            if r not in seen:
                seen.append(r)
    return seen
