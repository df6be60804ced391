"""Renewal jobs in the registry, on SQLite and PostgreSQL: creation, state changes and their
events, commands to agents across collectors, deadlines, retries, restarts."""
from __future__ import annotations

import datetime as dt
import hashlib
import threading
from dataclasses import dataclass
from typing import Any, Callable

import pytest

from collector.domain import jobstates as model
from collector.errors import Ambiguous, InvalidInput, NotFound
from collector.domain.jobstates import InvalidTransition
from collector.registry import Registry
from collector.registry.jobs import JobStore
from collector.registry.types import JobView, LocationKeyIn, LocationSelector
from tests.helpers.registry_certs import (
    T0,
    Issued,
    header,
    key_of,
    leaf,
    location,
    root_ca,
    store_report,
    with_fingerprint_prefix_collision,
)

UTC = dt.timezone.utc
S = dt.timedelta(seconds=1)
HOUR = dt.timedelta(hours=1)
RESEND = model.COMMAND_RESEND_AFTER


@dataclass
class Fleet:
    root: Issued
    web: Issued            # present at 3 own locations (2 on web1, 1 on web2) and inside a chain
    other: Issued          # present on web1 only
    chained: Issued        # present only inside a chain (chain index 1)
    gone: Issued           # was present, now removed everywhere


@pytest.fixture
def fleet(registry: Registry, make_agent: Callable[..., Any]) -> Fleet:
    make_agent("a1", "web1.example.com")
    make_agent("a2", "web2.example.com")
    root = root_ca()
    web = leaf("www.example.com", root)
    other = leaf("other.example.com", root)
    chained = leaf("chained.example.com", root)
    gone = leaf("gone.example.com", root)
    store_report(registry, "a1", header("r1", full=True, sequence=1), [
        location(web, "/etc/ssl/web.pem", has_private_key=True, key_match="matches"),
        location(web, "/etc/ssl/web.jks", store_type="jks", alias="web", entry_type="PRIVATE_KEY_ENTRY"),
        location(other, "/etc/ssl/other.pem"),
        location(chained, "/etc/ssl/other.pem", chain_index=1),          # other's issuer, in its chain
        location(gone, "/etc/ssl/gone.pem"),
    ])
    store_report(registry, "a1", header("r2", full=False, sequence=2, base=1),
                 removals=[key_of(location(gone, "/etc/ssl/gone.pem"))], now=T0)
    store_report(registry, "a2", header("r1", full=True, sequence=1, hostname="web2.example.com"), [
        location(web, "/srv/tls/fullchain.pem"),
        location(web, "/srv/tls/bundle.pem", chain_index=1),    # web inside someone else's chain
    ])
    return Fleet(root, web, other, chained, gone)


def new_cert(fleet: Fleet, cn: str = "www.example.com") -> Issued:
    return leaf(cn, fleet.root, not_before=T0, days=90)


def one_job(registry: Registry, fleet: Fleet, now: dt.datetime = T0, **kw: Any) -> JobView:
    (job,) = registry.jobs.create_renewals(
        fleet.web.fingerprint, LocationSelector(agent_id="a1", store_type="pem"), "default", "alice",
        "expires soon", now, **kw)
    return job


def transitions(job: JobView) -> list[tuple[str, str]]:
    return [(e.from_state, e.to_state) for e in job.events]


# -- creating ------------------------------------------------------------------------


