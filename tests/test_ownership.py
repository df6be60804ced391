"""Pure ownership decisions: rule order, each attribute, explicit overrides, label hints, globs, orphans."""
from __future__ import annotations

import datetime as dt

import pytest

from collector.domain import ownership as own
from collector.errors import InvalidInput
from collector.domain.ownership import Assignment, CertFacts, Explicit, Owner, Rule, resolve
from collector.registry.types import CertificateView, LocationView, SanView

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def loc(path: str = "/etc/ssl/web.pem", hostname: str = "web-1.prod.example.com", labels: dict | None = None,
        agent_id: str = "agent-1", store_type: str = "pem", alias: str = "", status: str = "present",
        chain_index: int = 0) -> LocationView:
    return LocationView(
        agent_id=agent_id, hostname=hostname, store_type=store_type, path=path, alias=alias, chain_index=chain_index,
        has_private_key=False, key_encrypted=False, key_match="no_key", entry_type="certificate", status=status,
        first_seen=T0, last_seen=T0, removed_at=None, file_owner="root", file_group="root", file_mode=0o644,
        file_mtime=None, labels=labels or {},
    )


def cert(fp: str = "aa" * 32, cn: str = "www.shop.example.com", sans: tuple[str, ...] = ("www.shop.example.com",),
         issuer: str = "CN=Example Issuing CA 1,O=Example", locations: tuple[LocationView, ...] = ()) -> CertificateView:
    return CertificateView(
        fingerprint=fp, subject=f"CN={cn}", issuer=issuer, serial="1", sans=tuple(SanView("dns", s) for s in sans),
        not_before=T0, not_after=T0 + dt.timedelta(days=90), key_type="EC", key_size=256, key_curve="secp256r1",
        signature_algorithm="ecdsa-with-SHA256", is_ca=False, self_signed=False, key_usage=(), extended_key_usage=(),
        issuer_fingerprint="", der=b"", locations=locations,
    )


# -- rule order and attributes -------------------------------------------------------------


def test_first_matching_rule_wins_per_attribute() -> None:
    rules = [
        Rule("crit-only", 10, criticality="high", host="*.prod.example.com"),
        Rule("web", 20, owner="web-team", environment="prod", path="/etc/ssl/**"),
        Rule("fallback", 30, owner="platform", environment="test", service="misc"),
    ]
    a = resolve(cert(), loc(), rules)
    assert (a.owner, a.environment, a.criticality, a.service) == ("web-team", "prod", "high", "misc")
    assert a.source == "rule:web"
    assert a.sources == {"criticality": "rule:crit-only", "owner": "rule:web", "environment": "rule:web",
                         "service": "rule:fallback"}


def test_rules_apply_by_priority_not_list_order() -> None:
    rules = [Rule("late", 50, owner="b"), Rule("early", 5, owner="a")]
    assert resolve(cert(), loc(), rules).owner == "a"


def test_no_rule_matches() -> None:
    a = resolve(cert(), loc(), [Rule("other", 10, owner="x", path="/opt/**")])
    assert a == Assignment()
    assert a.source is None


def test_all_conditions_must_hold() -> None:
    r = Rule("both", 10, owner="x", path="/etc/ssl/**", host="db-*")
    assert resolve(cert(), loc(hostname="web-1.example.com"), [r]).owner is None
    assert resolve(cert(), loc(hostname="db-1.example.com"), [r]).owner == "x"


def test_rule_without_conditions_is_a_catch_all() -> None:
    assert resolve(cert(), loc(), [Rule("default", 1000, owner="platform")]).owner == "platform"


@pytest.mark.parametrize("rule, hit", [
    (Rule("r", 1, owner="o", host="web-1.prod.example.com"), True),
    (Rule("r", 1, owner="o", host="WEB-*.prod.example.com"), True),     # case-insensitive
    (Rule("r", 1, owner="o", host="*.example.com"), False),             # * stays within one label
    (Rule("r", 1, owner="o", host="**.example.com"), True),
    (Rule("r", 1, owner="o", host="web-?"), True),                      # dotless: the short name
    (Rule("r", 1, owner="o", host="db-*"), False),
    (Rule("r", 1, owner="o", san="*.shop.example.com"), True),
    (Rule("r", 1, owner="o", san="*.example.com"), False),
    (Rule("r", 1, owner="o", san="**.example.com"), True),
    (Rule("r", 1, owner="o", issuer="issuing ca"), True),               # substring, case-insensitive
    (Rule("r", 1, owner="o", issuer="Let's Encrypt"), False),
    (Rule("r", 1, owner="o", labels={"environment": "prod"}), True),
    (Rule("r", 1, owner="o", labels={"environment": "prod", "tier": "web"}), False),
    (Rule("r", 1, owner="o", labels={"environment": "test"}), False),
])
def test_each_condition(rule: Rule, hit: bool) -> None:
    location = loc(labels={"environment": "prod"})
    assert (resolve(cert(), location, [rule]).owner == "o") is hit


