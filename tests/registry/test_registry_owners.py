"""Owners, assignment rules, explicit assignments and orphans in the registry (SQLite and PostgreSQL)."""
from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from collector.domain import ownership as own
from collector.errors import Ambiguous, InvalidInput, NotFound
from collector.registry import Registry
from collector.registry.certificates import CertificateStore
from collector.registry.types import LocationSelector
from tests.helpers.registry_certs import (
    T0, header, issue, key_of, leaf, location, root_ca, store_report, with_fingerprint_prefix_collision,
)

T1 = T0 + dt.timedelta(hours=1)


def test_owner_crud_with_clear_errors(registry: Registry) -> None:
    store = registry.owners
    o = store.create_owner("Web-Team", T0, contacts=["web@example.com", "web@example.com"],
                           webhook="https://hooks.example.com/web", escalation="oncall@example.com",
                           description="nginx fleet", actor="admin:alice")
    assert o.name == "web-team" and o.contacts == ("web@example.com",) and o.working
    assert o.created_at == T0 == o.updated_at

    with pytest.raises(InvalidInput, match="owner 'web-team' already exists"):
        store.create_owner("web-team", T0)
    with pytest.raises(InvalidInput, match="'not-an-address' is not an e-mail address"):
        store.create_owner("db", T0, contacts=["not-an-address"])
    with pytest.raises(InvalidInput, match="not an http"):
        store.create_owner("db", T0, webhook="mailto:x@example.com")
    with pytest.raises(InvalidInput, match="owner name 'db team' is not valid"):
        store.create_owner("db team", T0)

    mute = store.create_owner("db", T0)           # no contacts: allowed, but not working
    assert not mute.working and mute.contacts == ()

    o = store.update_owner("web-team", T1, add_contacts=["ops@example.com"], remove_contacts=["web@example.com"],
                           webhook="", description="web servers")
    assert o.contacts == ("ops@example.com",) and o.webhook == "" and o.description == "web servers"
    assert o.escalation == "oncall@example.com" and o.updated_at == T1 and o.created_at == T0
    with pytest.raises(InvalidInput, match="has no contact 'nobody@example.com'"):
        store.update_owner("web-team", T1, remove_contacts=["nobody@example.com"])
    o = store.update_owner("web-team", T1, contacts=[], new_name="web")
    assert o.name == "web" and o.contacts == () and not o.working
    with pytest.raises(InvalidInput, match="owner 'db' already exists"):
        store.update_owner("web", T1, new_name="db")
    with pytest.raises(NotFound, match="no owner 'nobody'"):
        store.update_owner("nobody", T1, description="x")

    assert [x.name for x in store.list_owners()] == ["db", "web"]
    assert store.get_owner("WEB").name == "web"

    store.delete_owner("db", T1)
    with pytest.raises(NotFound, match="no owner 'db'"):
        store.delete_owner("db", T1)
    assert [x.name for x in store.list_owners()] == ["web"]

    # every change is in the audit trail, and the chain holds
    actions = [e["action"] for e in registry.audit.export()]
    assert actions == ["owner.create", "owner.create", "owner.update", "owner.update", "owner.delete"]
    assert next(registry.audit.export())["actor"] == "admin:alice"
    assert registry.audit.verify().ok


