"""Issuance authority as the admin calls use it: check a host and names, propose and adopt grants.

The decision is collector/domain/authority.py's; the facts come from the registry
(``registry.authority``: grants, allows, recorded host names and collector-side labels).

Adoption without a hole: an existing fleet starts with everything unauthorized. ``propose`` lists,
per name the inventory holds today, the hosts that hold it and the owner resolved for it (owner
labels, rules, assignments: collector/domain/ownership.py); ``adopt`` turns the chosen proposals
into a grant to that owner and an allow for exactly those agents (by id), audited as
``names.adopt``. Nothing is trusted on first sight unless the pilot setting says so.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from collector import errors
from collector.domain import authority as auth
from collector.domain import ownership as own
from collector.domain.globs import dns_matches
from collector.registry.types import CertFilter

log = logging.getLogger(__name__)

__all__ = ["AuthorityService", "Proposal"]


@dataclass(frozen=True)
class Proposal:
    proposal_id: str
    name: str
    owner: str
    hosts: tuple[str, ...]
    agent_ids: tuple[str, ...]


class AuthorityService:
    def __init__(self, registry: Any, clock: Callable[[], dt.datetime]) -> None:
        self.registry = registry
        self.clock = clock

    def check(self, host_or_id: str, names: Sequence[str]) -> auth.Decision:
        """Whether ``names`` may be issued to the agent (id or recorded name), with each name's verdict."""
        if not names:
            raise errors.InvalidInput("name at least one DNS name or address to check")
        agent_id = self.registry.authority.find_agent(host_or_id)
        return auth.decide(names, self.registry.authority.host(agent_id), self.registry.authority.grants(),
                           self.registry.authority.allows())

    def propose(self) -> list[Proposal]:
        """One proposal per name present in the inventory and not yet authorized on all its hosts."""
        rules = sorted(self.registry.owners.list_rules(), key=lambda r: r.priority)
        grants, allows = self.registry.authority.grants(), self.registry.authority.allows()
        seen: dict[str, dict[str, Any]] = {}
        page: list[Any] = []

        def take(batch: list[Any]) -> None:
            exp = self.registry.owners.explicit_for(batch)
            for cert in batch:
                names = [s.value for s in cert.sans if s.type in ("dns", "ip")]
                for loc in cert.locations:
                    if loc.status != "present" or loc.chain_index != 0:
                        continue
                    owner = own.resolve(cert, loc, rules, exp).owner or ""
                    for n in names:
                        try:
                            key = auth.normalize_name(n)
                        except errors.InvalidInput:
                            continue
                        entry = seen.setdefault(key, {"agents": {}, "owners": set()})
                        entry["agents"][loc.agent_id] = loc.hostname
                        entry["owners"].add(owner)

        for cert in self.registry.list_certificates(CertFilter()):
            if cert.is_ca:
                continue
            page.append(cert)
            if len(page) >= 200:
                take(page)
                page = []
        if page:
            take(page)
        hosts = self.registry.authority.hosts(sorted({a for e in seen.values() for a in e["agents"]}))
        out = []
        for name, entry in sorted(seen.items()):
            agent_ids = tuple(sorted(entry["agents"]))
            if all(auth.decide([name], hosts[a], grants, allows).authorized for a in agent_ids if a in hosts):
                continue
            owners = entry["owners"] - {""}
            owner = owners.pop() if len(owners) == 1 else ""
            pid = hashlib.sha256(f"{name}\0{owner}\0{','.join(agent_ids)}".encode()).hexdigest()[:12]
            out.append(Proposal(pid, name, owner, tuple(hosts[a].name if a in hosts else a for a in agent_ids),
                                agent_ids))
        return out

    def adopt(self, actor: str, proposal_ids: Sequence[str] = (), *, all_matching: bool = False, owner: str = "",
              name_glob: str = "", wins: bool = False) -> tuple[list[Proposal], list[str]]:
        """Turn proposals into grants and allows; (adopted, why each other chosen one was skipped)."""
        if bool(proposal_ids) == bool(all_matching):
            raise errors.InvalidInput("name proposals (--proposal ID) or pass --all-matching with --owner/--name")
        if all_matching and not (owner or name_glob):
            raise errors.InvalidInput("--all-matching needs --owner TEAM and/or --name GLOB: adopting everything "
                                      "at once would trust whatever the inventory holds today")
        proposals = self.propose()
        if proposal_ids:
            by_id = {p.proposal_id: p for p in proposals}
            missing = [i for i in proposal_ids if i not in by_id]
            if missing:
                raise errors.NotFound("no current proposal " + ", ".join(missing)
                                      + " (certfleet names propose lists them; they change with the inventory)")
            chosen = [by_id[i] for i in proposal_ids]
        else:
            chosen = [p for p in proposals if (not owner or p.owner == owner)
                      and (not name_glob or dns_matches(name_glob, p.name))]
        now = self.clock()
        adopted, skipped = [], []
        for p in chosen:
            if not p.owner:
                skipped.append(f"{p.name}: no single owner is resolved for it today; grant it with names grant")
                continue
            try:
                self.registry.authority.grant(p.owner, p.name, actor, now, wins=wins, source=f"adopt:{p.proposal_id}",
                                              reason=f"adopted proposal {p.proposal_id}")
                for agent_id in p.agent_ids:
                    self.registry.authority.allow(p.name, actor, now, agent_id=agent_id,
                                                  reason=f"adopted proposal {p.proposal_id}")
            except errors.CollectorError as e:
                skipped.append(f"{p.name}: {e}")
                continue
            self.registry.audit.record(now, actor, "names.adopt", f"proposal:{p.proposal_id}",
                                       f"{p.owner} holds {p.name} on {', '.join(p.hosts)}",
                                       {"name": p.name, "owner": p.owner, "agent_ids": list(p.agent_ids)})
            adopted.append(p)
        return adopted, skipped