def test_san_falls_back_to_cn_without_dns_sans() -> None:
    r = Rule("r", 1, owner="o", san="legacy.example.com")
    assert resolve(cert(cn="legacy.example.com", sans=()), loc(), [r]).owner == "o"
    assert resolve(cert(cn="legacy.example.com", sans=("other.example.com",)), loc(), [r]).owner is None


def test_location_conditions_do_not_match_without_a_location() -> None:
    rules = [Rule("p", 1, owner="by-path", path="/etc/**"), Rule("i", 2, owner="by-issuer", issuer="Example")]
    assert resolve(cert(), None, rules).owner == "by-issuer"
    assert resolve(CertFacts(fingerprint="ab", issuer="CN=Example"), None, rules).owner == "by-issuer"


# -- globs --------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern, path, hit", [
    ("/etc/ssl/**", "/etc/ssl/a.pem", True),
    ("/etc/ssl/**", "/etc/ssl/x/y/z.pem", True),
    ("/etc/ssl/**/*.pem", "/etc/ssl/a.pem", True),          # ** is zero or more directories
    ("/etc/ssl/**/*.pem", "/etc/ssl/x/y/a.pem", True),
    ("/etc/ssl/**/*.pem", "/etc/ssl/x/a.crt", False),
    ("/etc/ssl/*.pem", "/etc/ssl/x/a.pem", False),          # * stays in one segment
    ("/etc/ssl/*.pem", "/etc/ssl/a.pem", True),
    ("/etc/ssl/?.pem", "/etc/ssl/a.pem", True),
    ("/etc/ssl/[ab].pem", "/etc/ssl/b.pem", True),
    ("/etc/ssl/[!ab].pem", "/etc/ssl/b.pem", False),
    ("/etc/ssl/*.pem", "/etc/SSL/a.pem", False),            # POSIX paths are case-sensitive
    ("*.p12", "/opt/app/conf/keystore.p12", True),          # no slash: the file name
    ("keystore.*", "/opt/app/keystore.jks", True),
    ("/opt/**/conf/*.jks", "/opt/app/conf/k.jks", True),
    ("/opt/**/conf/*.jks", "/opt/conf/k.jks", True),
    ("C:/ProgramData/**", "C:\\ProgramData\\app\\cert.pfx", True),   # backslashes count as /
    ("c:\\programdata\\**\\*.PFX", "C:\\ProgramData\\app\\cert.pfx", True),   # Windows: case-insensitive
    ("/etc/ssl/[unclosed", "/etc/ssl/[unclosed", True),
])
def test_path_globs(pattern: str, path: str, hit: bool) -> None:
    assert own.path_matches(pattern, path) is hit


def test_bad_globs_and_values_are_clear() -> None:
    with pytest.raises(InvalidInput, match="criticality 'urgent' is not one of low, medium, high, critical"):
        own.check_criticality("urgent")
    with pytest.raises(InvalidInput, match="environment"):
        own.check_environment("pro d")
    with pytest.raises(InvalidInput, match="not an e-mail address"):
        own.check_email("team-at-example", "contact")
    with pytest.raises(InvalidInput, match="http"):
        own.check_webhook("ftp://example.com/x")
    with pytest.raises(InvalidInput, match="not valid"):
        own.check_name("web team", "owner name")
    assert own.check_name("Web-Team", "owner name") == "web-team"


# -- explicit assignments and labels ------------------------------------------------------------


def test_explicit_overrides_rules_per_attribute() -> None:
    rules = [Rule("web", 10, owner="web-team", environment="prod", criticality="low")]
    explicit = [Explicit(scope="certificate", fingerprint="aa" * 32, owner="payments", criticality="critical")]
    a = resolve(cert(), loc(), rules, explicit)
    assert (a.owner, a.environment, a.criticality) == ("payments", "prod", "critical")
    assert a.source == "explicit"
    assert a.sources["environment"] == "rule:web"


