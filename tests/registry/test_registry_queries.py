"""Finding certificates: fingerprint prefixes and list filters."""
from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from collector.errors import Ambiguous, InvalidInput, NotFound
from collector.registry import Registry
from collector.registry.types import CertFilter
from tests.helpers.registry_certs import (
    T0,
    header,
    intermediate_ca,
    leaf,
    location,
    root_ca,
    store_report,
    with_fingerprint_prefix_collision,
)

DAY = dt.timedelta(days=1)


def test_fingerprint_prefix_lookup(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1")
    ca = root_ca()
    twins = with_fingerprint_prefix_collision(leaf("twin.example.com", ca).der, digits=6, count=2)
    solo = leaf("solo.example.com", ca)
    store_report(registry, "a1", header("r1", full=True, sequence=1),
                 [location(d, f"/ssl/twin{i}.pem") for i, d in enumerate(twins)] + [location(solo, "/ssl/solo.pem")])
    fp = solo.fingerprint

    assert registry.get_certificate(fp).fingerprint == fp
    assert registry.get_certificate(fp[:6]).fingerprint == fp
    colons = ":".join(fp[i:i + 2] for i in range(0, 16, 2)).upper()          # "AB:CD:..." as tools print it
    assert registry.get_certificate(colons).fingerprint == fp

    twin_fp = hashlib.sha256(twins[0]).hexdigest()
    with pytest.raises(Ambiguous, match=rf"prefix '{twin_fp[:6]}' matches 2 certificates; give more characters"):
        registry.get_certificate(twin_fp[:6])
    assert registry.get_certificate(twin_fp).der == twins[0]

    missing = "f" * 64 if not fp.startswith("ffffff") else "0" * 64
    with pytest.raises(NotFound):
        registry.get_certificate(missing)
    with pytest.raises(NotFound):
        registry.get_certificate(missing[:10])
    with pytest.raises(InvalidInput, match="at least 6"):
        registry.get_certificate(fp[:5])
    with pytest.raises(InvalidInput, match="not a hex SHA-256 fingerprint"):
        registry.get_certificate("zz" * 8)
    with pytest.raises(InvalidInput):
        registry.get_certificate(fp + "00")


@pytest.fixture
def fleet(registry: Registry, make_agent):  # type: ignore[no-untyped-def]
    """Two hosts, two issuers, certificates expiring over the year; one location removed."""
    make_agent("a1", "web1.example.com")
    make_agent("a2", "DB1.example.com")
    root = root_ca()
    acme = intermediate_ca("Acme 100% Issuing CA", root, org="Acme Corp")
    other = intermediate_ca("Other CA", root, org="Other Inc")
    c = {
        "web-soon": leaf("web-soon.example.com", acme, days=10),
        "web-late": leaf("web-late.example.com", other, days=300),
        "db-mid": leaf("db-mid.example.com", acme, days=100),
        "shared": leaf("shared.example.com", other, days=50),
        "old": leaf("old.example.com", acme, days=5),
    }
    store_report(registry, "a1", header("w1", full=True, sequence=1, hostname="web1.example.com"), [
        location(c["web-soon"], "/ssl/soon.pem"), location(c["web-late"], "/ssl/late.pem"),
        location(c["shared"], "/ssl/shared.pem"), location(c["old"], "/ssl/old.pem"),
    ])
    store_report(registry, "a1", header("w2", full=True, sequence=2, hostname="web1.example.com"), [
        location(c["web-soon"], "/ssl/soon.pem"), location(c["web-late"], "/ssl/late.pem"),
        location(c["shared"], "/ssl/shared.pem"),
    ], now=T0 + DAY)
    store_report(registry, "a2", header("d1", full=True, sequence=1, hostname="DB1.example.com"), [
        location(c["db-mid"], "/etc/db/server.pem"), location(c["shared"], "/etc/db/shared.pem"),
    ])
    return {k: v.fingerprint for k, v in c.items()}


def names(registry: Registry, flt: CertFilter, fleet: dict[str, str]) -> list[str]:
    by_fp = {v: k for k, v in fleet.items()}
    return [by_fp.get(c.fingerprint, c.subject) for c in registry.list_certificates(flt, T0)]


def test_list_ordered_by_expiry_and_only_present(registry: Registry, fleet: dict[str, str]) -> None:
    assert names(registry, CertFilter(), fleet) == ["web-soon", "shared", "db-mid", "web-late"]
    views = {c.fingerprint: c for c in registry.list_certificates(CertFilter())}
    assert sorted(loc.hostname for loc in views[fleet["shared"]].locations) == ["DB1.example.com", "web1.example.com"]
    assert all(loc.status == "present" for v in views.values() for loc in v.locations)
    assert all(v.der == b"" for v in views.values())


def test_list_expiring_before(registry: Registry, fleet: dict[str, str]) -> None:
    assert names(registry, CertFilter(expiring_before=T0 + 60 * DAY), fleet) == ["web-soon", "shared"]
    assert names(registry, CertFilter(expiring_before=T0 - 5 * DAY), fleet) == []


def test_list_by_hostname_shows_that_hosts_locations(registry: Registry, fleet: dict[str, str]) -> None:
    assert names(registry, CertFilter(hostname="db1.EXAMPLE.com"), fleet) == ["shared", "db-mid"]
    shared = next(c for c in registry.list_certificates(CertFilter(hostname="db1.example.com"))
                  if c.fingerprint == fleet["shared"])
    assert [loc.path for loc in shared.locations] == ["/etc/db/shared.pem"]
    assert names(registry, CertFilter(hostname="nohost"), fleet) == []


def test_list_issuer_contains(registry: Registry, fleet: dict[str, str]) -> None:
    assert names(registry, CertFilter(issuer_contains="acme corp"), fleet) == ["web-soon", "db-mid"]
    assert names(registry, CertFilter(issuer_contains="100%"), fleet) == ["web-soon", "db-mid"]
    assert names(registry, CertFilter(issuer_contains="1_0"), fleet) == []        # _ is not a wildcard
    assert names(registry, CertFilter(issuer_contains="other inc", expiring_before=T0 + 60 * DAY), fleet) == ["shared"]


def test_list_include_removed(registry: Registry, fleet: dict[str, str]) -> None:
    got = names(registry, CertFilter(include_removed=True, hostname="web1.example.com"), fleet)
    assert got == ["old", "web-soon", "shared", "web-late"]
    old = next(c for c in registry.list_certificates(CertFilter(include_removed=True)) if c.fingerprint == fleet["old"])
    (loc,) = old.locations
    assert (loc.status, loc.removed_at) == ("removed", T0 + DAY)
    # without a host filter every stored certificate is listed (CAs seen only as issuers too)
    everything = names(registry, CertFilter(include_removed=True), fleet)
    assert everything[:1] == ["old"] and len(everything) == 5