def test_one_job_per_present_own_location(registry: Registry, fleet: Fleet) -> None:
    made = registry.jobs.create_renewals(fleet.web.fingerprint, None, "default", "alice", "expires soon", T0)
    assert [(j.hostname, j.store_type, j.path, j.alias, j.chain_index) for j in made] == [
        ("web1.example.com", "jks", "/etc/ssl/web.jks", "web", 0),
        ("web1.example.com", "pem", "/etc/ssl/web.pem", "", 0),
        ("web2.example.com", "pem", "/srv/tls/fullchain.pem", "", 0),
    ]   # not /srv/tls/bundle.pem, where it is only part of a chain
    assert len({j.job_id for j in made}) == 3
    for j in made:
        assert (j.kind, j.state, j.attempts, j.old_fingerprint) == ("renew", "requested", 0, fleet.web.fingerprint)
        assert (j.template, j.requested_by, j.reason) == ("default", "alice", "expires soon")
        assert j.deadline == T0 + HOUR and j.timeout == HOUR and j.next_attempt_at == T0
        assert j.created_at == j.updated_at == T0 and j.finished_at is None and j.command_sent_at is None
        assert (j.csr_der, j.new_fingerprint, j.certificate_der, j.chain_ders) == (b"", "", b"", ())
        assert not j.final and j.deadline.tzinfo == UTC
        full = registry.jobs.get(j.job_id)
        assert [(e.from_state, e.to_state, e.reason, e.actor, e.at) for e in full.events] == [
            ("", "requested", "expires soon", "alice", T0)]


def test_repeating_a_renew_returns_the_running_jobs(registry: Registry, fleet: Fleet) -> None:
    first = registry.jobs.create_renewals(fleet.web.fingerprint, None, "default", "alice", "", T0)
    again = registry.jobs.create_renewals(fleet.web.fingerprint, None, "other-template", "bob", "", T0 + S)
    assert [j.job_id for j in again] == [j.job_id for j in first]
    assert all(j.requested_by == "alice" for j in again)
    # a narrower repeat returns the one matching job
    (one,) = registry.jobs.create_renewals(
        fleet.web.fingerprint[:12], LocationSelector(hostname="WEB2.example.com"), "default", "bob", "", T0 + S)
    assert one.job_id == first[2].job_id
    # a location key (without agent) selects too
    (jks,) = registry.jobs.create_renewals(
        fleet.web.fingerprint, LocationKeyIn("jks", "/etc/ssl/web.jks", "web", 0), "default", "bob", "", T0)
    assert jks.job_id == first[0].job_id
    # an empty alias matches any alias; so does a filter of another type with "" fields
    (by_path,) = registry.jobs.create_renewals(
        fleet.web.fingerprint, LocationSelector(path="/etc/ssl/web.jks"), "default", "bob", "", T0)
    assert by_path.job_id == first[0].job_id

    @dataclass(frozen=True)
    class CliFilter:
        agent_id: str = ""
        store_type: str = ""
        path: str = ""
        alias: str = ""

    (cli,) = registry.jobs.create_renewals(
        fleet.web.fingerprint, CliFilter(agent_id="a1", store_type="jks"), "default", "bob", "", T0)
    assert cli.job_id == first[0].job_id
    assert registry.jobs.count() == 3
    assert len(registry.jobs.get(first[0].job_id).events) == 1


def test_an_ended_job_makes_room_for_a_new_one(registry: Registry, fleet: Fleet) -> None:
    job = one_job(registry, fleet)
    registry.jobs.cancel(job.job_id, T0 + S, "alice", "wrong template")
    again = one_job(registry, fleet, T0 + 2 * S)
    assert again.job_id != job.job_id and again.state == "requested"
    assert registry.jobs.count() == 2


def test_idempotency_key_returns_the_same_jobs_even_after_they_ended(registry: Registry, fleet: Fleet) -> None:
    first = registry.jobs.create_renewals(fleet.web.fingerprint, None, "default", "cli", "", T0,
                                          idempotency_key="req-1")
    assert all(j.idempotency_key == "req-1" for j in first)
    for j in first:
        registry.jobs.cancel(j.job_id, T0 + S, "cli", "test")
    again = registry.jobs.create_renewals(fleet.web.fingerprint, None, "default", "cli", "", T0 + 2 * S,
                                          idempotency_key="req-1")
    assert [j.job_id for j in again] == [j.job_id for j in first]
    assert all(j.state == "cancelled" for j in again)
    with pytest.raises(InvalidInput, match="idempotency key was already used for another certificate"):
        registry.jobs.create_renewals(fleet.other.fingerprint, None, "default", "cli", "", T0,
                                      idempotency_key="req-1")
    fresh = registry.jobs.create_renewals(fleet.web.fingerprint, None, "default", "cli", "", T0 + 3 * S,
                                          idempotency_key="req-2")
    assert not {j.job_id for j in fresh} & {j.job_id for j in first}


