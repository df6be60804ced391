"""Registry reads for the coverage report (collector/reports/coverage.py) beyond ``list_agents``:
per agent, how many stores hold present locations and when its last inventory report was stored."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from collector.registry.models.agents import agents

from collector.registry.models.inventory import locations
@dataclass(frozen=True, slots=True)
class AgentCoverage:
    stores: int                          # distinct (store type, path) with a present location
    last_report_at: dt.datetime | None   # when its last inventory report was stored; None: never


def agent_coverage(registry: Any) -> dict[str, AgentCoverage]:
    """{agent_id: AgentCoverage} for every agent (one row per agent: bounded by the fleet's agents).
    ``registry``: the Registry, or anything else with its ``engine``."""
    lc = locations.c
    stores = (
        select(lc.agent_id, lc.store_type, lc.path).where(lc.status == "present").distinct().subquery()
    )
    with registry.engine.connect() as conn:
        counts = dict(conn.execute(
            select(stores.c.agent_id, func.count()).group_by(stores.c.agent_id)).all())
        return {
            r.agent_id: AgentCoverage(stores=counts.get(r.agent_id, 0), last_report_at=r.last_report_at)
            for r in conn.execute(select(agents.c.agent_id, agents.c.last_report_at))
        }
