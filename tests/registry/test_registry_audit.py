"""The audit trail on SQLite and PostgreSQL: every change writes its event in its own
transaction, the hash chain verifies, and editing, deleting or reordering an event is
caught and named; retention keeps it verifiable; concurrent writers keep one chain."""
from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Any, Callable

import pytest
from sqlalchemy import text

from collector.domain import jobstates as model
from collector.domain.auditchain import GENESIS_HASH, event_hash, verify_events
from collector.errors import InvalidInput, TokenUsed
from collector.domain.jobstates import InvalidTransition
from collector.registry import Registry
from collector.registry.audit import AuditBroken
from collector.registry.types import LocationSelector
from tests.helpers.registry_certs import T0, header, host, leaf, location, root_ca, store_report

S = dt.timedelta(seconds=1)
DAY = dt.timedelta(days=1)


def actions(registry: Registry) -> list[str]:
    return [e["action"] for e in registry.audit.export()]


def sql(registry: Registry, statement: str, **params: Any) -> None:
    """Tamper with the database directly, as someone with database access could."""
    with registry.engine.begin() as conn:
        conn.execute(text(statement), params)


def some_events(registry: Registry, n: int = 5, start: dt.datetime = T0) -> None:
    for i in range(n):
        registry.create_token(f"{i:064x}", start + DAY, f"token {i}", start + i * S, actor="admin:alice")


@pytest.fixture
def renewable(registry: Registry, make_agent: Callable[..., Any]) -> str:
    """An agent a1 on web1 holding one certificate at /etc/ssl/web.pem; returns its fingerprint."""
    make_agent("a1", "web1.example.com")
    web = leaf("www.example.com", root_ca())
    store_report(registry, "a1", header("r1", full=True, sequence=1), [location(web, "/etc/ssl/web.pem")])
    return web.fingerprint


# -- every change writes its event ---------------------------------------------------------------


def test_every_change_writes_an_event_with_who_what_and_why(registry: Registry, renewable: str) -> None:
    registry.record_admin_identity("0A:BC", "alice", "operator", T0 + 365 * DAY, T0, actor="local:root")
    registry.request_resync("a1", T0 + S, actor="operator:alice")
    registry.update_agent_identity("a1", "beef", T0 + 30 * DAY, T0 + S)
    (job,) = registry.jobs.create_renewals(renewable, None, "default", "operator:alice", "expires soon", T0 + 2 * S)
    for state in ("key_pending", "csr_received", "issued", "installing"):
        registry.jobs.advance(job.job_id, state, T0 + 3 * S, reason=f"to {state}")
    registry.jobs.advance(job.job_id, "verified", T0 + 4 * S, reason="served", actor="agent:a1",
                          served_fingerprint="ab" * 32)
    (job2,) = registry.jobs.create_renewals(renewable, None, "default", "auto-renew", "", T0 + 5 * S)
    registry.jobs.cancel(job2.job_id, T0 + 6 * S, "operator:bob", "not now")
    registry.record_certificate_revocation(renewable, "internal", "superseded", "admin:carol", T0 + 7 * S)
    assert registry.revoke_agent("a1", "host retired", T0 + 8 * S, actor="admin:carol")
    registry.record_refused_call("auditor:dave", "AdminService.Renew", "renew", "role 'auditor' may not renew")

    events = list(registry.audit.export())
    assert [e["action"] for e in events] == [
        "token.create", "enroll", "inventory.report", "admin.init", "agent.resync", "agent.identity.renew",
        "renewal.request", "job.key_pending", "job.csr_received", "job.issued", "job.installing",
        "install.verified", "renewal.request", "job.cancelled", "certificate.revoke", "agent.revoke",
        "call.refused",
    ]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    by = {e["action"]: e for e in reversed(events)}   # the first of each action
    # the token is named by a prefix of its hash, never the token
    assert by["token.create"]["target"] == "token:" + "0" * 12 and by["token.create"]["actor"] == "collector"
    assert by["enroll"]["actor"] == "agent:a1" and by["enroll"]["detail"]["hostname"] == "web1.example.com"
    assert by["inventory.report"]["detail"]["locations_upserted"] == 1
    assert by["admin.init"]["actor"] == "local:root" and by["admin.init"]["detail"]["role"] == "operator"
    assert by["renewal.request"]["actor"] == "operator:alice"
    assert by["renewal.request"]["reason"] == "expires soon"
    assert by["renewal.request"]["detail"]["fingerprint"] == renewable
    assert by["renewal.request"]["target"] == f"job:{job.job_id}"
    assert by["install.verified"]["actor"] == "agent:a1"
    assert by["install.verified"]["detail"]["served_fingerprint"] == "ab" * 32
    assert events[12]["actor"] == "auto-renew"
    assert by["job.cancelled"]["actor"] == "operator:bob" and by["job.cancelled"]["reason"] == "not now"
    assert by["certificate.revoke"]["target"] == f"certificate:{renewable}"
    assert by["agent.revoke"]["reason"] == "host retired"
    assert by["call.refused"]["detail"] == {"method": "AdminService.Renew", "permission": "renew"}
    assert events[0]["prev_hash"] == GENESIS_HASH
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(events, events[1:]))

    result = registry.audit.verify()
    assert result.ok and result.checked == len(events) and result.last_seq == len(events)
    assert result.first_broken_seq == 0 and result.reason == ""