def test_rules_crud_and_order(registry: Registry) -> None:
    store = registry.owners
    store.create_owner("web", T0, contacts=["web@example.com"])
    with pytest.raises(NotFound, match="rule 'r1': no owner 'nobody'"):
        store.add_rule("r1", T0, owner="nobody", path="/etc/**")
    with pytest.raises(InvalidInput, match="rule 'r1' sets nothing"):
        store.add_rule("r1", T0, path="/etc/**")
    with pytest.raises(InvalidInput, match="criticality 'urgent'"):
        store.add_rule("r1", T0, owner="web", criticality="urgent")

    a = store.add_rule("nginx", T0, owner="web", path="/etc/nginx/**", labels={"environment": "prod"},
                       environment="prod", actor="admin:alice")
    b = store.add_rule("crit", T0, criticality="high", san="*.shop.example.com")
    assert (a.priority, b.priority) == (10, 20)
    assert a.labels == {"environment": "prod"} and a.created_by == "admin:alice"
    with pytest.raises(InvalidInput, match="rule 'nginx' already exists"):
        store.add_rule("nginx", T0, owner="web")
    with pytest.raises(InvalidInput, match="priority 20 is taken by rule 'crit'"):
        store.add_rule("other", T0, owner="web", priority=20)
    store.add_rule("first", T0, owner="web", priority=5, host="web-*")
    assert [r.name for r in store.list_rules()] == ["first", "nginx", "crit"]

    # an owner a rule names cannot go
    with pytest.raises(InvalidInput, match=r"owner 'web' is still named by 2 rule\(s\) \(first, nginx\)"):
        store.delete_owner("web", T1)

    rules = store.reorder_rules(["crit", "nginx"], T1)
    assert [(r.name, r.priority) for r in rules] == [("crit", 10), ("nginx", 20), ("first", 30)]
    with pytest.raises(NotFound, match="no rule"):
        store.reorder_rules(["ghost"], T1)

    assert store.remove_rule("first", T1).name == "first"
    with pytest.raises(NotFound, match="no rule 'first'"):
        store.remove_rule("first", T1)
    assert [r.name for r in store.list_rules()] == ["crit", "nginx"]
    actions = [e["action"] for e in registry.audit.export()]
    assert actions.count("rule.add") == 3 and "rule.reorder" in actions and "rule.remove" in actions


@pytest.fixture
def fleet(registry: Registry, make_agent):  # type: ignore[no-untyped-def]
    """Two hosts: web1 (nginx PEMs and a PKCS#12), db1 (a PEM labelled by its store)."""
    ca = root_ca()
    shop = leaf("www.shop.example.com", ca)
    api = leaf("api.example.com", ca)
    app = leaf("app.internal", ca)
    db = issue("db1.example.com", sans=[x509.DNSName("db1.example.com")])
    make_agent("a1", "web1.example.com")
    make_agent("a2", "db1.example.com", serial="b2")
    store_report(registry, "a1", header("w1", full=True, sequence=1, hostname="web1.example.com"), [
        location(shop, "/etc/nginx/ssl/shop.pem", labels={"environment": "prod"}),
        location(ca, "/etc/nginx/ssl/shop.pem", chain_index=1, labels={"environment": "prod"}),
        location(api, "/etc/nginx/ssl/api.pem", labels={"environment": "prod"}),
        location(app, "/opt/app/keystore.p12", store_type="pkcs12", alias="app"),
    ])
    store_report(registry, "a2", header("d1", full=True, sequence=1, hostname="db1.example.com"), [
        location(db, "/var/lib/pg/server.pem", labels={"owner": "dba", "service": "postgres"}),
        location(api, "/var/lib/pg/api-copy.pem"),
    ])
    return {"ca": ca, "shop": shop, "api": api, "app": app, "db": db}


def _at(ca: own.CertificateAssignment) -> dict[str, own.Assignment]:
    return {f"{la.location.hostname.split('.')[0]}:{la.location.path}#{la.location.chain_index}": la.assignment
            for la in ca.locations}


