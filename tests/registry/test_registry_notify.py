"""Notifications against the registry (SQLite and PostgreSQL) and real channels on loopback:
exactly once across two collectors and a restart, again after a renewal, a failing channel
retried and visible while the others deliver."""
from __future__ import annotations

import datetime as dt
import threading
from typing import Any, Iterator

import pytest

from collector.services.notifier import Notifier
from collector.config.notify import NotifySettings
from collector.registry import Registry
from collector.registry.notify import NotifyStore
from tests.helpers.install_sites import TestCA
from tests.helpers.registry_notify_servers import free_port, http_server, smtp_server
from tests.helpers.tls_servers import site_files
from tests.helpers.registry_certs import T0, header, leaf, location, root_ca, store_report

NOW = T0 + dt.timedelta(hours=1)


@pytest.fixture
def smtp() -> Iterator[Any]:
    yield from smtp_server()


@pytest.fixture
def http(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An https sink at localhost (owner webhooks must be https to an allowed host), its CA trusted."""
    ca = TestCA()
    site = site_files(tmp_path / "site", ca, ("localhost",))
    (tmp_path / "ca.pem").write_bytes(ca.root_pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    yield from http_server(site.server_context())


def settings(smtp_port: int, http_port: int, *, broken: bool = False, max_attempts: int = 8) -> NotifySettings:
    base = f"https://localhost:{http_port}"
    channels: list[dict[str, Any]] = [
        {"name": "mail", "type": "smtp", "host": "127.0.0.1", "port": smtp_port, "from": "certfleet@example.com",
         "to": ["pki@example.com"]},
        {"name": "hooks", "type": "webhook", "url": f"{base}/default-hook"},
        {"name": "chat", "type": "slack", "url": f"{base}/slack"},
        {"name": "desk", "type": "ticket", "url": f"{base}/ticket"},
    ]
    if broken:
        channels.append({"name": "broken", "type": "slack", "url": f"http://127.0.0.1:{free_port()}/x"})
    return NotifySettings.from_config({"notify": {"channel": channels, "max_attempts": max_attempts,
                                                  "webhook_allowed": ["localhost", "127.0.0.0/8", "::1/128"]}})


def fleet(registry: Registry, make_agent: Any, http_port: int, days: float) -> Any:
    make_agent("agent-1", "web1.example.com")
    registry.owners.create_owner("web", T0, contacts=["web@example.com"], escalation="oncall@example.com",
                                 webhook=f"https://localhost:{http_port}/web-hook")
    registry.owners.add_rule("all-web", T0, owner="web", criticality="high")
    ca = root_ca()
    cert = leaf("www.example.com", ca, days=days)
    store_report(registry, "agent-1", header("r1", full=True, sequence=1), [location(cert, "/etc/ssl/www.pem")], now=T0)
    return ca


def test_two_collectors_send_once_restart_sends_nothing_renewal_sends_again(
        registry: Registry, db_url: str, make_agent: Any, smtp: Any, http: Any) -> None:
    sink, smtp_port = smtp
    hsink, http_port = http
    ca = fleet(registry, make_agent, http_port, days=20)     # 19 days left: crosses 60 and 30 -> one notice (30)
    cfg = settings(smtp_port, http_port)

    other = Registry.open(db_url)                            # a second collector on the same database
    try:
        notifiers = [Notifier(registry, cfg), Notifier(other, cfg)]
        barrier = threading.Barrier(2)
        results: list[Any] = []
        errors: list[BaseException] = []

        def run(n: Notifier) -> None:
            try:
                barrier.wait()
                results.append(n.run_once(NOW))
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=run, args=(n,)) for n in notifiers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert sum(r.notices for r in results) == 1 and sum(r.digests for r in results) == 1
    finally:
        other.close()

    assert len(sink.messages) == 1
    m = sink.messages[0]
    assert m["to"] == ["web@example.com"] and "1 notice(s) for web" in m["subject"]
    assert "threshold 30 days" in m["body"] and "web1.example.com:/etc/ssl/www.pem" in m["body"]
    assert len(hsink.on("/web-hook")) == 1 and hsink.on("/default-hook") == []   # the owner's webhook
    hook = hsink.on("/web-hook")[0]
    assert hook["owner"] == "web" and [n["threshold_days"] for n in hook["notices"]] == [30]
    assert len(hsink.on("/slack")) == 1 and "blocks" in hsink.on("/slack")[0]
    assert hsink.on("/ticket") == []                         # no escalation, no failure: no ticket
    audit = registry.audit.list(action="notification.sent")
    assert len(audit) == 1 and audit[0].target == "owner:web"

    # a restart (a new Registry on the same URL): nothing new; a later run within the same threshold neither
    with Registry.open(db_url) as again:
        r = Notifier(again, cfg).run_once(NOW + dt.timedelta(hours=2))
        assert r.notices == 0 and r.sent == 0
    assert len(sink.messages) == 1 and len(hsink.on("/slack")) == 1

    # renewal: a new certificate at the same location starts again
    renewed = leaf("www.example.com", ca, days=40, not_before=T0)
    store_report(registry, "agent-1", header("r2", full=True, sequence=2), [location(renewed, "/etc/ssl/www.pem")],
                 now=NOW)
    r = Notifier(registry, cfg).run_once(NOW + dt.timedelta(hours=3))
    assert r.notices == 1
    assert len(sink.messages) == 2 and "threshold 60 days" in sink.messages[1]["body"]
    assert renewed.fingerprint in sink.messages[1]["body"]


def test_every_channel_tells_the_same_whole_days_left(registry: Registry, make_agent: Any, smtp: Any,
                                                     http: Any) -> None:
    """4.999 days left: the mail says "expires in 4 day(s)" and the webhook, the slack text and the
    ticket say 4 as well (whole days, rounded down), not 5.0."""
    sink, smtp_port = smtp
    hsink, http_port = http
    fleet(registry, make_agent, http_port, days=20)          # not after: T0 + 19 days
    now = T0 + dt.timedelta(days=19) - dt.timedelta(days=4.999)
    r = Notifier(registry, settings(smtp_port, http_port)).run_once(now)
    assert r.notices >= 1 and r.failed == 0
    (mail,) = [m for m in sink.messages if m["to"] == ["web@example.com"]]
    assert "expires in 4 day(s)" in mail["body"], mail["body"]
    (hook,) = hsink.on("/web-hook")
    expiry = [n for n in hook["notices"] if n["kind"] == "expiry"]
    assert [n["days_left"] for n in expiry] == [4] and "expires in 4 day(s)" in expiry[0]["title"]
    assert all(isinstance(n["days_left"], int) for n in hook["notices"])
    chats = [c["text"] for c in hsink.on("/slack") if "www.example.com" in c["text"]]
    assert chats and all("expires in 4 day(s)" in t and "5 day" not in t for t in chats), chats
    # expired: negative whole days, the same rule as the reports and the CLI
    hsink.requests.clear()
    later = T0 + dt.timedelta(days=19, hours=1)
    Notifier(registry, settings(smtp_port, http_port)).run_once(later)
    days = [n["days_left"] for b in hsink.on("/web-hook") for n in b["notices"]]
    assert days and set(days) == {-1}


def test_escalation_ticket_and_failing_channel_retried_and_visible(
        registry: Registry, make_agent: Any, smtp: Any, http: Any) -> None:
    sink, smtp_port = smtp
    hsink, http_port = http
    fleet(registry, make_agent, http_port, days=6)           # 5 days left, no renewal under way: escalation
    cfg = settings(smtp_port, http_port, broken=True, max_attempts=2)
    n = Notifier(registry, cfg)
    r = n.run_once(NOW)
    assert r.notices == 2 and r.digests == 1 and r.retrying == 1 and r.failed == 0
    assert sorted(tuple(m["to"]) for m in sink.messages) == [("oncall@example.com",), ("web@example.com",)]
    esc_mail = [m for m in sink.messages if m["to"] == ["oncall@example.com"]][0]
    assert "ESCALATION" in esc_mail["subject"] and "no renewal is under way" in esc_mail["body"]
    tickets = hsink.on("/ticket")
    assert len(tickets) == 1
    t = tickets[0]
    assert t["assignment_group"] == "web" and t["priority"] == "P1" and t["kind"] == "escalation"
    assert t["hosts"] == ["web1.example.com"] and t["paths"] == ["/etc/ssl/www.pem"]
    assert t["due_date"].startswith("2026-01-06") and len(t["fingerprint"]) == 64

    store = NotifyStore(registry.engine)
    failing = store.failing_deliveries()
    assert [(d.channel, d.state, d.attempts) for d in failing] == [("broken", "pending", 1)]
    assert "POST http://127.0.0.1" in failing[0].last_error
    assert {d.channel for d in store.list_deliveries(state="sent")} == {"mail", "hooks", "chat", "desk"}

    # not due yet: nothing is tried; after the backoff it is tried again and fails for good
    assert n.run_once(NOW + dt.timedelta(seconds=30)).retrying == 0
    r = n.run_once(NOW + dt.timedelta(minutes=2))
    assert r.failed == 1 and r.notices == 0
    [failed] = store.list_deliveries(state="failed")
    assert failed.channel == "broken" and failed.attempts == 2
    assert [e.target for e in registry.audit.list(action="notification.failed")] == [f"delivery:{failed.id}"]
    assert len(sink.messages) == 2                           # the others were not sent again


def test_failed_job_and_silent_agent_are_told_once(registry: Registry, make_agent: Any, smtp: Any, http: Any) -> None:
    sink, smtp_port = smtp
    hsink, http_port = http
    fleet(registry, make_agent, http_port, days=200)         # far from expiry
    cfg = settings(smtp_port, http_port)
    n = Notifier(registry, cfg)
    assert n.run_once(NOW).notices == 0
    later = T0 + dt.timedelta(days=2)                        # the agent has been silent for 2 days
    r = n.run_once(later)
    assert r.notices == 1
    assert sink.messages[-1]["to"] == ["pki@example.com"] and "silent" in sink.messages[-1]["body"]
    assert n.run_once(later + dt.timedelta(hours=1)).notices == 0

    assert n.notify_violation(rule="sha1", fingerprint="ab" * 32, reason="SHA-1 signature", environment="prod",
                              owner="web", now=later) is True
    assert n.notify_violation(rule="sha1", fingerprint="ab" * 32, reason="SHA-1 signature", environment="prod",
                              owner="web", now=later) is False
    assert n.notify_violation(rule="sha1", fingerprint="cd" * 32, reason="x", environment="test", now=later) is False
    assert "policy violation sha1" in sink.messages[-1]["body"]
    assert [t["kind"] for t in hsink.on("/ticket")] == ["policy.violation"]


def test_unsent_is_an_anti_join_on_the_whole_key(registry: Registry) -> None:
    from collector.domain import notices as dec
    store = NotifyStore(registry.engine)
    fp, other = "a" * 64, "b" * 64
    claimed = dec.Notice(kind=dec.EXPIRY, key=fp, threshold=30, owner="web", title="t", target=f"certificate:{fp}",
                         marks=(60,))
    _, won = store.claim_digest(dec.Digest("web", (claimed,)), NOW, lambda did, ns: [])
    assert won == [claimed]
    asked = {(fp, 30, dec.EXPIRY, "web"), (fp, 60, dec.EXPIRY, "web"),        # claimed, and marked
             (fp, 14, dec.EXPIRY, "web"), (fp, 30, dec.EXPIRY, ""), (fp, 30, dec.ESCALATION, "web"),
             (other, 30, dec.EXPIRY, "web"), (other, 7, dec.ESCALATION, "o'brien, \"x\"")}
    assert store.unsent(asked) == asked - {(fp, 30, dec.EXPIRY, "web"), (fp, 60, dec.EXPIRY, "web")}
    assert store.unsent([]) == set()
    assert store.unsent([(fp, 30, dec.EXPIRY, "web")]) == set()


def test_a_certificate_of_two_teams_tells_each_once_even_after_a_half_finished_run(
        registry: Registry, db_url: str, make_agent: Any, smtp: Any, http: Any) -> None:
    """A certificate at a web location and a db location: each owner gets its digest once. A run that
    claimed web's digest and died before db's (simulated by claiming web's alone) leaves db's to the next."""
    from collector.domain import notices as dec
    sink, smtp_port = smtp
    _, http_port = http
    make_agent("agent-1", "web1.example.com")
    registry.owners.create_owner("web", T0, contacts=["web@example.com"])
    registry.owners.create_owner("db", T0, contacts=["db@example.com"])
    registry.owners.add_rule("web", T0, owner="web", path="/etc/nginx/**")
    registry.owners.add_rule("db", T0, owner="db", path="/var/lib/pg/**")
    cert = leaf("shared.example.com", root_ca(), days=20)
    store_report(registry, "agent-1", header("r1", full=True, sequence=1),
                 [location(cert, "/etc/nginx/shared.pem"), location(cert, "/var/lib/pg/shared.pem")], now=T0)
    cfg = NotifySettings.from_config({"notify": {"escalate_at": False, "channel": [
        {"name": "mail", "type": "smtp", "host": "127.0.0.1", "port": smtp_port, "from": "certfleet@example.com"}]}})
    n = Notifier(registry, cfg)
    items = n.certificate_items(NOW)
    assert sorted((i.owner, [p.path for p in i.places]) for i in items) == [
        ("db", ["/var/lib/pg/shared.pem"]), ("web", ["/etc/nginx/shared.pem"])]
    web_only = dec.due_notices([i for i in items if i.owner == "web"], set(), NOW, cfg.thresholds)
    _, won = n.store.claim_digest(dec.Digest("web", tuple(web_only)), NOW, lambda did, ns: [])
    assert [w.threshold for w in won] == [30]

    with Registry.open(db_url) as again:                     # "restarted": the next run sends db's only
        r = Notifier(again, cfg).run_once(NOW + dt.timedelta(minutes=15))
    assert (r.notices, r.digests, r.sent) == (1, 1, 1)
    assert [m["to"] for m in sink.messages] == [["db@example.com"]]
    assert "threshold 30 days" in sink.messages[0]["body"] and "/var/lib/pg/shared.pem" in sink.messages[0]["body"]
    r = n.run_once(NOW + dt.timedelta(minutes=30))
    assert (r.notices, r.sent) == (0, 0) and len(sink.messages) == 1
