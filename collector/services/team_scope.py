"""Role owner's view of the registry: its team's certificates, locations and jobs.

Feeds the pure decisions of collector/domain/scope.py from the registry (the rules once per call,
explicit assignments once per page of certificates); the admin servicers narrow what they show
and refuse what they must with it.
"""
from __future__ import annotations

from typing import Any, Sequence

from collector.domain.scope import Refusal, foreign_targets, job_owned, renewal_refusal, team_view
from collector.errors import NotFound
from collector.registry.types import CertificateView, JobView, LocationSelector


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

    def renewal_refusal(self, fingerprint_prefix: str, where: LocationSelector | None) -> Refusal | None:
        """Why the team may not renew this certificate there (None when it may): domain/scope.py decides."""
        cert = self.registry.get_certificate(fingerprint_prefix, False)
        return renewal_refusal(cert, where, self.team, self.rules, self.registry.owners.explicit_for([cert]))

    def jobs(self, jobs: Sequence[JobView]) -> list[JobView]:
        """The jobs on the team's locations, in the order given."""
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
