"""Who may hold which name, as pure decisions (collector/domain/authority.py, collector/domain/approvals.py)."""
from __future__ import annotations

import datetime as dt

import pytest

from collector.domain.approvals import ApprovalPolicy, RequestShape, atypical
from collector.domain.authority import (
    Allow, Grant, Host, conflicts, decide, holder, owning_team, parse_pattern, to_alabel,
)
from collector.errors import InvalidInput

WEB = Host("a-web", "web-01.example.com", {"env": "prod"})
ROGUE = Host("a-rogue", "build-07.example.com", {})
GRANTS = [Grant(1, "web-team", "*.shop.example.com"), Grant(2, "payments", "payments.example.com"),
          Grant(3, "net", "10.1.0.0/16")]
ALLOWS = [Allow(1, "*.shop.example.com", hosts="web-*"), Allow(2, "payments.example.com", agent_id="a-pay"),
          Allow(3, "10.1.0.0/16", label="env=prod")]


@pytest.mark.parametrize(("text", "why"), [
    ("", "must not be empty"), ("*.com", "top-level domain"), ("*", "top-level"), ("a.*.example.com", "leftmost"),
    ("w*b.example.com", "whole label"), ("-bad.example.com", "not a valid DNS label"),
    ("10.0.0.0/33", "not an address"), ("0.0.0.0/0", "every address"), ("10.0.0.1/8", "not an address"),
    ("exa mple.com", "not a valid DNS label"),
])
def test_invalid_patterns_are_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        parse_pattern(text)


def test_patterns_are_canonical() -> None:
    assert parse_pattern("*.Shop.Example.COM.").text == "*.shop.example.com"
    assert parse_pattern("10.1.0.0/16").kind == "ip" and parse_pattern("10.0.0.5").text == "10.0.0.5"
    assert parse_pattern("2001:db8::/32").text == "2001:db8::/32"
    assert parse_pattern("*.bücher.example").text == "*.xn--bcher-kva.example"


def test_wildcards_cover_one_label_or_any_depth() -> None:
    one, deep = parse_pattern("*.shop.example.com"), parse_pattern("**.shop.example.com")
    assert one.covers("a.shop.example.com") and one.covers("*.shop.example.com")
    assert not one.covers("a.b.shop.example.com") and not one.covers("shop.example.com")
    assert deep.covers("a.b.shop.example.com") and deep.covers("shop.example.com")
    assert not deep.covers("evilshop.example.com")


def test_every_name_must_be_granted_and_allowed_to_the_host() -> None:
    ok = decide(["a.shop.example.com", "b.shop.example.com"], WEB, GRANTS, ALLOWS)
    assert ok.authorized and "web-team" in ok.explain()[0] and "allow #1" in ok.explain()[0]
    # one name outside the grants spoils the whole request, and says which
    mixed = decide(["a.shop.example.com", "api.example.com"], WEB, GRANTS, ALLOWS)
    assert not mixed.authorized and mixed.reasons == ["api.example.com: no grant covers this name"]
    # held, but this host may not receive it: the rogue agent reporting the victim's certificate
    rogue = decide(["payments.example.com"], ROGUE, GRANTS, ALLOWS)
    assert not rogue.authorized
    assert "held by payments" in rogue.reasons[0] and "build-07.example.com" in rogue.reasons[0]
    assert not decide([], WEB, GRANTS, ALLOWS).authorized


def test_ip_sans_need_an_address_grant_and_dns_patterns_never_cover_them() -> None:
    assert decide(["10.1.2.3"], WEB, GRANTS, ALLOWS).authorized         # label env=prod
    assert not decide(["10.1.2.3"], ROGUE, GRANTS, ALLOWS).authorized
    dns_only = [Grant(9, "x", "**.example.com")]
    d = decide(["10.9.9.9"], WEB, dns_only, [Allow(9, "**.example.com", hosts="**")])
    assert not d.authorized and "only by an address grant" in d.reasons[0]


def test_idn_names_are_compared_as_a_labels() -> None:
    grants = [Grant(1, "books", "*.bücher.example")]
    allows = [Allow(1, "*.xn--bcher-kva.example", hosts="**")]
    assert decide(["www.xn--bcher-kva.example"], WEB, grants, allows).authorized
    assert decide(["www.bücher.example"], WEB, grants, allows).authorized
    assert to_alabel("WWW.Bücher.example.") == "www.xn--bcher-kva.example"


def test_hosts_are_chosen_by_recorded_name_id_or_collector_label_only() -> None:
    allow = Allow(1, "*.shop.example.com", hosts="web-*")
    assert allow.includes(WEB) and not allow.includes(Host("x", "", {}))
    assert Allow(2, "p.example.com", label="env=prod").includes(WEB)
    assert not Allow(2, "p.example.com", label="env=prod").includes(Host("x", "web-01.example.com", {"env": "dev"}))


def test_overlapping_grants_of_other_owners_are_conflicts_and_the_winner_decides() -> None:
    grants = [Grant(1, "a", "*.example.com")]
    assert [g.id for g in conflicts(parse_pattern("shop.example.com"), "b", grants)] == [1]
    assert conflicts(parse_pattern("shop.example.com"), "a", grants) == []          # same owner: fine
    assert conflicts(parse_pattern("x.y.example.com"), "b", grants) == []           # not covered by one label
    assert [g.id for g in conflicts(parse_pattern("**.example.com"), "b", grants)] == [1]
    assert conflicts(parse_pattern("10.2.0.0/16"), "b", [Grant(2, "a", "10.1.0.0/16")]) == []
    assert conflicts(parse_pattern("10.1.2.0/24"), "b", [Grant(2, "a", "10.1.0.0/16")])
    # the more specific grant holds the name, unless an admin marked another the winner
    both = [Grant(1, "a", "*.example.com"), Grant(2, "b", "shop.example.com")]
    assert holder("shop.example.com", both).owner == "b"
    assert holder("shop.example.com", [Grant(1, "a", "*.example.com", wins=True), both[1]]).owner == "a"
    assert owning_team(["shop.example.com", "www.example.com"], both) is None     # two holders
    assert owning_team(["www.example.com"], both) == "a"


def test_the_approval_policy_names_what_is_atypical() -> None:
    policy = ApprovalPolicy(always_templates=frozenset({"prod"}), wildcards=True, new_names=True)
    assert atypical(ApprovalPolicy(), RequestShape("web", ("a.example.com",))) == []
    reasons = atypical(policy, RequestShape("prod", ("*.example.com",), validity=dt.timedelta(days=400),
                                            default_validity=dt.timedelta(days=90), never_issued=("*.example.com",),
                                            by_owner_role=True, outside_team_grants=("*.example.com",)))
    assert len(reasons) == 5 and reasons[0] == "template prod always needs an approval"
    assert ApprovalPolicy().expire_after == dt.timedelta(days=7) and not ApprovalPolicy().trust_on_first_sight