def test_clear_errors_when_there_is_nothing_to_renew(registry: Registry, fleet: Fleet, make_agent: Any) -> None:
    js = registry.jobs
    with pytest.raises(NotFound, match="no certificate with fingerprint"):
        js.create_renewals("ab" * 32, None, "default", "alice", "", T0)
    with pytest.raises(InvalidInput, match="not a hex SHA-256 fingerprint"):
        js.create_renewals("not-hex", None, "default", "alice", "", T0)
    with pytest.raises(InvalidInput, match="at least 6 hex digits"):
        js.create_renewals("abc", None, "default", "alice", "", T0)
    with pytest.raises(NotFound, match="is not present at any location"):
        js.create_renewals(fleet.gone.fingerprint, None, "default", "alice", "", T0)
    with pytest.raises(InvalidInput, match=r"pem:/etc/ssl/other.pem does not hold certificate .*present at"):
        js.create_renewals(fleet.web.fingerprint, LocationSelector(store_type="pem", path="/etc/ssl/other.pem"),
                           "default", "alice", "", T0)
    with pytest.raises(InvalidInput, match="host nowhere.example.com does not hold"):
        js.create_renewals(fleet.web.fingerprint, LocationSelector(hostname="nowhere.example.com"),
                           "default", "alice", "", T0)
    with pytest.raises(InvalidInput, match="appears only inside chains"):
        js.create_renewals(fleet.chained.fingerprint, None, "default", "alice", "", T0)
    with pytest.raises(InvalidInput, match="appears only inside chains"):
        js.create_renewals(fleet.web.fingerprint, LocationSelector(path="/srv/tls/bundle.pem"),
                           "default", "alice", "", T0)
    with pytest.raises(InvalidInput, match="at least one second"):
        js.create_renewals(fleet.web.fingerprint, None, "default", "alice", "", T0, dt.timedelta(0))
    registry.revoke_agent("a1", "decommissioned", T0)
    with pytest.raises(InvalidInput, match="only on revoked agents"):
        js.create_renewals(fleet.other.fingerprint, None, "default", "alice", "", T0)
    # the revoked host's locations are skipped, the others renewed
    made = js.create_renewals(fleet.web.fingerprint, None, "default", "alice", "", T0)
    assert [j.agent_id for j in made] == ["a2"]
    assert js.count() == 1                       # nothing else was written by the refusals


def test_ambiguous_prefix(registry: Registry, fleet: Fleet) -> None:
    x, y = with_fingerprint_prefix_collision(leaf("twin.example.com", fleet.root).der)
    store_report(registry, "a2", header("r2", full=False, sequence=2, base=1, hostname="web2.example.com"),
                 [location(x, "/srv/tls/x.pem"), location(y, "/srv/tls/y.pem")])
    prefix = hashlib.sha256(x).hexdigest()[:6]
    with pytest.raises(Ambiguous, match=r"matches \d+ certificates; give more characters"):
        registry.jobs.create_renewals(prefix, None, "default", "alice", "", T0)
    (job,) = registry.jobs.create_renewals(hashlib.sha256(y).hexdigest(), None, "default", "alice", "", T0)
    assert job.path == "/srv/tls/y.pem"


# -- state changes -------------------------------------------------------------------


