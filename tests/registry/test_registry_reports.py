"""Inventory reports: normalisation, issuer links, full and delta reports, idempotency, resync."""
from __future__ import annotations

import datetime as dt
import hashlib
import threading

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from collector.errors import InvalidInput, NotFound, PermissionDenied
from collector.registry import Registry
from collector.registry.types import CertFilter, SanView
from tests.helpers.registry_certs import (
    ALL_SANS,
    T0,
    header,
    intermediate_ca,
    issue,
    key_of,
    leaf,
    location,
    root_ca,
    scan_error,
    store_report,
)

UTC = dt.timezone.utc
HOUR = dt.timedelta(hours=1)


def locs_by_path(registry: Registry, include_removed: bool = False) -> dict[str, tuple[str, str]]:
    """{path: (fingerprint, status)} of every listed location."""
    out = {}
    for c in registry.list_certificates(CertFilter(include_removed=include_removed)):
        for loc in c.locations:
            out[loc.path] = (c.fingerprint, loc.status)
    return out


# -- normalisation -------------------------------------------------------------

def test_normalised_facts_for_rsa_ec_ed25519(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1")
    root = root_ca(key_kind="rsa")
    rsa_leaf = leaf("rsa.example.com", root, key_kind="rsa", sans=ALL_SANS,
                    eku=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    ec_leaf = leaf("ec.example.com", root, key_kind="ec384")
    ed_leaf = leaf("ed.example.com", root, key_kind="ed25519", key_usage={"digital_signature": True},
                   eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    res = store_report(registry, "a1", header("r1", full=True, sequence=1), [
        location(root, "/etc/ssl/root.pem"),
        location(rsa_leaf, "/etc/ssl/rsa.pem", has_private_key=True, key_match="matches",
                 labels={"owner": "web-team"}),
        location(ec_leaf, "/etc/ssl/ec.pem"),
        location(ed_leaf, "/etc/ssl/ed.pem"),
    ])
    assert res.stored and res.certificates_new == 4 and res.locations_upserted == 4

    v = registry.get_certificate(rsa_leaf.fingerprint)
    assert v.fingerprint == rsa_leaf.fingerprint
    assert v.subject == "CN=rsa.example.com" and v.issuer == "CN=Test Root CA,O=certfleet tests"
    assert v.serial == format(rsa_leaf.cert.serial_number, "x")
    assert v.sans == (SanView("dns", "www.example.com"), SanView("ip", "192.0.2.10"), SanView("ip", "2001:db8::1"),
                      SanView("email", "ops@example.com"), SanView("uri", "spiffe://example.com/web"))
    assert v.not_before == T0 - dt.timedelta(days=1) and v.not_before.tzinfo == UTC
    assert v.not_after == T0 + dt.timedelta(days=89) and v.not_after.tzinfo == UTC
    assert (v.key_type, v.key_size, v.key_curve) == ("RSA", 2048, "")
    assert v.signature_algorithm == "sha256WithRSAEncryption"
    assert (v.is_ca, v.self_signed) == (False, False)
    assert v.key_usage == ("digital_signature", "key_encipherment")
    assert v.extended_key_usage == ("serverAuth", "clientAuth")
    assert v.issuer_fingerprint == root.fingerprint
    assert v.der == rsa_leaf.der
    (loc,) = v.locations
    assert (loc.agent_id, loc.hostname, loc.path, loc.status) == ("a1", "web1.example.com", "/etc/ssl/rsa.pem", "present")
    assert (loc.has_private_key, loc.key_match, loc.labels) == (True, "matches", {"owner": "web-team"})
    assert (loc.file_owner, loc.file_group, loc.file_mode) == ("root", "ssl-cert", 0o640)
    assert loc.file_mtime == T0 - HOUR and loc.file_mtime.tzinfo == UTC
    assert loc.first_seen == loc.last_seen == T0 and loc.removed_at is None

    v = registry.get_certificate(ec_leaf.fingerprint, with_der=False)
    assert (v.key_type, v.key_size, v.key_curve) == ("EC", 384, "secp384r1")
    assert v.der == b""
    v = registry.get_certificate(ed_leaf.fingerprint)
    assert (v.key_type, v.key_size) == ("Ed25519", 256)
    assert v.key_usage == ("digital_signature",) and v.extended_key_usage == ("clientAuth",)
    v = registry.get_certificate(root.fingerprint)
    assert (v.is_ca, v.self_signed) == (True, True)
    assert v.key_usage == ("key_cert_sign", "crl_sign")
    assert v.issuer_fingerprint == root.fingerprint          # a root is its own issuer


# -- issuer links -------------------------------------------------------------

def test_issuer_linked_when_issuer_already_known(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1")
    root = root_ca()
    inter = intermediate_ca("Issuing CA 1", root)
    store_report(registry, "a1", header("r1", full=True, sequence=1),
                 [location(root, "/ca/root.pem"), location(inter, "/ca/inter.pem")])
    web = leaf("web.example.com", inter)
    store_report(registry, "a1", header("r2", full=False, sequence=2, base=1), [location(web, "/ssl/web.pem")])
    assert registry.get_certificate(web.fingerprint).issuer_fingerprint == inter.fingerprint
    assert registry.get_certificate(inter.fingerprint).issuer_fingerprint == root.fingerprint


def test_issuer_linked_when_issuer_arrives_later(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1")
    root = root_ca()
    inter = intermediate_ca("Issuing CA 1", root)
    webs = [leaf(f"web{i}.example.com", inter) for i in range(3)]
    store_report(registry, "a1", header("r1", full=True, sequence=1),
                 [location(w, f"/ssl/web{i}.pem") for i, w in enumerate(webs)])
    assert all(registry.get_certificate(w.fingerprint).issuer_fingerprint == "" for w in webs)

    store_report(registry, "a1", header("r2", full=False, sequence=2, base=1), [location(inter, "/ca/inter.pem")])
    assert all(registry.get_certificate(w.fingerprint).issuer_fingerprint == inter.fingerprint for w in webs)
    assert registry.get_certificate(inter.fingerprint).issuer_fingerprint == ""

    store_report(registry, "a1", header("r3", full=False, sequence=3, base=2), [location(root, "/ca/root.pem")])
    assert registry.get_certificate(inter.fingerprint).issuer_fingerprint == root.fingerprint


def test_chain_in_one_batch_and_key_ids_pick_the_right_ca(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1")
    root = root_ca()
    # two CAs with the same name but different keys (a re-keyed CA)
    old_ca = intermediate_ca("Issuing CA", root)
    new_ca = intermediate_ca("Issuing CA", root)
    web_old = leaf("old.example.com", old_ca)
    web_new = leaf("new.example.com", new_ca)
    # leaves first in the batch: the registry orders inserts so issuers come first
    store_report(registry, "a1", header("r1", full=True, sequence=1), [
        location(web_old, "/ssl/old.pem"), location(web_new, "/ssl/new.pem"),
        location(new_ca, "/ca/new.pem"), location(old_ca, "/ca/old.pem"), location(root, "/ca/root.pem"),
    ])
    assert registry.get_certificate(web_old.fingerprint).issuer_fingerprint == old_ca.fingerprint
    assert registry.get_certificate(web_new.fingerprint).issuer_fingerprint == new_ca.fingerprint
    assert registry.get_certificate(new_ca.fingerprint).issuer_fingerprint == root.fingerprint


def test_reverse_link_respects_key_ids(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1")
    root = root_ca()
    ca_a = intermediate_ca("Issuing CA", root)
    ca_b = intermediate_ca("Issuing CA", root)
    web_b = leaf("b.example.com", ca_b)
    store_report(registry, "a1", header("r1", full=True, sequence=1), [location(web_b, "/ssl/b.pem")])
    # same DN, wrong key: no link
    store_report(registry, "a1", header("r2", full=False, sequence=2, base=1), [location(ca_a, "/ca/a.pem")])
    assert registry.get_certificate(web_b.fingerprint).issuer_fingerprint == ""
    store_report(registry, "a1", header("r3", full=False, sequence=3, base=2), [location(ca_b, "/ca/b.pem")])
    assert registry.get_certificate(web_b.fingerprint).issuer_fingerprint == ca_b.fingerprint


# -- full and delta reports ------------------------------------------------------

def test_full_then_delta_adds_changes_and_removes(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1")
    ca = root_ca()
    a, b, c = (leaf(f"{n}.example.com", ca) for n in "abc")
    la, lb, lc = location(a, "/ssl/a.pem"), location(b, "/ssl/b.pem"), location(c, "/ssl/c.pem")
    r1 = store_report(registry, "a1", header("r1", full=True, sequence=1), [la, lb, lc])
    assert (r1.stored, r1.sequence, r1.resync_required) == (True, 1, False)
    assert (r1.locations_upserted, r1.locations_removed, r1.certificates_new) == (3, 0, 3)

    b2 = leaf("b.example.com", ca)                 # b renewed in place
    d = leaf("d.example.com", ca)                  # a new file
    t1 = T0 + HOUR
    r2 = store_report(registry, "a1", header("r2", full=False, sequence=2, base=1),
                      [location(b2, "/ssl/b.pem"), location(d, "/ssl/d.pem")], [key_of(lc)], now=t1)
    assert (r2.stored, r2.sequence, r2.resync_required) == (True, 2, False)
    assert (r2.locations_upserted, r2.locations_removed, r2.certificates_new) == (2, 1, 2)

    assert locs_by_path(registry) == {
        "/ssl/a.pem": (a.fingerprint, "present"),
        "/ssl/b.pem": (b2.fingerprint, "present"),
        "/ssl/d.pem": (d.fingerprint, "present"),
    }
    # the renewed location starts a new history with its new certificate; c is kept, removed
    vb = registry.get_certificate(b2.fingerprint).locations[0]
    assert vb.first_seen == vb.last_seen == t1
    (vc,) = registry.get_certificate(c.fingerprint).locations
    assert (vc.status, vc.removed_at, vc.last_seen) == ("removed", t1, T0)
    va = registry.get_certificate(a.fingerprint).locations[0]
    assert va.last_seen == T0                      # untouched by the delta
    agent = registry.get_agent("a1")
    assert (agent.last_sequence, agent.location_count, agent.last_seen) == (2, 3, t1)


def test_full_report_removes_what_it_does_not_list(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1")
    make_agent("a2", "db1.example.com")
    ca = root_ca()
    certs = [leaf(f"h{i}.example.com", ca) for i in range(10)]
    locs = [location(c, f"/ssl/{i}.pem") for i, c in enumerate(certs)]
    store_report(registry, "a1", header("r1", full=True, sequence=1), locs, chunk=3)
    other = leaf("other.example.com", ca)
    store_report(registry, "a2", header("o1", full=True, sequence=1, hostname="db1.example.com"),
                 [location(other, "/ssl/other.pem")])

    keep = locs[::2]
    r = store_report(registry, "a1", header("r2", full=True, sequence=2), keep, chunk=2, now=T0 + HOUR)
    assert (r.locations_upserted, r.locations_removed, r.certificates_new) == (5, 5, 0)
    seen = locs_by_path(registry, include_removed=True)
    assert {p for p, (_, s) in seen.items() if s == "present"} == {x.path for x in keep} | {"/ssl/other.pem"}
    assert {p for p, (_, s) in seen.items() if s == "removed"} == {x.path for x in locs[1::2]}
    assert registry.get_agent("a2").location_count == 1      # another agent's locations are not touched
    assert registry.get_agent("a1").location_count == 5


def test_removed_location_keeps_history_and_comes_back(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1")
    ca = root_ca()
    a, b = leaf("a.example.com", ca), leaf("b.example.com", ca)
    la, lb = location(a, "/ssl/a.pem"), location(b, "/ssl/b.pem")
    store_report(registry, "a1", header("r1", full=True, sequence=1), [la, lb])
    store_report(registry, "a1", header("r2", full=True, sequence=2), [la], now=T0 + HOUR)

    assert b.fingerprint not in {c.fingerprint for c in registry.list_certificates(CertFilter())}
    listed = {c.fingerprint: c for c in registry.list_certificates(CertFilter(include_removed=True))}
    (gone,) = listed[b.fingerprint].locations
    assert (gone.status, gone.removed_at, gone.first_seen, gone.last_seen) == ("removed", T0 + HOUR, T0, T0)

    r = store_report(registry, "a1", header("r3", full=True, sequence=3), [la, lb], now=T0 + 2 * HOUR)
    assert (r.locations_removed, r.certificates_new) == (0, 0)
    (back,) = registry.get_certificate(b.fingerprint).locations
    assert (back.status, back.removed_at, back.first_seen, back.last_seen) == ("present", None, T0, T0 + 2 * HOUR)


def test_repeated_report_id_is_idempotent(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1")
    ca = root_ca()
    la = location(leaf("a.example.com", ca), "/ssl/a.pem")
    lb = location(leaf("b.example.com", ca), "/ssl/b.pem")
    store_report(registry, "a1", header("r1", full=True, sequence=1), [la, lb])
    hdr = header("r2", full=False, sequence=2, base=1)
    first = store_report(registry, "a1", hdr, [], [key_of(lb)], now=T0 + HOUR)
    assert (first.stored, first.sequence, first.locations_removed) == (True, 2, 1)

    # the agent did not get the answer and sends the same report again
    again = store_report(registry, "a1", hdr, [], [key_of(lb)], now=T0 + 2 * HOUR)
    assert (again.stored, again.sequence, again.resync_required) == (True, 2, False)
    assert (again.locations_upserted, again.locations_removed, again.certificates_new) == (0, 0, 0)
    assert registry.get_agent("a1").last_seen == T0 + HOUR   # nothing applied
    assert registry.get_certificate(lb.fingerprint).locations[0].removed_at == T0 + HOUR


def test_delta_on_the_wrong_base_asks_for_a_full_report(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1")
    ca = root_ca()
    la = location(leaf("a.example.com", ca), "/ssl/a.pem")
    store_report(registry, "a1", header("r1", full=True, sequence=5), [la])
    lb = location(leaf("b.example.com", ca), "/ssl/b.pem")
    r = store_report(registry, "a1", header("r2", full=False, sequence=7, base=6), [lb], [key_of(la)],
                     [scan_error("/x.p12")])
    assert (r.stored, r.sequence, r.resync_required) == (False, 5, True)
    assert "sequence 6" in r.message and "sequence 5" in r.message and "full report" in r.message
    assert set(locs_by_path(registry)) == {"/ssl/a.pem"}            # nothing applied
    assert registry.list_scan_errors("a1") == []
    with pytest.raises(NotFound):
        registry.get_certificate(lb.fingerprint)
    r = store_report(registry, "a1", header("r3", full=True, sequence=8), [la, lb])
    assert (r.stored, r.sequence, r.resync_required) == (True, 8, False)
    r = store_report(registry, "a1", header("r4", full=False, sequence=9, base=8), [])
    assert (r.stored, r.sequence) == (True, 9)


def test_admin_resync_request(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1")
    make_agent("a2", "db1.example.com")
    store_report(registry, "a1", header("r1", full=True, sequence=1), [])
    assert registry.request_resync("a1") == 1
    assert registry.request_resync("no-such-agent") == 0
    r = store_report(registry, "a1", header("r2", full=False, sequence=2, base=1), [])
    assert (r.stored, r.resync_required) == (True, True)      # the delta is stored, but a full one is wanted
    r = store_report(registry, "a1", header("r3", full=True, sequence=3), [])
    assert (r.stored, r.resync_required) == (True, False)
    r = store_report(registry, "a1", header("r4", full=False, sequence=4, base=3), [])
    assert r.resync_required is False

    registry.revoke_agent("a2", "decommissioned", T0)
    assert registry.request_resync(None) == 1                  # all active agents


def test_scan_errors_are_replaced_by_each_report(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1")
    store_report(registry, "a1", header("r1", full=True, sequence=1), [],
                 errors=[scan_error("/a.p12"), scan_error("/b.jks", "corrupt", "not a keystore")])
    assert [(e.path, e.reason) for e in registry.list_scan_errors("a1")] == [("/a.p12", "wrong_password"),
                                                                            ("/b.jks", "corrupt")]
    assert registry.list_scan_errors("a1")[0].observed_at == T0
    store_report(registry, "a1", header("r2", full=False, sequence=2, base=1), [], errors=[scan_error("/b.jks")])
    assert [(e.path, e.reason) for e in registry.get_agent("a1").errors] == [("/b.jks", "wrong_password")]
    store_report(registry, "a1", header("r3", full=False, sequence=3, base=2), [])
    assert registry.list_scan_errors("a1") == []
    with pytest.raises(NotFound):
        registry.list_scan_errors("nobody")


# -- bad input and atomicity ------------------------------------------------------------

def test_fingerprint_mismatch_is_rejected_and_nothing_stored(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1")
    ca = root_ca()
    good = location(leaf("a.example.com", ca), "/ssl/a.pem")
    bad = location(leaf("b.example.com", ca), "/ssl/b.pem", fingerprint="00" * 32)
    txn = registry.begin_report("a1", header("r1", full=True, sequence=1), T0)
    txn.add_upserts([good])
    with pytest.raises(InvalidInput, match="fingerprint mismatch at pem:/ssl/b.pem"):
        txn.add_upserts([bad])
    txn.abort()                                                   # what the servicer does; harmless twice
    with pytest.raises(RuntimeError):
        txn.finish()
    assert list(registry.list_certificates(CertFilter(include_removed=True))) == []
    assert registry.get_agent("a1").last_sequence == 0


def test_aborted_report_stores_nothing(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1")
    ca = root_ca()
    with registry.begin_report("a1", header("r1", full=True, sequence=1), T0) as txn:
        txn.add_upserts([location(leaf("a.example.com", ca), "/ssl/a.pem")])
        txn.add_errors([scan_error("/x.p12")])
        txn.abort()
    assert list(registry.list_certificates(CertFilter(include_removed=True))) == []
    assert registry.get_agent("a1").last_sequence == 0 and registry.list_scan_errors("a1") == []
    # the same report id can then be sent and stored
    r = store_report(registry, "a1", header("r1", full=True, sequence=1),
                     [location(leaf("a.example.com", ca), "/ssl/a.pem")])
    assert r.stored and r.locations_upserted == 1


def test_unparseable_certificate_becomes_a_scan_error(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1")
    ca = root_ca()
    junk = b"\x30\x03\x02\x01\x01"
    r = store_report(registry, "a1", header("r1", full=True, sequence=1), [
        location(leaf("a.example.com", ca), "/ssl/a.pem"),
        location(junk, "/ssl/junk.pem", fingerprint=hashlib.sha256(junk).hexdigest()),
    ])
    assert (r.stored, r.locations_upserted) == (True, 1)
    (err,) = registry.list_scan_errors("a1")
    assert (err.path, err.reason) == ("/ssl/junk.pem", "corrupt")
    assert "not a parseable X.509 certificate" in err.message


def test_reports_need_a_known_active_agent(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFound):
        registry.begin_report("nobody", header("r1", full=True, sequence=1), T0)
    make_agent("a1")
    registry.revoke_agent("a1", "stolen", T0)
    with pytest.raises(PermissionDenied, match="revoked"):
        registry.begin_report("a1", header("r1", full=True, sequence=1), T0)


def test_host_facts_follow_the_reports(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1")
    store_report(registry, "a1", header("r1", full=True, sequence=1, hostname="web1.example.com",
                                        os_version="Debian 13", labels={"env": "prod"}), [], now=T0 + HOUR)
    a = registry.get_agent("a1")
    assert (a.os_version, a.labels, a.last_seen, a.last_sequence) == ("Debian 13", {"env": "prod"}, T0 + HOUR, 1)


def test_many_certificates_in_chunks_parsed_once(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1")
    ca = intermediate_ca("Bulk CA", root_ca())
    key = ca.key  # reuse one key: signing is the slow part of making test certificates
    certs = [issue(f"bulk{i}.example.com", issuer=ca, key=key) for i in range(600)]
    # the CA sits in many chains: the same certificate at many locations
    locs = [location(c, f"/ssl/{i}.pem") for i, c in enumerate(certs)]
    locs += [location(ca, f"/ssl/{i}.pem", chain_index=1) for i in range(600)]
    r = store_report(registry, "a1", header("r1", full=True, sequence=1), locs, chunk=250)
    assert (r.locations_upserted, r.certificates_new) == (1200, 601)
    r = store_report(registry, "a1", header("r2", full=True, sequence=2), locs, chunk=250, now=T0 + HOUR)
    assert (r.locations_upserted, r.locations_removed, r.certificates_new) == (1200, 0, 0)
    registry.certificates.PAGE_SIZE = 64                          # stream in many pages
    listed = list(registry.list_certificates(CertFilter()))
    assert len(listed) == 601
    assert [c.not_after for c in listed] == sorted(c.not_after for c in listed)
    assert all(c.issuer_fingerprint == ca.fingerprint for c in listed if c.fingerprint != ca.fingerprint)
    assert len(next(c for c in listed if c.fingerprint == ca.fingerprint).locations) == 600


def test_concurrent_reports_sharing_new_certificates(registry: Registry, make_agent, db_url: str) -> None:  # type: ignore[no-untyped-def]
    """Two agents (through two collectors) report the same new certificates at the same time."""

    make_agent("a1")
    make_agent("a2", "web2.example.com")
    ca = intermediate_ca("Shared CA", root_ca())
    shared = [leaf(f"s{i}.example.com", ca, key=ca.key) for i in range(40)]
    own = {a: [leaf(f"{a}-{i}.example.com", ca, key=ca.key) for i in range(10)] for a in ("a1", "a2")}
    other = Registry.open(db_url)
    results: dict[str, object] = {}
    barrier = threading.Barrier(2)

    def report(reg: Registry, agent_id: str, hostname: str) -> None:
        locs = [location(c, f"/ssl/{i}.pem") for i, c in enumerate([ca, *shared, *own[agent_id]])]
        barrier.wait()
        try:
            results[agent_id] = store_report(reg, agent_id, header(f"{agent_id}-r1", full=True, sequence=1,
                                                                  hostname=hostname), locs, chunk=16)
        except Exception as e:  # noqa: BLE001
            results[agent_id] = e

    threads = [threading.Thread(target=report, args=(registry, "a1", "web1.example.com")),
               threading.Thread(target=report, args=(other, "a2", "web2.example.com"))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        other.close()
    r1, r2 = results["a1"], results["a2"]
    assert not isinstance(r1, Exception) and not isinstance(r2, Exception), results
    assert r1.certificates_new + r2.certificates_new == 1 + 40 + 20      # each certificate stored once
    assert registry.get_agent("a1").location_count == registry.get_agent("a2").location_count == 51
    listed = list(registry.list_certificates(CertFilter()))
    assert len(listed) == 61
    assert all(c.issuer_fingerprint == ca.fingerprint for c in listed if c.fingerprint != ca.fingerprint)
