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

These are pure functions of the facts (certificate and job views, a location selector, the
rules and explicit assignments); collector/services/team_scope.py feeds them from the registry.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Iterable, Mapping, Sequence

from collector.domain import ownership as own

#: the views these decide on are collector.registry.types' (CertificateView, LocationView, JobView,
#: LocationSelector); anything with the same fields will do
CertificateView = JobView = LocationSelector = Any


@dataclass(frozen=True)
class Refusal:
    """Why role owner may not do something, and what to record about it in the audit trail."""

    message: str
    detail: Mapping[str, Any] = field(default_factory=dict)


def selects(where: LocationSelector, loc: Any) -> bool:
    """Whether a location selector picks ``loc``: empty fields (and a None chain index) match
    anything, the hostname case-insensitively (the rule collector/registry/jobs.py applies)."""
    return (
        (not where.agent_id or loc.agent_id == where.agent_id)
        and (not where.hostname or (loc.hostname or "").lower() == where.hostname.lower())
        and (not where.store_type or loc.store_type == where.store_type)
        and (not where.path or loc.path == where.path)
        and (not where.alias or loc.alias == where.alias)
        and (where.chain_index is None or loc.chain_index == where.chain_index)
    )


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
        present = [loc for loc in present if selects(where, loc)]
    return [loc for loc in present if loc.chain_index == 0] or present


def foreign_targets(cert: CertificateView, where: LocationSelector | None, team: str, rules: Sequence[own.Rule],
                    explicit: Iterable[own.Explicit]) -> list[Any] | None:
    """The targeted locations that are not the team's ([] when all are); None when nothing is targeted."""
    targets = renew_targets(cert, where)
    if not targets:
        return None
    exp = list(explicit)
    return [loc for loc in targets if owner_at(cert, loc, rules, exp) != team]


def renewal_refusal(cert: CertificateView, where: LocationSelector | None, team: str, rules: Sequence[own.Rule],
                    explicit: Iterable[own.Explicit]) -> Refusal | None:
    """Why team ``team`` may not renew ``cert`` at ``where`` (None when it may: every targeted
    location is the team's); nothing targeted is refused too."""
    foreign = foreign_targets(cert, where, team, rules, explicit)
    if foreign == []:
        return None
    return Refusal(f"role owner (team {team}) may renew only its team's certificates", {
        "fingerprint": cert.fingerprint,
        "locations": [f"{loc.agent_id} {loc.store_type}:{loc.path}" for loc in (foreign or [])][:10]})


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


__all__ = ["Refusal", "foreign_targets", "job_owned", "renew_targets", "renewal_refusal", "selects", "team_locations",
           "team_view"]