def test_stuck_jobs_and_retries_are_audited(registry: Registry, renewable: str) -> None:
    (job,) = registry.jobs.create_renewals(renewable, None, "default", "alice", "", T0,
                                           timeout=dt.timedelta(minutes=5))
    assert [j.job_id for j in registry.jobs.mark_stuck(T0 + dt.timedelta(hours=1))] == [job.job_id]
    registry.jobs.retry(job.job_id, T0 + dt.timedelta(hours=2), "operator:bob")
    tail = registry.audit.list(limit=2)
    assert [(e.action, e.actor) for e in tail] == [("job.requested", "operator:bob"), ("job.stuck", "collector")]
    assert tail[1].detail["from"] == "requested" and "deadline" in tail[1].reason
    assert registry.audit.verify().ok


def test_a_failed_change_writes_no_event(registry: Registry, renewable: str,
                                         make_agent: Callable[..., Any]) -> None:
    before = registry.audit.count()
    # a used token: the enrollment fails, and neither agent nor event is written
    registry.create_token("ee" * 32, T0 + DAY, "once", T0)
    registry.enroll_agent("ee" * 32, "a2", host("web2.example.com"), "12", T0 + DAY, T0)
    after_enroll = registry.audit.count()
    assert after_enroll == before + 2
    with pytest.raises(TokenUsed):
        registry.enroll_agent("ee" * 32, "a3", host("web3.example.com"), "13", T0 + DAY, T0)
    with pytest.raises(InvalidInput):   # the same token made twice
        registry.create_token("ee" * 32, T0 + DAY, "again", T0)
    assert not registry.revoke_agent("no-such-agent", "why", T0)
    assert registry.request_resync("no-such-agent", T0) == 0
    # an invalid job transition: nothing written, no event
    (job,) = registry.jobs.create_renewals(renewable, LocationSelector(agent_id="a1"), "default", "alice", "", T0)
    n = registry.audit.count()
    with pytest.raises(InvalidTransition):
        registry.jobs.advance(job.job_id, model.VERIFIED, T0 + S)
    # a repeated state changes nothing and is not an event either
    registry.jobs.advance(job.job_id, model.REQUESTED, T0 + S)
    assert registry.audit.count() == n
    assert actions(registry)[after_enroll:] == ["renewal.request"]
    assert registry.audit.verify().ok


def test_a_report_is_one_event_however_many_locations(registry: Registry, make_agent: Callable[..., Any]) -> None:
    make_agent("a1")
    root = root_ca()
    certs = [leaf(f"h{i}.example.com", root) for i in range(30)]
    store_report(registry, "a1", header("r1", full=True, sequence=1),
                 [location(c, f"/etc/ssl/{i}.pem") for i, c in enumerate(certs)], chunk=7)
    store_report(registry, "a1", header("r1", full=True, sequence=1))   # a repeat: stores nothing
    (e,) = registry.audit.list(action="inventory.report")
    assert e.detail["locations_upserted"] == 30 and e.detail["certificates_new"] == 30
    assert e.actor == "agent:a1" and e.detail["full"] is True


