"""The column-only expiry read (collector/registry/expiry.py) that the ``expiring`` report and the
notifier use, on SQLite and PostgreSQL: the same locations, order and ownership as the full
certificate views and ``ownership.resolve`` give, page after page."""
from __future__ import annotations

import datetime as dt

from cryptography import x509

from collector.domain import ownership as own
from collector.registry import Registry
from collector.registry.expiry import ExpiryStore
from collector.registry.types import CertFilter, LocationSelector
from collector.reports.assigned import placed
from tests.helpers.registry_certs import T0, header, leaf, location, root_ca, store_report

NOW = T0 + dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def fill(registry: Registry, make_agent) -> dict[str, object]:  # type: ignore[no-untyped-def]
    make_agent("a1", "web1.example.com")
    make_agent("a2", "db1.example.com")
    root = root_ca()
    other_ca = root_ca("Other Root CA", org="elsewhere")
    certs = {f"c{i}": leaf(f"c{i}.example.com", root if i % 2 else other_ca, days=2 + i * 9,
                           sans=[x509.DNSName(f"c{i}.example.com"), x509.DNSName(f"alt{i}.shop.example.com")])
             for i in range(9)}
    gone = leaf("gone.example.com", root, days=3)
    store_report(registry, "a1", header("r1", full=True, sequence=1, hostname="web1.example.com"), [
        *(location(c, f"/etc/nginx/{k}.pem", labels={"environment": "prod"}) for k, c in certs.items()),
        location(certs["c3"], "/etc/ssl/bundle.pem", chain_index=1, labels={"owner": "label-team"}),
        location(gone, "/etc/nginx/gone.pem"),
    ])
    store_report(registry, "a2", header("r2", full=True, sequence=1, hostname="db1.example.com"), [
        location(certs["c1"], "/var/lib/pg/c1.pem", store_type="pkcs12", alias="srv", labels={"service": "pg"}),
        location(certs["c4"], "/var/lib/pg/c4.pem"),
    ])
    # gone: removed from web1 by the next full report (still in the registry, no present location)
    store_report(registry, "a1", header("r3", full=True, sequence=2, hostname="web1.example.com"), [
        *(location(c, f"/etc/nginx/{k}.pem", labels={"environment": "prod"}) for k, c in certs.items()),
        location(certs["c3"], "/etc/ssl/bundle.pem", chain_index=1, labels={"owner": "label-team"}),
    ])
    o = registry.owners
    for name in ("web", "shop", "other", "db", "pinned"):
        o.create_owner(name, T0, contacts=[f"{name}@example.com"])
    o.add_rule("by-issuer", T0, owner="other", issuer="elsewhere", priority=10)
    o.add_rule("by-san", T0, owner="shop", san="alt*.shop.example.com", criticality="high", priority=20)
    o.add_rule("db-hosts", T0, owner="db", host="db*", priority=5)
    o.add_rule("nginx", T0, owner="web", path="/etc/nginx/**", service="www", priority=30)
    o.assign(certs["c5"].fingerprint, T0, owner="pinned", reason="by hand")
    o.assign(certs["c1"].fingerprint, T0, environment="test", where=LocationSelector(agent_id="a2"), reason="lab")
    return {"certs": certs, "gone": gone}


def test_placements_match_the_full_views_and_resolve(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    data = fill(registry, make_agent)
    before = NOW + 60 * DAY
    store = ExpiryStore(registry.engine)

    # the reference: full certificate views (present locations) and ownership.resolve
    rules = registry.owners.list_rules()
    expected = []
    for cert in registry.list_certificates(CertFilter(expiring_before=before)):
        explicit = registry.owners.explicit_for([cert])
        for loc in cert.locations:
            a = own.resolve(cert, loc, rules, explicit)
            expected.append((cert.fingerprint, cert.not_after, loc.agent_id, loc.hostname, loc.store_type, loc.path,
                             loc.alias, loc.chain_index, loc.labels, a))
    assert len(expected) == 10 and data["gone"].fingerprint not in {e[0] for e in expected}   # type: ignore[attr-defined]

    for batch in (1, 2, 1000):          # pages of one, two and every certificate
        got = [(p.fingerprint, p.not_after, p.agent_id, p.hostname, p.store_type, p.path, p.alias, p.chain_index,
                p.labels) for p in store.placements(before, batch=batch)]
        assert got == [e[:9] for e in expected], batch
    assert [a for _, a in placed(registry, before)] == [e[9] for e in expected]
    owners = {(e[5], e[7]): e[9].owner for e in expected}
    certs = data["certs"]
    assert owners[("/etc/nginx/c0.pem", 0)] == "other"              # issuer rule (priority 10)
    assert owners[("/etc/nginx/c1.pem", 0)] == "shop"               # SAN rule
    assert owners[("/var/lib/pg/c1.pem", 0)] == "db"                # host rule first
    assert owners[("/etc/nginx/c5.pem", 0)] == "pinned"             # explicit certificate assignment
    assert [e[9].environment for e in expected if e[5] == "/var/lib/pg/c1.pem"] == ["test"]   # explicit location
    # with issuer and names asked, the facts are there
    p = next(iter(store.placements(before, with_issuer=True, with_names=True)))
    assert p.fingerprint == certs["c0"].fingerprint                 # type: ignore[attr-defined]
    assert "elsewhere" in p.issuer and p.dns_names == ("c0.example.com", "alt0.shop.example.com")

    # the window is strict and every present location is there without a horizon
    assert [p for p in store.placements(certs["c0"].cert.not_valid_after_utc)] == []   # type: ignore[attr-defined]
    assert sum(1 for _ in placed(registry)) == 12