def test_happy_path_with_events_in_order(registry: Registry, fleet: Fleet) -> None:
    js = registry.jobs
    job = one_job(registry, fleet)
    new = new_cert(fleet)
    csr = b"0\x82fake-csr"
    t = T0
    assert js.advance(job.job_id, "key_pending", t + 1 * S, "asked the agent").state == "key_pending"
    v = js.advance(job.job_id, "csr_received", t + 2 * S, "CSR from the agent", "agent:a1", csr_der=csr)
    assert v.csr_der == csr
    v = js.advance(job.job_id, "issued", t + 3 * S, "issued by internal-ca", certificate_der=new.der,
                   chain_ders=[fleet.root.der])
    assert (v.new_fingerprint, v.certificate_der, v.chain_ders) == (new.fingerprint, new.der, (fleet.root.der,))
    assert v.next_attempt_at == t + 3 * S
    js.advance(job.job_id, "installing", t + 4 * S, "install sent")
    steps = {"steps": [{"step": "write", "ok": True}, {"step": "reload", "ok": True},
                       {"step": "verify", "ok": True, "served": new.fingerprint}]}
    v = js.advance(job.job_id, "verified", t + 5 * S, "served over TLS", "agent:a1",
                   served_fingerprint=new.fingerprint.upper(), result_detail=steps)
    assert v.final and v.state == "verified" and v.finished_at == t + 5 * S and v.updated_at == t + 5 * S
    assert v.served_fingerprint == new.fingerprint and v.result_detail == steps
    assert v.csr_der == csr and v.certificate_der == new.der
    assert [(e.from_state, e.to_state, e.reason, e.actor, e.at) for e in v.events] == [
        ("", "requested", "expires soon", "alice", t),
        ("requested", "key_pending", "asked the agent", "collector", t + 1 * S),
        ("key_pending", "csr_received", "CSR from the agent", "agent:a1", t + 2 * S),
        ("csr_received", "issued", "issued by internal-ca", "collector", t + 3 * S),
        ("issued", "installing", "install sent", "collector", t + 4 * S),
        ("installing", "verified", "served over TLS", "agent:a1", t + 5 * S),
    ]
    assert registry.jobs.get(job.job_id) == v
    assert registry.jobs.get(job.job_id[:8]).job_id == job.job_id


def test_rollback_with_unset_protobuf_fields(registry: Registry, fleet: Fleet) -> None:
    js = registry.jobs
    job = one_job(registry, fleet)
    new = new_cert(fleet)
    js.advance(job.job_id, "key_pending", T0)
    js.advance(job.job_id, "csr_received", T0 + S, csr_der=b"csr")
    js.advance(job.job_id, "issued", T0 + 2 * S, new_fingerprint=new.fingerprint, certificate_der=new.der,
               chain_ders=[])
    js.advance(job.job_id, "installing", T0 + 3 * S, csr_der=b"", new_fingerprint="", certificate_der=b"")
    detail = '{"steps": [{"step": "reload", "ok": false}]}'    # a JSON text is stored as given
    v = js.advance(job.job_id, "rolled_back", T0 + 4 * S, "reload failed; old certificate restored",
                   "agent:a1", served_fingerprint="", result_detail=detail)
    assert (v.state, v.final, v.served_fingerprint, v.result_detail) == ("rolled_back", True, "", detail)
    assert (v.csr_der, v.new_fingerprint, v.certificate_der, v.chain_ders) == (b"csr", new.fingerprint, new.der, ())
    assert v.events[-1].reason == "reload failed; old certificate restored"
    # a failure without a reason still says so
    other = js.create_renewals(fleet.other.fingerprint, None, "default", "alice", "", T0)[0]
    assert js.advance(other.job_id, "failed", T0 + S).events[-1].reason == "no reason given"


def test_invalid_transition_is_refused_and_nothing_written(registry: Registry, fleet: Fleet) -> None:
    js = registry.jobs
    job = one_job(registry, fleet)
    before = js.get(job.job_id)
    with pytest.raises(InvalidTransition, match="cannot go from requested to verified"):
        js.advance(job.job_id, "verified", T0 + S, "too soon", served_fingerprint="ab" * 32,
                   certificate_der=b"x", result_detail={"x": 1})
    with pytest.raises(InvalidTransition, match="unknown job state"):
        js.advance(job.job_id, "done", T0 + S)
    assert js.get(job.job_id) == before
    js.advance(job.job_id, "failed", T0 + S, "issuer refused the CSR")
    done = js.get(job.job_id)
    assert done.finished_at == T0 + S and done.events[-1].reason == "issuer refused the CSR"
    with pytest.raises(InvalidTransition, match="already failed \\(final\\)"):
        js.advance(job.job_id, "requested", T0 + 2 * S)
    with pytest.raises(InvalidTransition, match="request a new renewal"):
        js.retry(job.job_id, T0 + 2 * S, "alice")
    assert js.get(job.job_id) == done
    with pytest.raises(NotFound, match="no job"):
        js.advance("00000000-0000-0000-0000-000000000000", "key_pending", T0)
    with pytest.raises(InvalidInput, match="new_fingerprint must be a SHA-256"):
        js.advance(job.job_id, "issued", T0, new_fingerprint="xyz")
    with pytest.raises(InvalidInput, match="not the SHA-256 of certificate_der"):
        js.advance(job.job_id, "issued", T0, new_fingerprint="ab" * 32, certificate_der=b"other")