def test_location_assignment_beats_certificate_assignment_and_ignores_others() -> None:
    explicit = [
        Explicit(scope="certificate", fingerprint="aa" * 32, owner="cert-owner", service="shop"),
        Explicit(scope="location", agent_id="agent-1", store_type="pem", path="/etc/ssl/web.pem", owner="loc-owner"),
        Explicit(scope="location", agent_id="agent-2", store_type="pem", path="/etc/ssl/web.pem", owner="elsewhere"),
        Explicit(scope="certificate", fingerprint="bb" * 32, owner="other-cert"),
    ]
    a = resolve(cert(), loc(), [], explicit)
    assert (a.owner, a.service) == ("loc-owner", "shop")
    assert resolve(cert(), loc(agent_id="agent-3"), [], explicit).owner == "cert-owner"
    # the location assignment holds for whatever certificate sits there (e.g. after a renewal)
    assert resolve(cert(fp="cc" * 32), loc(), [], explicit).owner == "loc-owner"
    # without a location only the certificate's own assignment applies
    assert resolve(cert(), None, [], explicit).owner == "cert-owner"


def test_label_hints_fill_what_rules_leave() -> None:
    location = loc(labels={"owner": "Web-Team", "environment": "PROD", "service": "nginx", "criticality": "bogus"})
    a = resolve(cert(), location, [Rule("crit", 10, criticality="medium")])
    assert (a.owner, a.environment, a.service, a.criticality) == ("web-team", "prod", "nginx", "medium")
    assert a.source == "label" and a.sources["criticality"] == "rule:crit"
    # a rule that sets the owner wins over the label
    assert resolve(cert(), location, [Rule("o", 10, owner="platform")]).owner == "platform"
    # an invalid criticality label is no hint
    assert resolve(cert(), location, []).criticality is None


# -- working contacts and orphans ------------------------------------------------------------------


@pytest.mark.parametrize("contacts, webhook, working", [
    (("team@example.com",), "", True),
    ((), "https://hooks.example.com/x", True),
    ((), "http://hooks.example.com/x", False),     # only https counts
    ((), "", False),
    (("not-an-address",), "", False),
])
def test_working_contact(contacts: tuple[str, ...], webhook: str, working: bool) -> None:
    assert Owner("o", contacts=contacts, webhook=webhook).working is working


def test_orphans_by_reason() -> None:
    owners = {"web": Owner("web", contacts=("web@example.com",)), "mute": Owner("mute")}
    rules = [Rule("web", 10, owner="web", path="/etc/ssl/**"), Rule("mute", 20, owner="mute", path="/opt/**")]
    covered = cert("11" * 32, locations=(loc("/etc/ssl/a.pem"),))
    no_owner = cert("22" * 32, locations=(loc("/srv/b.pem"),))
    mute = cert("33" * 32, locations=(loc("/opt/c.pem"),))
    labelled = cert("44" * 32, locations=(loc("/srv/d.pem", labels={"owner": "ghost"}),))
    half = cert("55" * 32, locations=(loc("/etc/ssl/e.pem"), loc("/srv/e.pem", agent_id="agent-2"),
                                      loc("/srv/old.pem", status="removed")))
    found = list(own.orphans_in([covered, no_owner, mute, labelled, half], rules, owners, lambda page: [], page_size=2))
    by_fp = {o.certificate.fingerprint: o for o in found}
    assert set(by_fp) == {"22" * 32, "33" * 32, "44" * 32, "55" * 32}
    assert by_fp["22" * 32].reason == own.NO_OWNER
    assert by_fp["33" * 32].reason == own.NO_WORKING_CONTACT and "mute" in by_fp["33" * 32].detail
    assert by_fp["44" * 32].reason == own.UNKNOWN_OWNER and "ghost" in by_fp["44" * 32].detail
    # only the uncovered present location is listed
    assert [ol.location.path for ol in by_fp["55" * 32].locations] == ["/srv/e.pem"]


def test_orphans_use_the_explicit_assignments_of_each_page() -> None:
    owners = {"web": Owner("web", contacts=("web@example.com",))}
    certs = [cert(f"{i:02x}" * 32, locations=(loc(f"/srv/{i}.pem"),)) for i in range(5)]
    pages: list[int] = []

    def explicit_for(page):  # type: ignore[no-untyped-def]
        pages.append(len(page))
        return [Explicit(scope="certificate", fingerprint=c.fingerprint, owner="web") for c in page
                if c.fingerprint.startswith("03")]

    found = list(own.orphans_in(certs, [], owners, explicit_for, page_size=2))
    assert pages == [2, 2, 1]
    assert [o.certificate.fingerprint[:2] for o in found] == ["00", "01", "02", "04"]
