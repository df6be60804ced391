"""What an admin identity of role ``owner`` may see and act on: its team's certificates.

An identity of role ``owner`` acts for one team (an owner, ``certfleet owners``; the
``team`` of its admin identity). A location belongs to the team when the owner
resolved for the certificate at that location (explicit assignments, rules, owner
labels: collector.domain.ownership.resolve) is the team. From that:

* a certificate is visible when at least one of its *present* locations belongs to
  the team, and it is shown with those locations only;
* a renewal is allowed only when every location it targets belongs to the team;
* a job is visible (and may be retried or cancelled) when its location belongs to the
  team (resolved for the certificate the job renews, at the job's location).

The decisions are the pure functions at the top; :class:`TeamScope` feeds them from
the registry (rules once per call, explicit assignments once per page).
"""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any, Iterable, Sequence

from collector.domain import ownership as own
from collector.registry.types import CertificateView, JobView, LocationSelector


def _key(loc: Any) -> tuple[str, str, str, str]:
    return (loc.agent_id, loc.store_type, loc.path, loc.alias)


def owner_at(cert: Any, location: Any, rules: Sequence[own.Rule], explicit: Iterable[own.Explicit]) -> str | None:
    """The owner resolved for ``cert`` at ``location``."""
    return own.resolve(cert, location, rules, explicit).owner


def team_locations(cert: CertificateView, team: str, rules: Sequence[own.Rule],
                   explicit: Iterable[own.Explicit]) -> tuple[Any, ...]:
    """The present locations of ``cert`` whose resolved owner is ``team``."""
    exp = list(explicit)
    return tuple(loc for loc in cert.locations
                 if loc.status == "present" and owner_at(cert, loc, rules, exp) == team)


def team_view(cert: CertificateView, team: str, rules: Sequence[own.Rule],
              explicit: Iterable[own.Explicit]) -> CertificateView | None:
    """``cert`` with only the team's present locations, or None when it has none."""
    mine = team_locations(cert, team, rules, explicit)
    return dataclasses.replace(cert, locations=mine) if mine else None


def renew_targets(cert: CertificateView, where: LocationSelector | None) -> list[Any]:
    """The locations a renewal of ``cert`` at ``where`` would make jobs for (as
    JobStore.create_renewals chooses them: present, matching, the entry's own certificate)."""
    present = [loc for loc in cert.locations if loc.status == "present"]
    if where is not None and any((where.agent_id, where.hostname, where.store_type, where.path, where.alias)):
        present = [loc for loc in present if where.matches(loc)]
    return [loc for loc in present if loc.chain_index == 0] or present


def foreign_targets(cert: CertificateView, where: LocationSelector | None, team: str, rules: Sequence[own.Rule],
                    explicit: Iterable[own.Explicit]) -> list[Any] | None:
    """The targeted locations that are not the team's ([] when all are); None when nothing is targeted."""
    targets = renew_targets(cert, where)
    if not targets:
        return None
    exp = list(explicit)
    return [loc for loc in targets if owner_at(cert, loc, rules, exp) != team]


def job_location(job: JobView, cert: CertificateView | None) -> Any:
    """The location a job works on, as the registry knows it for the certificate it renews
    (any status: after the renewal the old certificate is gone from there); a bare stand-in
    (no labels) when the registry no longer has it."""
    if cert is not None:
        for loc in cert.locations:
            if _key(loc) == _key(job) and loc.chain_index == job.chain_index:
                return loc
        for loc in cert.locations:
            if _key(loc) == _key(job):
                return loc
    return SimpleNamespace(agent_id=job.agent_id, hostname=job.hostname, store_type=job.store_type, path=job.path,
                           alias=job.alias, chain_index=job.chain_index, labels={}, status="removed")


def job_owned(job: JobView, cert: CertificateView | None, team: str, rules: Sequence[own.Rule],
              explicit: Iterable[own.Explicit]) -> bool:
    facts = cert if cert is not None else own.CertFacts(fingerprint=job.old_fingerprint)
    return owner_at(facts, job_location(job, cert), rules, explicit) == team


class TeamScope:
    """The team's view of the registry, for one call (rules are read once)."""

    def __init__(self, registry: Any, team: str) -> None:
        self.registry = registry
        self.team = team
        self.rules = sorted(registry.owners.list_rules(), key=lambda r: r.priority)

    def certificates(self, page: Sequence[CertificateView]) -> list[CertificateView]:
        """The page's certificates the team may see, each with the team's locations only."""
        if not page:
            return []
        exp = self.registry.owners.explicit_for(page)
        out = []
        for cert in page:
            v = team_view(cert, self.team, self.rules, exp)
            if v is not None:
                out.append(v)
        return out

    def certificate(self, cert: CertificateView) -> CertificateView | None:
        return team_view(cert, self.team, self.rules, self.registry.owners.explicit_for([cert]))

    def foreign_targets(self, cert: CertificateView, where: LocationSelector | None) -> list[Any] | None:
        return foreign_targets(cert, where, self.team, self.rules, self.registry.owners.explicit_for([cert]))

    def jobs(self, jobs: Sequence[JobView]) -> list[JobView]:
        """The jobs on the team's locations, in the order given."""
        from collector.errors import NotFound

        certs: dict[str, CertificateView | None] = {}
        for j in jobs:
            if j.old_fingerprint not in certs:
                try:
                    certs[j.old_fingerprint] = self.registry.get_certificate(j.old_fingerprint, False)
                except NotFound:
                    certs[j.old_fingerprint] = None
        exp = self.registry.owners.explicit_for([c for c in certs.values() if c is not None]) if certs else []
        return [j for j in jobs if job_owned(j, certs[j.old_fingerprint], self.team, self.rules, exp)]

    def job(self, job: JobView) -> bool:
        return bool(self.jobs([job]))


__all__ = ["TeamScope", "foreign_targets", "job_owned", "renew_targets", "team_locations", "team_view"]