# -- tampering is caught and named ------------------------------------------------------------------


def test_an_edited_event_is_named(registry: Registry) -> None:
    some_events(registry, 6)
    assert registry.audit.verify().ok
    sql(registry, "UPDATE audit_events SET reason = 'nothing to see' WHERE seq = 4")
    r = registry.audit.verify()
    assert not r.ok and r.first_broken_seq == 4 and r.checked == 3
    assert r.reason == ("event 4 (2026-01-01T12:00:03Z token.create by admin:alice): "
                        "hash does not match; edited or reordered")


@pytest.mark.parametrize("column,value", [
    ("actor", "admin:mallory"), ("action", "token.delete"), ("target", "token:ffff"),
    ("at", "2026-01-02 00:00:00"), ("detail", '{"note": "edited"}'),
])
def test_any_edited_field_is_caught(registry: Registry, column: str, value: str) -> None:
    some_events(registry, 3)
    if column == "at" and registry.dialect == "postgresql":
        value += "+00"
    if column == "detail" and registry.dialect == "postgresql":
        sql(registry, "UPDATE audit_events SET detail = CAST(:v AS jsonb) WHERE seq = 2", v=value)
    else:
        sql(registry, f"UPDATE audit_events SET {column} = :v WHERE seq = 2", v=value)
    r = registry.audit.verify()
    assert (r.ok, r.first_broken_seq) == (False, 2)


def test_a_deleted_event_names_the_next(registry: Registry) -> None:
    some_events(registry, 6)
    sql(registry, "DELETE FROM audit_events WHERE seq = 3")
    r = registry.audit.verify()
    assert not r.ok and r.first_broken_seq == 4 and r.checked == 2
    assert r.reason.startswith("event 4 (2026-01-01T12:00:03Z token.create by admin:alice): event 3 before it")
    assert r.reason.endswith("deleted")


def test_deleted_oldest_and_newest_events_are_caught(registry: Registry) -> None:
    some_events(registry, 5)
    sql(registry, "DELETE FROM audit_events WHERE seq = 5")
    r = registry.audit.verify()
    assert not r.ok and r.first_broken_seq == 5 and "deleted" in r.reason
    sql(registry, "DELETE FROM audit_events WHERE seq = 1")
    r = registry.audit.verify()
    assert not r.ok and r.first_broken_seq == 2 and "event 1 before it is missing; deleted" in r.reason


def test_swapped_events_are_caught(registry: Registry) -> None:
    some_events(registry, 6)
    sql(registry, "UPDATE audit_events SET seq = -1 WHERE seq = 3")
    sql(registry, "UPDATE audit_events SET seq = 3 WHERE seq = 4")
    sql(registry, "UPDATE audit_events SET seq = 4 WHERE seq = -1")
    r = registry.audit.verify()
    assert not r.ok and r.first_broken_seq == 3 and "edited or reordered" in r.reason


def test_a_rewritten_tail_is_caught_by_the_head(registry: Registry) -> None:
    """Replacing the newest event with a self-consistent forgery still disagrees with the head."""
    some_events(registry, 3)
    (prev,) = [e for e in registry.audit.export() if e["seq"] == 2]
    forged = event_hash(prev["hash"], 3, "2026-01-01T12:00:02.000000Z", "admin:alice", "token.create",
                        "token:x", "forged", {})
    detail = "CAST(:d AS jsonb)" if registry.dialect == "postgresql" else ":d"
    sql(registry, f"UPDATE audit_events SET target = 'token:x', reason = 'forged', detail = {detail}, hash = :h "
                  "WHERE seq = 3", d="{}", h=forged)
    r = registry.audit.verify()
    assert not r.ok and r.first_broken_seq == 3 and "chain head" in r.reason


# -- retention ------------------------------------------------------------------------------------------


