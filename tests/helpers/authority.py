"""Issuance authority for test fixtures: grant name patterns to an owner and let hosts receive them.

Since issue 11 a renewal issues only names whose host is authorized (a grant covering every name
and an allow whose hosts include the agent); fixtures that renew set that up here, through the
real registry store, exactly as ``certfleet names grant/allow`` does.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

T = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def authorize(registry: Any, *patterns: str, owner: str = "fixture-team", hosts: str = "**",
              agent_id: str = "", now: dt.datetime = T) -> None:
    """``owner`` holds each pattern and agents matching ``hosts`` (or ``agent_id``) may receive it."""
    for p in patterns:
        registry.authority.grant(owner, p, "admin:fixture", now)
        if agent_id:
            registry.authority.allow(p, "admin:fixture", now, agent_id=agent_id)
        else:
            registry.authority.allow(p, "admin:fixture", now, hosts=hosts)