def test_repeated_same_state_is_harmless(registry: Registry, fleet: Fleet) -> None:
    js = registry.jobs
    job = one_job(registry, fleet)
    a = js.advance(job.job_id, "key_pending", T0 + S)
    b = js.advance(job.job_id, "key_pending", T0 + 2 * S, "repeat")
    assert a == b and transitions(b) == [("", "requested"), ("requested", "key_pending")]
    js.cancel(job.job_id, T0 + 3 * S, "alice", "not needed")
    c = js.cancel(job.job_id, T0 + 4 * S, "bob", "again")
    assert c.finished_at == T0 + 3 * S and len(c.events) == 3
    assert c.events[-1].reason == "not needed" and c.events[-1].actor == "alice"


def test_transient_errors_go_back_to_requested_with_backoff(registry: Registry, fleet: Fleet) -> None:
    js = registry.jobs
    job = one_job(registry, fleet)
    js.advance(job.job_id, "key_pending", T0)
    v = js.advance(job.job_id, "requested", T0 + S, "agent offline")
    assert (v.attempts, v.next_attempt_at, v.deadline) == (1, T0 + S + 30 * S, T0 + HOUR)
    assert v.command_sent_at is None
    assert js.due_for_agent("a1", T0 + 30 * S) == []
    assert [j.job_id for j in js.due_for_agent("a1", T0 + 31 * S)] == [job.job_id]
    js.advance(job.job_id, "key_pending", T0 + 31 * S)
    js.advance(job.job_id, "csr_received", T0 + 32 * S, csr_der=b"csr")
    v = js.advance(job.job_id, "requested", T0 + 40 * S, "issuer timed out")
    assert (v.attempts, v.next_attempt_at) == (2, T0 + 100 * S)
    assert v.csr_der == b""                                         # the next attempt makes a new key
    v = js.advance(job.job_id, "key_pending", T0 + 100 * S)
    v = js.advance(job.job_id, "requested", T0 + 101 * S, "agent offline", next_attempt_at=T0 + 500 * S)
    assert (v.attempts, v.next_attempt_at) == (3, T0 + 500 * S)
    # an operator's retry makes it due now
    v = js.retry(job.job_id, T0 + 200 * S, "alice")
    assert (v.state, v.attempts, v.next_attempt_at, v.deadline) == ("requested", 3, T0 + 200 * S,
                                                                     T0 + 200 * S + HOUR)


# -- commands to agents --------------------------------------------------------------


