"""Enrollment tokens, agents and their identities, admin identities."""
from __future__ import annotations

import datetime as dt
import threading

import pytest

from collector.errors import InvalidInput, NotFound, PermissionDenied, TokenExpired, TokenInvalid, TokenUsed
from collector.registry import Registry
from tests.helpers.registry_certs import T0, header, host, leaf, location, root_ca, scan_error, store_report

HOUR = dt.timedelta(hours=1)
TOKEN = "5" * 64


def test_token_is_single_use(registry: Registry) -> None:
    registry.create_token(TOKEN, T0 + HOUR, "for web1", T0)
    registry.enroll_agent(TOKEN, "a1", host("web1.example.com"), "0A:1B", T0 + dt.timedelta(days=30), T0)
    with pytest.raises(TokenUsed, match="enrollment token already used"):
        registry.enroll_agent(TOKEN, "a2", host("web2.example.com"), "2c", T0 + dt.timedelta(days=30), T0)
    with pytest.raises(TokenUsed):
        registry.consume_token(TOKEN, "a3", T0)
    with pytest.raises(NotFound):                    # the refused enrollment left no agent behind
        registry.get_agent("a2")
    a = registry.get_agent("a1")
    assert (a.hostname, a.status, a.identity_serial, a.last_sequence) == ("web1.example.com", "active", "a1b", 0)
    assert a.first_seen == T0 and a.identity_not_after == T0 + dt.timedelta(days=30)


def test_expired_and_unknown_tokens_have_their_own_errors(registry: Registry) -> None:
    registry.create_token(TOKEN, T0 + HOUR, "", T0)
    with pytest.raises(TokenExpired, match=r"enrollment token expired at 2026-01-01T13:00:00\+00:00"):
        registry.enroll_agent(TOKEN, "a1", host(), "1", T0 + dt.timedelta(days=1), T0 + HOUR)
    with pytest.raises(TokenInvalid, match="unknown enrollment token"):
        registry.consume_token("6" * 64, "a1", T0)
    registry.consume_token(TOKEN, "a1", T0 + HOUR - dt.timedelta(seconds=1))   # still valid just before


