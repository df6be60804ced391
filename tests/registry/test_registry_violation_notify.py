"""A new policy violation on a production certificate tells its owner (SQLite and PostgreSQL, a real
SMTP server on loopback): once, after the evaluation stored it; not again on the next evaluation,
nor from a second collector; nothing for a test certificate, nor when no channel is configured."""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterator

import pytest
from cryptography import x509

from collector.services.notifier import Notifier
from collector.config.notify import NotifySettings
from collector.services.policy_runner import PolicyEvaluator, PolicySettings
from collector.registry import Registry
from tests.helpers.registry_notify_servers import smtp_server
from tests.helpers.registry_certs import header, leaf, location, root_ca, rsa_key, sha1_cert_der, store_report

H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def sha1_der(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return sha1_cert_der(tmp_path_factory.mktemp("sha1"))


@pytest.fixture
def smtp() -> Iterator[Any]:
    yield from smtp_server()


def mail_settings(port: int) -> NotifySettings:
    return NotifySettings.from_config({"notify": {"channel": [
        {"name": "mail", "type": "smtp", "host": "127.0.0.1", "port": port, "from": "certfleet@example.com",
         "to": ["pki@example.com"]}]}})


@pytest.fixture
def hosts(registry: Registry, make_agent: Any, sha1_der: bytes) -> dt.datetime:
    """web1 (owner web): the SHA-1 certificate at a prod-labelled location; test1: an RSA-1024 one labelled test."""
    base = x509.load_der_x509_certificate(sha1_der).not_valid_before_utc.replace(microsecond=0) + H
    make_agent("a1", "web1.example.com", now=base)
    make_agent("a2", "test1.example.com", now=base)
    registry.owners.create_owner("web", base, contacts=["web@example.com"])
    registry.owners.add_rule("web", base, owner="web", criticality="high", host="*.example.com")
    weak = leaf("old.example.com", root_ca(not_before=base - D), key=rsa_key(1024), not_before=base - D)
    store_report(registry, "a1", header("r1", full=True, sequence=1, hostname="web1.example.com"), [
        location(sha1_der, "/etc/legacy/cert.pem", labels={"environment": "prod"})], now=base)
    store_report(registry, "a2", header("r2", full=True, sequence=1, hostname="test1.example.com"), [
        location(weak, "/etc/old/cert.pem", labels={"environment": "test"})], now=base)
    return base


def test_new_prod_violation_notifies_owner_once(registry: Registry, db_url: str, hosts: dt.datetime,
                                                smtp: Any) -> None:
    sink, port = smtp
    base = hosts
    notifier = Notifier(registry, mail_settings(port))
    told: list[Any] = []

    def on_new(v: Any) -> bool:
        told.append(v)
        return notifier.on_new_violation(v)

    # after a report: the agent's evaluation
    stats = registry.policies.evaluate_agent("a1", base + H, on_new_violation=on_new)
    assert stats.new == 1
    (v,) = told
    assert (v.rule, v.environment, v.owner, v.criticality) == ("forbidden_signature_algorithms", "prod", "web", "high")
    assert v.places[0][:2] == ("web1.example.com", "/etc/legacy/cert.pem")
    assert len(sink.messages) == 1
    m = sink.messages[0]
    assert m["to"] == ["web@example.com"]
    assert "forbidden_signature_algorithms" in m["body"] and "web1.example.com" in m["body"]

    # the scheduled evaluation: the test certificate's violation is new but not production; the prod one not new
    evaluator = PolicyEvaluator(registry, PolicySettings(), lambda: base + 2 * H, on_new_violation=on_new)
    stats = evaluator.run_once()
    assert (stats.new, stats.still) == (1, 1)
    assert [(t.rule, t.environment) for t in told[1:]] == [("min_rsa_bits", "test")]
    assert len(sink.messages) == 1

    # again, and from a second collector on the same database: nothing new to tell
    evaluator.clock = lambda: base + 3 * H
    assert evaluator.run_once().new == 0
    with Registry.open(db_url) as other:
        assert not Notifier(other, mail_settings(port)).on_new_violation(v)
    assert len(told) == 2 and len(sink.messages) == 1


def test_waived_or_unconfigured_tells_nobody(registry: Registry, hosts: dt.datetime, smtp: Any,
                                             sha1_der: bytes) -> None:
    sink, port = smtp
    base = hosts
    # no channel configured: the collector passes no callback; the notifier itself refuses too
    quiet = Notifier(registry, NotifySettings.from_config({}))
    assert not quiet.enabled
    told: list[Any] = []
    registry.policies.evaluate_agent("a1", base + H,
                                     on_new_violation=lambda v: told.append(quiet.on_new_violation(v)))
    assert told == [False] and sink.messages == []

    # a violation waived by an exception when it is first found is not told
    registry.policies.add_exception("min_rsa_bits", base + H, pattern="test1.example.com", reason="lab",
                                    expires_at=base + D)
    calls: list[Any] = []
    assert registry.policies.evaluate_agent("a2", base + 2 * H, on_new_violation=calls.append).new == 1
    assert calls == []

    # a callback that fails does not break the evaluation
    def boom(v: Any) -> None:
        raise RuntimeError("channel down")

    store_report(registry, "a1", header("r3", full=True, sequence=2, hostname="web1.example.com"), [
        location(sha1_der, "/etc/legacy/cert.pem", labels={"environment": "prod"}),
        location(sha1_der, "/etc/legacy/copy.pem", labels={"environment": "prod"})], now=base + 2 * H)
    assert registry.policies.evaluate_agent("a1", base + 3 * H, on_new_violation=boom).new == 1
    assert len(list(registry.policies.list_violations(base + 3 * H, rule="forbidden_signature_algorithms"))) == 2


def test_unowned_violation_is_audited_as_what_happened(registry: Registry, make_agent: Any, sha1_der: bytes,
                                                       smtp: Any) -> None:
    """A prod violation on a certificate nobody owns: with no channel that has a recipient for it the
    audit says it was not delivered (not ``notification.sent`` to owner ""); with a channel default
    recipient it is sent there and audited against ``unowned``."""
    sink, port = smtp
    base = x509.load_der_x509_certificate(sha1_der).not_valid_before_utc.replace(microsecond=0) + H
    make_agent("a3", "lonely.example.org", now=base)
    store_report(registry, "a3", header("r9", full=True, sequence=1, hostname="lonely.example.org"), [
        location(sha1_der, "/srv/orphan/cert.pem", labels={"environment": "prod"})], now=base)
    nobody = NotifySettings.from_config({"notify": {"channel": [
        {"name": "mail", "type": "smtp", "host": "127.0.0.1", "port": port, "from": "certfleet@example.com"},
        {"name": "hooks", "type": "webhook"}]}})
    told: list[Any] = []
    notifier = Notifier(registry, nobody)
    registry.policies.evaluate_agent("a3", base + H, on_new_violation=lambda v: told.append(
        (v.owner, notifier.on_new_violation(v))))
    assert told == [("", True)]
    assert sink.messages == []
    assert registry.audit.list(action="notification.sent") == []
    (ev,) = registry.audit.list(action="notification.undelivered")
    assert ev.target == "unowned" and "not delivered" in ev.reason and "no owner" in ev.reason
    assert ev.detail["deliveries"] == [] and ev.detail["notices"][0]["kind"] == "policy.violation"

    # another certificate's, with a channel default recipient: sent there and audited as sent
    store_report(registry, "a3", header("r10", full=True, sequence=2, hostname="lonely.example.org"), [
        location(sha1_der, "/srv/orphan/cert.pem", labels={"environment": "prod"}),
        location(leaf("weak.example.org", root_ca(not_before=base - D), key=rsa_key(1024), not_before=base - D),
                 "/srv/orphan/weak.pem", labels={"environment": "prod"})], now=base + H)
    mailer = Notifier(registry, mail_settings(port))
    registry.policies.evaluate_agent("a3", base + 2 * H, on_new_violation=mailer.on_new_violation)
    assert [m["to"] for m in sink.messages] == [["pki@example.com"]]
    (sent,) = registry.audit.list(action="notification.sent")
    assert sent.target == "unowned" and [d["target"] for d in sent.detail["deliveries"]] == ["pki@example.com"]