def test_purge_keeps_the_chain_verifiable(registry: Registry) -> None:
    some_events(registry, 4, start=T0)                        # seq 1..4, old
    for i in range(3):                                        # seq 5..7, recent
        registry.create_token(f"{i + 100:064x}", T0 + 501 * DAY, "new", T0 + 500 * DAY + i * S)
    now = T0 + 500 * DAY + DAY
    before = now - dt.timedelta(days=400)
    assert registry.audit.purge(before, now) == 4
    events = list(registry.audit.export())
    assert [e["seq"] for e in events] == [5, 6, 7, 8]
    assert events[-1]["action"] == "audit.purge" and events[-1]["detail"]["deleted"] == 4
    head = registry.audit.head()
    assert head["anchor_seq"] == 4 and head["anchor_hash"] == events[0]["prev_hash"]
    r = registry.audit.verify()
    assert r.ok and r.anchor_seq == 4 and r.checked == 4 and r.last_seq == 8
    # nothing more to purge: no new event
    assert registry.audit.purge(before, now) == 0 and registry.audit.count() == 4
    # tampering after a purge is still named
    sql(registry, "UPDATE audit_events SET reason = 'x' WHERE seq = 6")
    r = registry.audit.verify()
    assert not r.ok and r.first_broken_seq == 6
    # and deleting the first kept event is caught against the anchor
    sql(registry, "UPDATE audit_events SET reason = 'new' WHERE seq = 6")
    assert registry.audit.verify().ok
    sql(registry, "DELETE FROM audit_events WHERE seq = 5")
    r = registry.audit.verify()
    assert not r.ok and r.first_broken_seq == 6 and "deleted" in r.reason


def test_purge_refuses_to_destroy_a_broken_chain(registry: Registry) -> None:
    some_events(registry, 5)
    sql(registry, "UPDATE audit_events SET actor = 'admin:mallory' WHERE seq = 2")
    with pytest.raises(AuditBroken, match="event 2 .*hash does not match"):
        registry.audit.purge(T0 + DAY, T0 + 2 * DAY)
    assert registry.audit.count() == 5 and registry.audit.head()["anchor_seq"] == 0


def test_purge_stops_at_the_first_event_it_must_keep(registry: Registry) -> None:
    """Events are purged as a prefix of the chain, even when a clock went backwards."""
    registry.create_token("01" * 32, T0 + DAY, "", T0)
    registry.create_token("02" * 32, T0 + DAY, "", T0 + 10 * DAY)     # kept
    registry.create_token("03" * 32, T0 + DAY, "", T0 + S)            # old, but after a kept one
    assert registry.audit.purge(T0 + 5 * DAY, T0 + 20 * DAY) == 1
    assert [e["seq"] for e in registry.audit.export()] == [2, 3, 4]
    assert registry.audit.verify().ok


# -- concurrency ---------------------------------------------------------------------------------------


