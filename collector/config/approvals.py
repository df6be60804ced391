"""``[approvals]``: what makes an issuance atypical, how long approvals wait, who is told.

    [approvals]
    always_templates = ["prod-public"]   # these templates always need an approval
    wildcards = false                    # wildcard names need an approval
    longer_validity = true               # validity above the template's default needs one
    new_names = false                    # names certfleet never issued need one
    owner_outside_grants = true          # the owner role asking outside its team's grants
    expire_after = "7d"                  # pending approvals expire (the job ends `expired`)
    notify_owner = "security"            # the owner whose contacts/webhook are told of new approvals
                                         # ("" = the channels' default recipients)
    trust_on_first_sight = false         # PILOT ONLY: names no grant covers issue without approval

Read into the pure :class:`collector.domain.approvals.ApprovalPolicy`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from collector.config.reader import Table
from collector.domain.approvals import ApprovalPolicy

_KEYS = {"always_templates", "wildcards", "longer_validity", "new_names", "owner_outside_grants", "expire_after",
         "notify_owner", "trust_on_first_sight"}
KEYS = frozenset(_KEYS)      # the settings reference in the README lists exactly these (tests/test_readme_settings.py)


@dataclass(frozen=True)
class ApprovalSettings:
    policy: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    notify_owner: str = ""

    @classmethod
    def from_table(cls, t: Table) -> ApprovalSettings:
        t.check_keys(_KEYS)
        always = t.get("always_templates", [])
        if not isinstance(always, list) or not all(isinstance(x, str) and x for x in always):
            raise t.error("[approvals] always_templates must be a list of template names", "always_templates")
        flags = {}
        for key, default in (("wildcards", False), ("longer_validity", True), ("new_names", False),
                             ("owner_outside_grants", True), ("trust_on_first_sight", False)):
            v = t.get(key, default)
            if not isinstance(v, bool):
                raise t.error(f"[approvals] {key} must be true or false", key)
            flags[key] = v
        expire = t.duration("expire_after", "7d")
        if expire < 1:
            raise t.error("[approvals] expire_after must be at least one second", "expire_after")
        owner = t.get("notify_owner", "")
        if not isinstance(owner, str):
            raise t.error("[approvals] notify_owner must be an owner's name", "notify_owner")
        return cls(policy=ApprovalPolicy(always_templates=frozenset(always), expire_after=dt.timedelta(seconds=expire),
                                         **flags), notify_owner=owner)