def test_concurrent_consumption_only_one_wins(registry: Registry, db_url: str) -> None:
    registry.create_token(TOKEN, T0 + HOUR, "", T0)
    others = [Registry.open(db_url) for _ in range(2)]   # several collectors on one database
    regs = [registry, *others]
    n = 8
    barrier = threading.Barrier(n)
    outcomes: list[object] = [None] * n

    def enroll(i: int) -> None:
        barrier.wait()
        try:
            regs[i % len(regs)].enroll_agent(TOKEN, f"agent-{i}", host(f"h{i}"), f"{i + 1:x}",
                                             T0 + dt.timedelta(days=1), T0)
            outcomes[i] = "ok"
        except Exception as e:  # noqa: BLE001
            outcomes[i] = e

    threads = [threading.Thread(target=enroll, args=(i,)) for i in range(n)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        for r in others:
            r.close()
    assert outcomes.count("ok") == 1, outcomes
    assert all(isinstance(o, TokenUsed) for o in outcomes if o != "ok"), outcomes
    assert len(list(registry.list_agents())) == 1


def test_enrolling_an_existing_agent_id_is_refused(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1")
    registry.create_token(TOKEN, T0 + HOUR, "", T0)
    with pytest.raises(InvalidInput, match="already enrolled"):
        registry.enroll_agent(TOKEN, "a1", host(), "99", T0 + HOUR, T0)
    registry.enroll_agent(TOKEN, "a2", host(), "99", T0 + HOUR, T0)   # the token was not spent


def test_identity_validity_renewal_overlap_and_revocation(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a1", serial="00aa")
    assert registry.agent_identity_valid("a1", "aa", T0)
    assert registry.agent_identity_valid("a1", "AA", T0)
    assert not registry.agent_identity_valid("a1", "bb", T0)
    assert not registry.agent_identity_valid("nobody", "aa", T0)

    t1 = T0 + dt.timedelta(days=20)
    registry.update_agent_identity("a1", "bb", t1 + dt.timedelta(days=30), t1)
    assert registry.get_agent("a1").identity_serial == "bb"
    assert registry.agent_identity_valid("a1", "bb", t1)
    assert registry.agent_identity_valid("a1", "aa", t1 + HOUR)          # overlap after renewal
    assert not registry.agent_identity_valid("a1", "aa", t1 + Registry.IDENTITY_OVERLAP)
    registry.update_agent_identity("a1", "bb", t1 + dt.timedelta(days=31), t1 + HOUR)   # repeat: harmless
    assert registry.agent_identity_valid("a1", "aa", t1 + 2 * HOUR)

    assert registry.revoke_agent("a1", "host decommissioned", t1 + 3 * HOUR) is True
    assert registry.revoke_agent("a1", "again", t1 + 4 * HOUR) is False
    assert registry.revoke_agent("nobody", "x", t1) is False
    assert not registry.agent_identity_valid("a1", "bb", t1 + 3 * HOUR)
    assert registry.get_agent("a1").status == "revoked"
    with pytest.raises(PermissionDenied, match="revoked"):
        registry.update_agent_identity("a1", "cc", t1 + dt.timedelta(days=60), t1 + 5 * HOUR)
    with pytest.raises(NotFound):
        registry.update_agent_identity("nobody", "cc", t1, t1)


def test_agents_listing_touch_and_counts(registry: Registry, make_agent) -> None:  # type: ignore[no-untyped-def]
    make_agent("a2", "db1.example.com")
    make_agent("a1", "web1.example.com")
    ca = root_ca()
    store_report(registry, "a1", header("r1", full=True, sequence=1),
                 [location(leaf("x.example.com", ca), "/x.pem"), location(ca, "/ca.pem")],
                 errors=[scan_error("/bad.p12")])
    registry.touch_agent("a2", host("db1.example.com", agent_version="0.2.0", addresses=("10.0.0.2", "fe80::1")),
                         T0 + HOUR)
    with pytest.raises(NotFound):
        registry.touch_agent("nobody", host(), T0)
    with pytest.raises(NotFound, match="no agent nobody"):
        registry.get_agent("nobody")

    registry.agents.PAGE_SIZE = 1
    agents = list(registry.list_agents())
    assert [a.agent_id for a in agents] == ["a1", "a2"]
    a1, a2 = agents
    assert (a1.location_count, len(a1.errors), a1.last_sequence) == (2, 1, 1)
    assert (a2.location_count, a2.errors, a2.agent_version, a2.addresses) == (0, (), "0.2.0", ("10.0.0.2", "fe80::1"))
    assert a2.last_seen == T0 + HOUR and a2.last_seen.tzinfo == dt.timezone.utc


def test_admin_identities(registry: Registry) -> None:
    registry.record_admin_identity("0F:A0", "alice", "admin", T0 + dt.timedelta(days=365), T0)
    registry.record_admin_identity("b0", "bob", "reader", T0 + HOUR, T0)
    assert registry.admin_identity("fa0", T0) == ("alice", "admin", None)
    assert registry.admin_identity("b0", T0) == ("bob", "reader", None)
    assert registry.admin_identity("b0", T0 + HOUR) is None             # expired
    assert registry.admin_identity("ccc", T0) is None                   # unknown
    registry.record_admin_identity("fa0", "alice", "operator", T0 + dt.timedelta(days=365), T0)   # re-recorded
    assert registry.admin_identity("fa0", T0) == ("alice", "operator", None)
    assert registry.revoke_admin_identity("fa0", T0) is True
    assert registry.admin_identity("fa0", T0) is None                   # revoked
    assert registry.revoke_admin_identity("fa0", T0) is False


def test_owner_identities_carry_a_team(registry: Registry) -> None:
    from collector.errors import InvalidInput, NotFound

    year = T0 + dt.timedelta(days=365)
    with pytest.raises(NotFound, match="no owner 'web-team'"):
        registry.record_admin_identity("c1", "wendy", "owner", year, T0, team="web-team")
    registry.owners.create_owner("web-team", T0, contacts=["web@example.com"])
    with pytest.raises(InvalidInput, match="needs a team"):
        registry.record_admin_identity("c1", "wendy", "owner", year, T0)
    with pytest.raises(InvalidInput, match="only role owner takes a team"):
        registry.record_admin_identity("c1", "wendy", "auditor", year, T0, team="web-team")
    assert registry.admin_identity("c1", T0) is None
    registry.record_admin_identity("c1", "wendy", "owner", year, T0, team="Web-Team")
    known = registry.admin_identity("c1", T0)
    assert known == ("wendy", "owner", "web-team") and known.team == "web-team"