def test_due_for_agent_and_claim_only_once_across_collectors(registry: Registry, fleet: Fleet, db_url: str) -> None:
    made = registry.jobs.create_renewals(fleet.web.fingerprint, None, "default", "alice", "", T0)
    mine = [j.job_id for j in made if j.agent_id == "a1"]
    other = Registry.open(db_url)
    try:
        stores = [registry.jobs, other.jobs, registry.jobs, other.jobs]
        assert sorted(j.job_id for j in stores[1].due_for_agent("a1", T0)) == sorted(mine)
        assert [j.job_id for j in stores[0].due_for_agent("a2", T0)] == [made[2].job_id]

        # four collector threads race for each command; exactly one wins each
        barrier = threading.Barrier(len(stores))
        wins: list[list[str]] = [[] for _ in stores]
        errors: list[BaseException] = []

        def race(i: int) -> None:
            try:
                barrier.wait()
                for job_id in mine:
                    if stores[i].claim_command(job_id, "requested", T0):
                        wins[i].append(job_id)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        assert sorted(j for w in wins for j in w) == sorted(mine)
        # a claimed command is not handed out again within the resend interval
        assert stores[1].due_for_agent("a1", T0 + S) == []
        assert not stores[0].claim_command(mine[0], "requested", T0 + S)
        for job_id in mine:
            other.jobs.advance(job_id, model.state_after_command("requested"), T0 + S, "make_csr sent")
        assert registry.jobs.due_for_agent("a1", T0 + RESEND - S) == []
        assert not registry.jobs.claim_command(mine[0], "requested", T0 + RESEND)   # no longer requested
        # no answer within the resend interval: resend, once
        due = registry.jobs.due_for_agent("a1", T0 + RESEND)
        assert {j.job_id for j in due} == set(mine) and all(j.state == "key_pending" for j in due)
        assert other.jobs.claim_command(mine[0], "key_pending", T0 + RESEND)
        assert not registry.jobs.claim_command(mine[0], "key_pending", T0 + RESEND)
        assert {j.job_id for j in registry.jobs.due_for_agent("a1", T0 + RESEND)} == set(mine) - {mine[0]}
        # issued jobs are due for install at once
        registry.jobs.advance(mine[0], "csr_received", T0 + RESEND + S, csr_der=b"csr")
        registry.jobs.advance(mine[0], "issued", T0 + RESEND + 2 * S, certificate_der=new_cert(fleet).der)
        (due_install,) = [j for j in other.jobs.due_for_agent("a1", T0 + RESEND + 2 * S) if j.job_id == mine[0]]
        assert due_install.state == "issued" and model.command_for(due_install.state) == model.INSTALL
        assert other.jobs.claim_command(mine[0], "issued", T0 + RESEND + 2 * S)
        assert not registry.jobs.claim_command(mine[0], "issued", T0 + RESEND + 2 * S)
        with pytest.raises(InvalidInput, match="no command"):
            registry.jobs.claim_command(mine[0], "csr_received", T0)
    finally:
        other.close()


