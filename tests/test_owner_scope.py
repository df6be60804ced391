"""Role owner's view (collector/domain/scope.py): which certificates, locations and jobs are its team's."""
from __future__ import annotations

from types import SimpleNamespace

from collector.domain import ownership as own
from collector.domain.ownership import Explicit, Rule
from collector.registry.types import LocationSelector
from collector.domain.scope import (
    foreign_targets, job_owned, renew_targets, renewal_refusal, selects, team_locations, team_view,
)
from collector.services.team_scope import TeamScope
from tests.test_ownership import cert, loc

RULES = [Rule(name="web", priority=10, owner="web-team", path="/srv/web/**"),
         Rule(name="db", priority=20, owner="db-team", path="/srv/db/**")]
WEB = loc("/srv/web/www.pem")
DB = loc("/srv/db/db.pem")
GONE = loc("/srv/web/old.pem", status="removed")
SHARED = cert("aa" * 32, locations=(WEB, DB, GONE))
DBONLY = cert("bb" * 32, locations=(DB,))


def test_a_certificate_is_shown_with_the_teams_present_locations_only() -> None:
    assert team_locations(SHARED, "web-team", RULES, []) == (WEB,)
    assert team_view(SHARED, "web-team", RULES, []).locations == (WEB,)
    assert team_view(SHARED, "db-team", RULES, []).locations == (DB,)
    assert team_view(DBONLY, "web-team", RULES, []) is None
    # only removed locations of the team: not shown
    assert team_view(cert("cc" * 32, locations=(GONE, DB)), "web-team", RULES, []) is None
    # no rule names an owner: nobody's
    assert team_view(SHARED, "web-team", [], []) is None


def test_explicit_assignments_and_owner_labels_decide_too() -> None:
    moved = Explicit(scope=own.SCOPE_LOCATION, agent_id=DB.agent_id, store_type=DB.store_type, path=DB.path,
                     owner="web-team")
    assert team_view(DBONLY, "web-team", RULES, [moved]).locations == (DB,)
    assert team_view(DBONLY, "db-team", RULES, [moved]) is None
    labelled = loc("/opt/x.pem", labels={"owner": "web-team"})
    assert team_view(cert("dd" * 32, locations=(labelled,)), "web-team", RULES, []) is not None


def test_renewal_only_when_every_targeted_location_is_the_teams() -> None:
    assert foreign_targets(SHARED, None, "web-team", RULES, []) == [DB]
    assert foreign_targets(SHARED, LocationSelector(path=WEB.path), "web-team", RULES, []) == []
    assert foreign_targets(SHARED, LocationSelector(path=DB.path), "web-team", RULES, []) == [DB]
    assert foreign_targets(DBONLY, None, "db-team", RULES, []) == []
    # nothing targeted (no such location, or only removed ones): no renewal either
    assert foreign_targets(SHARED, LocationSelector(path="/nowhere"), "web-team", RULES, []) is None
    assert foreign_targets(cert("ee" * 32, locations=(GONE,)), None, "web-team", RULES, []) is None
    # chain entries (the certificate as an issuer in a chain) are not renewed, so not targeted
    chain = loc("/srv/db/chain.pem", chain_index=1)
    assert renew_targets(cert("ff" * 32, locations=(WEB, chain)), None) == [WEB]


def job(location, fingerprint: str):  # noqa: ANN001, ANN201
    return SimpleNamespace(job_id="j", agent_id=location.agent_id, hostname=location.hostname,
                           store_type=location.store_type, path=location.path, alias=location.alias,
                           chain_index=location.chain_index, old_fingerprint=fingerprint)


def test_a_job_is_the_teams_when_its_location_is() -> None:
    assert job_owned(job(WEB, SHARED.fingerprint), SHARED, "web-team", RULES, [])
    assert not job_owned(job(DB, SHARED.fingerprint), SHARED, "web-team", RULES, [])
    # after the renewal the old certificate is only "removed" there: still the team's job
    assert job_owned(job(GONE, SHARED.fingerprint), SHARED, "web-team", RULES, [])
    # the certificate gone from the registry: decided on the job's own location facts
    assert job_owned(job(WEB, "99" * 32), None, "web-team", RULES, [])
    assert not job_owned(job(DB, "99" * 32), None, "web-team", RULES, [])


class FakeRegistry:
    def __init__(self, certs) -> None:  # noqa: ANN001
        self.certs = {c.fingerprint: c for c in certs}
        self.explicit_calls = 0
        self.owners = SimpleNamespace(list_rules=lambda: list(reversed(RULES)), explicit_for=self._explicit_for)

    def _explicit_for(self, certs):  # noqa: ANN001, ANN202
        self.explicit_calls += 1
        return []

    def get_certificate(self, fp: str, with_der: bool = True):  # noqa: ANN201
        from collector.errors import NotFound

        try:
            return self.certs[fp]
        except KeyError:
            raise NotFound(fp) from None


def test_team_scope_filters_pages_and_jobs() -> None:
    reg = FakeRegistry([SHARED, DBONLY])
    scope = TeamScope(reg, "web-team")
    page = scope.certificates([SHARED, DBONLY])
    assert [c.fingerprint for c in page] == [SHARED.fingerprint] and page[0].locations == (WEB,)
    assert reg.explicit_calls == 1          # once per page, not per certificate
    assert scope.certificates([]) == []
    assert scope.certificate(DBONLY) is None
    jobs = [job(WEB, SHARED.fingerprint), job(DB, DBONLY.fingerprint), job(DB, SHARED.fingerprint),
            job(WEB, "77" * 32)]
    assert scope.jobs(jobs) == [jobs[0], jobs[3]]
    assert scope.job(jobs[0]) and not scope.job(jobs[1])


def test_a_renewal_outside_the_team_is_refused_naming_what_to_audit() -> None:
    assert renewal_refusal(SHARED, LocationSelector(path=WEB.path), "web-team", RULES, []) is None
    r = renewal_refusal(SHARED, None, "web-team", RULES, [])
    assert r is not None and r.message == "role owner (team web-team) may renew only its team's certificates"
    assert dict(r.detail) == {"fingerprint": SHARED.fingerprint, "locations": ["agent-1 pem:/srv/db/db.pem"]}
    # nothing targeted: refused too, with no location to name
    nothing = renewal_refusal(SHARED, LocationSelector(path="/nowhere"), "web-team", RULES, [])
    assert nothing is not None and nothing.detail["locations"] == []
    # the scope asks the same decision about what the registry holds
    scope = TeamScope(FakeRegistry([SHARED, DBONLY]), "db-team")
    assert scope.renewal_refusal(DBONLY.fingerprint, None) is None
    assert scope.renewal_refusal(SHARED.fingerprint, None).detail["locations"] == ["agent-1 pem:/srv/web/www.pem"]


def test_a_selector_picks_locations_like_the_job_store() -> None:
    assert selects(LocationSelector(), WEB) and selects(LocationSelector(hostname=WEB.hostname.upper()), WEB)
    assert selects(LocationSelector(path=WEB.path, chain_index=0), WEB)
    assert not selects(LocationSelector(path=WEB.path, chain_index=1), WEB)
    assert not selects(LocationSelector(agent_id="agent-2"), WEB) and not selects(LocationSelector(alias="a"), WEB)