def test_concurrent_writers_on_two_registries_keep_one_chain(registry: Registry, db_url: str) -> None:
    other = Registry.open(db_url)
    try:
        regs = [registry, other, registry, other]
        per_thread = 15
        barrier = threading.Barrier(len(regs))
        errors: list[BaseException] = []

        def go(i: int) -> None:
            barrier.wait()
            try:
                for k in range(per_thread):
                    regs[i].create_token(f"{i:032x}{k:032x}", T0 + DAY, f"t{i}.{k}", T0 + k * S,
                                         actor=f"admin:w{i}")
                    if k % 5 == 0:
                        regs[i].record_refused_call(f"auditor:w{i}", "AdminService.Renew", "renew", "no")
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=go, args=(i,)) for i in range(len(regs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        expected = len(regs) * (per_thread + len(range(0, per_thread, 5)))
        assert registry.audit.count() == expected
        r = other.audit.verify()
        assert r.ok and r.checked == expected and r.last_seq == expected, r
    finally:
        other.close()


# -- export and list -------------------------------------------------------------------------------------


def test_export_round_trips_through_json_lines(registry: Registry, tmp_path: Any) -> None:
    some_events(registry, 3)
    # details that JSON and JSONB store differently must still hash the same
    registry.audit.record(T0 + 10 * S, "collector", "test.detail", "x", "unicode: ü ß ✓",
                          {"big": 1e20, "small": 1.5e-7, "tuple": (1, 2.0), "nested": {"b": 1, "a": [None, True]},
                           "when": T0})
    assert registry.audit.verify().ok
    path = tmp_path / "audit.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for e in registry.audit.export():
            f.write(json.dumps(e, ensure_ascii=False) + "\n")
    back = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert back == list(registry.audit.export())
    assert back[-1]["detail"] == {"big": 10**20, "small": 1.5e-7, "tuple": [1, 2], "nested": {"a": [None, True], "b": 1},
                                  "when": "2026-01-01 12:00:00+00:00"}
    r = verify_events(back)
    assert r.ok and r.checked == 4
    back[1]["reason"] = "changed"
    r = verify_events(back)
    assert not r.ok and r.first_broken_seq == 2
    del back[1]
    r = verify_events(back)
    assert not r.ok and r.first_broken_seq == 3 and "deleted" in r.reason
    # a time range is a part of the chain that verifies on its own
    part = list(registry.audit.export(since=T0 + S, until=T0 + 3 * S))
    assert [e["seq"] for e in part] == [2, 3] and verify_events(part).ok


def test_list_filters_newest_first(registry: Registry, renewable: str) -> None:
    (job,) = registry.jobs.create_renewals(renewable, None, "default", "operator:alice", "", T0 + S)
    registry.jobs.advance(job.job_id, "key_pending", T0 + 2 * S)
    registry.jobs.advance(job.job_id, "failed", T0 + 3 * S, reason="no CSR", actor="agent:a1")
    assert [e.action for e in registry.audit.list(action="job")] == ["job.failed", "job.key_pending"]
    assert [e.action for e in registry.audit.list(actor="agent:a1")] == ["job.failed", "inventory.report", "enroll"]
    assert [e.action for e in registry.audit.list(target=f"job:{job.job_id}")] == [
        "job.failed", "job.key_pending", "renewal.request"]
    assert len(registry.audit.list(limit=2)) == 2
    assert [e.action for e in registry.audit.list(since=T0 + S, until=T0 + 3 * S)] == [
        "job.key_pending", "renewal.request"]
    assert registry.audit.list(action="job.fail") == []       # a prefix only before a dot
    with pytest.raises(InvalidInput):
        registry.audit.list(limit=0)


# -- retention settings ([audit] in the collector config) -------------------------------------------------


def test_retention_settings_from_the_config() -> None:
    from collector.services.audit_retention import AuditSettings
    from collector.config.core import ConfigError

    assert AuditSettings.from_config({}).retention == dt.timedelta(days=400)
    s = AuditSettings.from_config({"audit": {"retention": "90d", "purge_interval": "1h"}})
    assert (s.retention, s.purge_interval) == (dt.timedelta(days=90), dt.timedelta(hours=1))
    assert AuditSettings.from_config({"audit": {"retention": "forever"}}).retention is None
    with pytest.raises(ConfigError, match="unknown key"):
        AuditSettings.from_config({"audit": {"retension": "90d"}})
    with pytest.raises(ConfigError, match="at least 1d"):
        AuditSettings.from_config({"audit": {"retention": "1h"}})
    with pytest.raises(ConfigError, match="not a duration"):
        AuditSettings.from_config({"audit": {"retention": "a year"}})


def test_retention_purges_by_the_collectors_clock(registry: Registry) -> None:
    from collector.services.audit_retention import AuditRetention, AuditSettings

    some_events(registry, 3, start=T0)
    now = [T0 + 10 * DAY]
    keep = AuditRetention(registry, AuditSettings(retention=dt.timedelta(days=30)), lambda: now[0])
    assert keep.run_once() == 0
    now[0] = T0 + 31 * DAY
    assert keep.run_once() == 3
    (purge,) = registry.audit.list()
    assert (purge.action, purge.actor, purge.detail["deleted"]) == ("audit.purge", "collector", 3)
    assert registry.audit.verify().ok
    assert AuditRetention(registry, AuditSettings(retention=None), lambda: T0 + 9999 * DAY).run_once() == 0