def test_concurrent_advance_changes_once(registry: Registry, fleet: Fleet, db_url: str) -> None:
    job = one_job(registry, fleet)
    registry.jobs.advance(job.job_id, "key_pending", T0)
    others = [Registry.open(db_url) for _ in range(2)]
    try:
        stores = [registry.jobs, *(o.jobs for o in others), registry.jobs]
        barrier = threading.Barrier(len(stores))
        results: list[Any] = [None] * len(stores)

        def go(i: int) -> None:
            barrier.wait()
            try:
                results[i] = stores[i].advance(job.job_id, "csr_received", T0 + S, f"csr via {i}",
                                               csr_der=f"csr-{i}".encode())
            except BaseException as e:  # noqa: BLE001
                results[i] = e

        threads = [threading.Thread(target=go, args=(i,)) for i in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert all(isinstance(r, JobView) for r in results), results
        final = registry.jobs.get(job.job_id)
        assert transitions(final) == [("", "requested"), ("requested", "key_pending"), ("key_pending", "csr_received")]
        winner = final.events[-1].reason.removeprefix("csr via ")
        assert final.csr_der == f"csr-{winner}".encode()
    finally:
        for o in others:
            o.close()


def test_concurrent_creates_make_one_job_per_location(registry: Registry, fleet: Fleet, db_url: str) -> None:
    others = [Registry.open(db_url) for _ in range(3)]
    try:
        regs = [registry, *others]
        barrier = threading.Barrier(len(regs))
        results: list[Any] = [None] * len(regs)

        def go(i: int) -> None:
            barrier.wait()
            try:
                results[i] = regs[i].jobs.create_renewals(fleet.web.fingerprint, None, "default", f"c{i}", "", T0)
            except BaseException as e:  # noqa: BLE001
                results[i] = e

        threads = [threading.Thread(target=go, args=(i,)) for i in range(len(regs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert all(isinstance(r, list) for r in results), results
        ids = {tuple(j.job_id for j in r) for r in results}
        assert len(ids) == 1 and registry.jobs.count() == 3
    finally:
        for o in others:
            o.close()


# -- deadlines, retry, cancel ----------------------------------------------------------


def test_mark_stuck_then_retry_or_cancel(registry: Registry, fleet: Fleet) -> None:
    js = registry.jobs
    made = js.create_renewals(fleet.web.fingerprint, None, "default", "alice", "", T0)
    (short,) = js.create_renewals(fleet.other.fingerprint, None, "default", "alice", "", T0,
                                  dt.timedelta(minutes=10))
    js.advance(made[0].job_id, "key_pending", T0 + S)
    js.advance(made[1].job_id, "failed", T0 + S, "issuer down")         # final: never stuck
    assert js.mark_stuck(T0 + dt.timedelta(minutes=10)) == []           # at the deadline: not yet
    (s,) = js.mark_stuck(T0 + dt.timedelta(minutes=10) + S)
    assert (s.job_id, s.state) == (short.job_id, "stuck")
    stuck = js.mark_stuck(T0 + HOUR + S)
    assert {j.job_id for j in stuck} == {made[0].job_id, made[2].job_id}
    assert js.mark_stuck(T0 + 2 * HOUR) == []                           # already stuck
    v = js.get(made[0].job_id)
    assert v.state == "stuck" and not v.final and v.finished_at is None
    assert v.events[-1].from_state == "key_pending" and "deadline" in v.events[-1].reason
    assert js.due_for_agent("a1", T0 + 3 * HOUR) == []                  # a stuck job is not sent
    assert {j.job_id for j in js.list(state="stuck")} == {short.job_id, made[0].job_id, made[2].job_id}
    # a stuck job still holds its location: a repeat returns it
    again = js.create_renewals(fleet.web.fingerprint, None, "default", "bob", "", T0 + 3 * HOUR)
    assert (again[0].job_id, again[2].job_id) == (made[0].job_id, made[2].job_id)
    assert again[1].job_id != made[1].job_id and again[1].state == "requested"   # the failed one is replaced

    now = T0 + 4 * HOUR
    r = js.retry(made[0].job_id, now, "alice")
    assert (r.state, r.attempts, r.next_attempt_at, r.deadline) == ("requested", 1, now, now + HOUR)
    assert r.events[-1].actor == "alice" and r.events[-1].from_state == "stuck"
    assert made[0].job_id in {j.job_id for j in js.due_for_agent("a1", now)}
    c = js.cancel(made[2].job_id, now, "alice", "host retired")
    assert c.state == "cancelled" and c.final and c.finished_at == now
    with pytest.raises(InvalidTransition):
        js.retry(made[2].job_id, now, "alice")
    # a retried short job gets its own timeout again
    r2 = js.retry(short.job_id, now, "alice")
    assert r2.deadline == now + dt.timedelta(minutes=10)


def test_list_newest_first_with_filters(registry: Registry, fleet: Fleet) -> None:
    js = registry.jobs
    a = js.create_renewals(fleet.web.fingerprint, None, "default", "alice", "", T0)
    (b,) = js.create_renewals(fleet.other.fingerprint, None, "default", "alice", "", T0 + S)
    js.advance(a[0].job_id, "key_pending", T0 + 2 * S)
    listed = js.list()
    assert [j.job_id for j in listed][0] == b.job_id and len(listed) == 4
    assert all(j.events == () for j in listed)
    assert [j.job_id for j in js.list(limit=1)] == [b.job_id]
    assert [j.job_id for j in js.list(state="key_pending")] == [a[0].job_id]
    assert {j.job_id for j in js.list(agent_id="a2")} == {a[2].job_id}
    assert {j.job_id for j in js.list(fingerprint=fleet.other.fingerprint)} == {b.job_id}
    assert js.list(state="verified") == []
    assert js.count("requested") == 3
    with pytest.raises(InvalidInput, match="unknown job state 'bogus'"):
        js.list(state="bogus")
    with pytest.raises(InvalidInput, match="limit"):
        js.list(limit=0)
    with pytest.raises(NotFound):
        js.get("no-such-job")
    with pytest.raises(InvalidInput, match="at least 6"):
        js.get("abc")


# -- restarts ----------------------------------------------------------------------------------


def test_collector_restart_keeps_jobs_and_states(registry: Registry, fleet: Fleet, db_url: str) -> None:
    made = registry.jobs.create_renewals(fleet.web.fingerprint, None, "default", "alice", "", T0)
    new = new_cert(fleet)
    j0 = made[0].job_id
    registry.jobs.advance(j0, "key_pending", T0 + S)
    registry.jobs.advance(j0, "csr_received", T0 + 2 * S, csr_der=b"csr")
    registry.jobs.advance(j0, "issued", T0 + 3 * S, certificate_der=new.der, chain_ders=[fleet.root.der])
    assert registry.jobs.claim_command(j0, "issued", T0 + 4 * S)
    registry.jobs.advance(j0, "installing", T0 + 4 * S)
    registry.jobs.advance(made[1].job_id, "key_pending", T0 + S)
    before = {j.job_id: registry.jobs.get(j.job_id) for j in made}
    registry.close()                                     # the collector stops mid-job

    with Registry.open(db_url) as reopened:
        after = {j: reopened.jobs.get(j) for j in before}
        assert after == before
        assert [after[j.job_id].state for j in made] == ["installing", "key_pending", "requested"]
        assert after[j0].certificate_der == new.der and after[j0].chain_ders == (fleet.root.der,)
        # the new collector resends the commands that got no answer, and the job finishes
        later = T0 + RESEND + 5 * S
        due = {j.job_id: j.state for j in reopened.jobs.due_for_agent("a1", later)}
        assert due == {j0: "installing", made[1].job_id: "key_pending"}
        assert reopened.jobs.claim_command(j0, "installing", later)
        done = reopened.jobs.advance(j0, "verified", later + S, served_fingerprint=new.fingerprint)
        assert done.final and transitions(done)[-1] == ("installing", "verified")
        assert reopened.jobs.count() == 3


def test_job_store_on_a_plain_engine(registry: Registry, fleet: Fleet) -> None:
    js = JobStore(registry.engine, resend_after=dt.timedelta(seconds=5))
    job = one_job(registry, fleet)
    js.advance(job.job_id, "key_pending", T0)
    assert js.claim_command(job.job_id, "key_pending", T0)
    assert js.due_for_agent("a1", T0 + 4 * S) == []
    assert [j.job_id for j in js.due_for_agent("a1", T0 + 5 * S)] == [job.job_id]


def test_a_job_in_flight_is_sent_again_at_once_on_a_new_command_stream(registry: Registry, fleet: Fleet) -> None:
    """The agent restarted mid-job: its new stream (connected after the command went out) gets the
    command again at once, once, not after the resend interval; an old stream's look does not."""
    job = one_job(registry, fleet)
    js = registry.jobs
    assert js.claim_command(job.job_id, "requested", T0)
    js.advance(job.job_id, "key_pending", T0, "make_csr sent")
    js.advance(job.job_id, "csr_received", T0 + S, csr_der=b"csr")
    js.advance(job.job_id, "issued", T0 + 2 * S, certificate_der=new_cert(fleet).der)
    assert js.claim_command(job.job_id, "issued", T0 + 3 * S)
    js.advance(job.job_id, "installing", T0 + 3 * S, "certificate sent")
    # the stream that carried the install is still the current one: nothing to send
    assert js.due_for_agent(job.agent_id, T0 + 10 * S, connected_at=T0) == []
    assert js.due_for_agent(job.agent_id, T0 + 10 * S) == []
    # the agent reconnects at T0+9s: the install goes out again now, and only once
    reconnected = T0 + 9 * S
    due = js.due_for_agent(job.agent_id, T0 + 10 * S, connected_at=reconnected)
    assert [j.job_id for j in due] == [job.job_id] and due[0].state == "installing"
    assert js.claim_command(job.job_id, "installing", T0 + 10 * S, connected_at=reconnected)
    assert not js.claim_command(job.job_id, "installing", T0 + 11 * S, connected_at=reconnected)
    assert js.due_for_agent(job.agent_id, T0 + 11 * S, connected_at=reconnected) == []
