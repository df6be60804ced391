"""Notification decisions as pure functions: thresholds once each, skip to the smallest,
renewed certificates start again, escalation only without a renewal, one digest per owner."""
from __future__ import annotations

import datetime as dt

from collector.domain import notices as dec
UTC = dt.timezone.utc
NOW = dt.datetime(2026, 3, 1, tzinfo=UTC)


def item(fp: str = "a" * 64, days: float = 10, owner: str = "web", **kw) -> dec.CertItem:  # type: ignore[no-untyped-def]
    return dec.CertItem(fingerprint=fp, subject=f"CN={fp[:4]}", not_after=NOW + dt.timedelta(days=days), owner=owner,
                        places=(dec.Place("web1", "/etc/ssl/a.pem"),), **kw)


def claim(sent: set, notices: list[dec.Notice]) -> None:  # type: ignore[type-arg]
    for n in notices:
        sent.add(n.sent_key)
        sent.update((n.key, t, n.kind, n.owner) for t in n.marks)


def test_each_threshold_once_and_skip_to_smallest() -> None:
    th = dec.Thresholds(escalate_at=None)
    sent: set = set()  # type: ignore[type-arg]
    assert dec.due_notices([item(days=90)], sent, NOW, th) == []
    first = dec.due_notices([item(days=10)], sent, NOW, th)       # crosses 60, 30 and 14 at once
    assert [(n.kind, n.threshold, n.marks) for n in first] == [("expiry", 14, (60, 30))]
    claim(sent, first)
    assert dec.due_notices([item(days=10)], sent, NOW, th) == []    # not again
    assert dec.due_notices([item(days=9)], sent, NOW, th) == []     # nor for larger ones later
    seven = dec.due_notices([item(days=6.5)], sent, NOW, th)
    assert [n.threshold for n in seven] == [7]
    claim(sent, seven)
    assert [n.threshold for n in dec.due_notices([item(days=0.5)], sent, NOW, th)] == [1]


def test_renewed_certificate_starts_again_and_owner_env_thresholds() -> None:
    th = dec.Thresholds(by_environment={"prod": (90, 60, 30, 14, 7, 3, 1)}, by_owner={"db": (5,)}, escalate_at=None)
    sent: set = set()  # type: ignore[type-arg]
    claim(sent, dec.due_notices([item(days=10)], sent, NOW, th))
    renewed = item(fp="b" * 64, days=80, environments=("prod",))
    got = dec.due_notices([renewed], sent, NOW, th)
    assert [(n.key, n.threshold) for n in got] == [("b" * 64, 90)]
    assert dec.due_notices([item(fp="c" * 64, days=10, owner="db")], sent, NOW, th) == []
    assert [n.threshold for n in dec.due_notices([item(fp="c" * 64, days=4, owner="db")], sent, NOW, th)] == [5]


def test_escalation_only_without_a_running_renewal() -> None:
    th = dec.Thresholds()
    running = dec.due_notices([item(days=5, renewal_running=True)], set(), NOW, th)
    assert [n.kind for n in running] == ["expiry"]
    idle = dec.due_notices([item(days=5)], set(), NOW, th)
    assert sorted(n.kind for n in idle) == ["escalation", "expiry"]
    esc = [n for n in idle if n.kind == "escalation"][0]
    assert esc.escalate and esc.threshold == 7
    sent: set = set()  # type: ignore[type-arg]
    claim(sent, idle)
    assert dec.due_notices([item(days=4)], sent, NOW, th) == []


def test_grouped_into_one_digest_per_owner() -> None:
    items = [item(fp="1" * 64, days=3), item(fp="2" * 64, days=20), item(fp="3" * 64, days=3, owner="db"),
             item(fp="4" * 64, days=3, owner="")]
    digests = dec.group_digests(dec.due_notices(items, set(), NOW, dec.Thresholds()))
    assert [d.owner for d in digests] == ["", "db", "web"]
    web = digests[-1]
    assert sorted((n.kind, n.key[:1]) for n in web.notices) == [("escalation", "1"), ("expiry", "1"), ("expiry", "2")]
    assert len(web.escalations) == 1


def test_job_agent_and_violation_events_once() -> None:
    place = dec.Place("web1", "/etc/ssl/a.pem")
    jobs = [dec.JobFact("j1", "failed", "a" * 64, "CN=a", "web", place, "issuer said no"),
            dec.JobFact("j2", "verified", "a" * 64, "CN=a", "web", place),
            dec.JobFact("j3", "stuck", "a" * 64, "CN=a", "", place)]
    got = dec.job_notices(jobs, frozenset())
    assert [(n.kind, n.owner) for n in got] == [("job.failed", "web"), ("job.stuck", "")]
    assert dec.job_notices(jobs, frozenset(n.sent_key for n in got)) == []
    agents = [dec.AgentFact("a1", "web1", NOW - dt.timedelta(hours=30)), dec.AgentFact("a2", "web2", NOW)]
    silent = dec.silent_agent_notices(agents, frozenset(), NOW)
    assert [n.target for n in silent] == ["agent:a1"] and "30 hour" in silent[0].title
    assert dec.silent_agent_notices(agents, frozenset(n.sent_key for n in silent), NOW) == []
    v = dec.violation_notice(rule="sha1", fingerprint="a" * 64, reason="SHA-1 signature", owner="web")
    assert v.kind == "policy.violation" and v.sent_key == (dec.event_key("violation", "a" * 64, "sha1"), 0,
                                                           "policy.violation", "web")
    assert dec.priority_for("critical") == "P1" and dec.priority_for("low", "escalation") == "P3"
    assert dec.retry_delay(1) == dt.timedelta(minutes=1) and dec.retry_delay(20) == dt.timedelta(hours=1)


def test_deciding_keys_say_exactly_when_a_notice_is_due() -> None:
    """The notifier judges only items with an unsent deciding key (an anti-join in the registry):
    for every item and every set of sent keys, a notice is due exactly when one of them is unsent."""
    import itertools

    th = dec.Thresholds(by_environment={"prod": (90, 60, 30, 14, 7, 3, 1)}, by_owner={"db": (5,)}, escalate_at=7)
    fp = "f" * 64
    universe = [(fp, t, kind, owner) for t in (90, 60, 30, 14, 7, 5, 3, 1) for kind in (dec.EXPIRY, dec.ESCALATION)
                for owner in ("web", "db")]
    for days, owner, envs, running in itertools.product((100, 61, 45, 10, 6.5, 2, 0.5, -3), ("web", "db"),
                                                        ((), ("prod",)), (False, True)):
        it = item(fp, days=days, owner=owner, environments=envs, renewal_running=running)
        keys = dec.deciding_keys(it, NOW, th)
        assert len(set(keys)) == len(keys) <= 2
        for k in range(0, len(universe), 3):
            for sent in (set(), set(universe), set(universe[:k]), set(universe[k:]), set(keys), set(keys[:1])):
                due = dec.due_notices([it], sent, NOW, th)
                assert bool(due) == any(key not in sent for key in keys), (days, owner, envs, running, sent)
                assert {n.sent_key for n in due} == {key for key in keys if key not in sent}