def test_rules_and_explicit_assignments_apply_to_reported_certificates(registry: Registry, fleet) -> None:  # type: ignore[no-untyped-def]
    store = registry.owners
    store.create_owner("web", T0, contacts=["web@example.com"])
    store.create_owner("payments", T0, webhook="https://hooks.example.com/pay")
    store.create_owner("dba", T0, contacts=["dba@example.com"])
    store.add_rule("nginx", T0, owner="web", path="/etc/nginx/**/*.pem", service="nginx")
    store.add_rule("prod-label", T0, labels={"environment": "prod"}, environment="prod", criticality="high")
    store.add_rule("shop-san", T0, owner="payments", san="*.shop.example.com", criticality="critical")

    shop = _at(store.assignment_for(fleet["shop"].fingerprint[:12]))
    a = shop["web1:/etc/nginx/ssl/shop.pem#0"]
    # owner from the first matching rule; criticality from the first rule that sets it
    assert (a.owner, a.environment, a.criticality, a.service) == ("web", "prod", "high", "nginx")
    assert a.source == "rule:nginx" and a.sources["criticality"] == "rule:prod-label"

    api = _at(store.assignment_for(fleet["api"].fingerprint))
    assert api["web1:/etc/nginx/ssl/api.pem#0"].owner == "web"
    assert api["db1:/var/lib/pg/api-copy.pem#0"] == own.Assignment()

    db = _at(store.assignment_for(fleet["db"].fingerprint))["db1:/var/lib/pg/server.pem#0"]
    assert (db.owner, db.service, db.source) == ("dba", "postgres", "label")

    # an explicit certificate assignment overrides the rules, per attribute
    done = store.assign(fleet["shop"].fingerprint[:10], T1, owner="payments", reason="shop is ours",
                        actor="operator:bob")
    assert [(e.scope, e.fingerprint, e.owner) for e in done] == [("certificate", fleet["shop"].fingerprint, "payments")]
    ca = store.assignment_for(fleet["shop"].fingerprint)
    a = _at(ca)["web1:/etc/nginx/ssl/shop.pem#0"]
    assert (a.owner, a.source, a.service) == ("payments", "explicit", "nginx")
    assert ca.certificate_assignment.owner == "payments"
    assert [e.assigned_by for e in ca.explicit] == ["operator:bob"]

    # a second assign merges: the owner stays, the environment is added
    done = store.assign(fleet["shop"].fingerprint, T1, environment="staging")
    assert (done[0].owner, done[0].environment) == ("payments", "staging")

    # a location assignment (by path) beats the certificate's and stays with the location
    done = store.assign(fleet["api"].fingerprint, T1, owner="dba", where=LocationSelector(path="/var/lib/pg/api-copy.pem"))
    assert [(e.scope, e.agent_id, e.hostname, e.path) for e in done] == [
        ("location", "a2", "db1.example.com", "/var/lib/pg/api-copy.pem")]
    api = _at(store.assignment_for(fleet["api"].fingerprint))
    assert api["db1:/var/lib/pg/api-copy.pem#0"].owner == "dba"
    assert api["web1:/etc/nginx/ssl/api.pem#0"].owner == "web"
    with pytest.raises(NotFound, match="does not hold certificate"):
        store.assign(fleet["api"].fingerprint, T1, owner="dba", where=LocationSelector(path="/nowhere.pem"))
    with pytest.raises(NotFound, match="no owner 'ghost'"):
        store.assign(fleet["api"].fingerprint, T1, owner="ghost")
    with pytest.raises(InvalidInput, match="give at least one"):
        store.assign(fleet["api"].fingerprint, T1)
    with pytest.raises(NotFound, match="no certificate"):
        store.assign("ffffffffffff", T1, owner="dba")

    # the certificate at that location is replaced (a renewal): the location keeps its owner
    renewed = leaf("api.example.com", fleet["ca"])
    store_report(registry, "a2", header("d2", full=True, sequence=2, hostname="db1.example.com"), [
        location(fleet["db"], "/var/lib/pg/server.pem", labels={"owner": "dba", "service": "postgres"}),
        location(renewed, "/var/lib/pg/api-copy.pem"),
    ], now=T1)
    assert _at(store.assignment_for(renewed.fingerprint))["db1:/var/lib/pg/api-copy.pem#0"].owner == "dba"

    assert {e.scope for e in store.list_explicit()} == {"certificate", "location"}
    with pytest.raises(InvalidInput, match=r"still named by 1 rule\(s\) \(shop-san\) and 1 explicit assignment"):
        store.delete_owner("payments", T1)

    assert store.unassign(fleet["shop"].fingerprint, T1) == 1
    with pytest.raises(NotFound, match="no explicit assignment"):
        store.unassign(fleet["shop"].fingerprint, T1)
    assert _at(store.assignment_for(fleet["shop"].fingerprint))["web1:/etc/nginx/ssl/shop.pem#0"].owner == "web"
    # clearing the last attribute removes the assignment
    assert store.assign(renewed.fingerprint, T1, owner="", where=LocationSelector(path="/var/lib/pg/api-copy.pem")) == []
    assert list(store.list_explicit()) == []
    actions = [e["action"] for e in registry.audit.export()]
    assert actions.count("assignment.set") == 3 and actions.count("assignment.remove") == 2
    assert registry.audit.verify().ok


def test_fingerprint_prefixes(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    make_agent("a1", "web1.example.com")
    variants = with_fingerprint_prefix_collision(issue("twin.example.com").der)
    store_report(registry, "a1", header("r1", full=True, sequence=1),
                 [location(der, f"/srv/twin{i}.pem") for i, der in enumerate(variants)])
    registry.owners.create_owner("web", T0, contacts=["web@example.com"])
    fp = hashlib.sha256(variants[0]).hexdigest()
    with pytest.raises(InvalidInput, match="at least 6"):
        registry.owners.assign(fp[:4], T1, owner="web")
    with pytest.raises(Ambiguous, match="give more characters"):
        registry.owners.assign(fp[:6], T1, owner="web")
    assert registry.owners.assign(fp[:20], T1, owner="web")[0].fingerprint == fp


def test_orphans(registry: Registry, fleet, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(Registry, "PAGE_SIZE", 2)   # stream in several pages
    monkeypatch.setattr(CertificateStore, "PAGE_SIZE", 2)
    store = registry.owners
    store.create_owner("web", T0, contacts=["web@example.com"])
    store.create_owner("apps", T0, webhook="http://hooks.example.com/plain-http")   # not a working contact
    store.add_rule("nginx", T0, owner="web", path="/etc/nginx/**")
    store.add_rule("apps", T0, owner="apps", path="*.p12")

    def orphans() -> dict[str, own.Orphan]:
        return {o.certificate.fingerprint: o for o in store.orphans(T1)}

    found = orphans()
    names = {fp: name for name, c in fleet.items() for fp in [c.fingerprint]}
    assert {names[fp] for fp in found} == {"app", "db", "api"}
    assert found[fleet["app"].fingerprint].reason == own.NO_WORKING_CONTACT
    db = found[fleet["db"].fingerprint]
    assert db.reason == own.UNKNOWN_OWNER and "'dba' (from label)" in db.detail
    api = found[fleet["api"].fingerprint]   # covered on web1, not on db1
    assert api.reason == own.NO_OWNER
    assert [(ol.location.hostname, ol.location.path) for ol in api.locations] == [
        ("db1.example.com", "/var/lib/pg/api-copy.pem")]
    # soonest expiry first, as the registry streams them
    listed = list(store.orphans(T1))
    assert [o.certificate.not_after for o in listed] == sorted(o.certificate.not_after for o in listed)

    # fix each cause: a working contact, the labelled owner registered, an explicit assignment
    store.update_owner("apps", T1, webhook="https://hooks.example.com/apps")
    store.create_owner("dba", T1, contacts=["dba@example.com"])
    store.assign(fleet["api"].fingerprint, T1, owner="web", where=LocationSelector(hostname="db1.example.com",
                                                                                   path="/var/lib/pg/api-copy.pem"))
    assert orphans() == {}
    # an owner losing its last contact makes its certificates orphans again
    store.update_owner("dba", T1, contacts=[])
    assert {names[fp] for fp in orphans()} == {"db"}
    # the store's orphan search gives the same
    assert [o.certificate.fingerprint for o in registry.owners.orphans(T1)] == [fleet["db"].fingerprint]


def test_removed_locations_are_not_orphans(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1", "web1.example.com")
    c = issue("gone.example.com")
    loc = location(c, "/srv/gone.pem")
    store_report(registry, "a1", header("r1", full=True, sequence=1), [loc])
    assert [o.certificate.fingerprint for o in registry.owners.orphans(T0)] == [c.fingerprint]
    store_report(registry, "a1", header("r2", full=False, sequence=2, base=1), removals=[key_of(loc)], now=T1)
    assert list(registry.owners.orphans(T1)) == []
    # the certificate is still explained, with its removed location
    ca = registry.owners.assignment_for(c.fingerprint)
    assert [la.location.status for la in ca.locations] == ["removed"]
