"""``certfleet notify run`` through the real programs: collector (subprocess), agent (run --once) and
CLI, mail to a real SMTP server on loopback (aiosmtpd). A certificate 10 days from expiry is told
once, in one digest, for the 14-day threshold (60 and 30 were crossed at the same time: marked, not
sent); a second run sends nothing; nor does the collector's restart (whose scheduler runs the
notifier at start) or a third run after it."""
from __future__ import annotations

import json
import pathlib
import time
from typing import Any, Iterator

import pytest

from tests.conftest import need_tools
from tests.e2e.harness import Agent, Collector
from tests.e2e.test_sync_lifecycle import make_cert, pem_store
from tests.helpers.registry_notify_servers import smtp_server


@pytest.fixture
def smtp() -> Iterator[Any]:
    yield from smtp_server()


def notify_tables(smtp_port: int) -> str:
    return (
        "\n[notify]\n"
        'interval = "1h"\n'                     # the scheduler runs it at start, then not during the test
        "thresholds = [60, 30, 14, 7, 1]\n"
        "escalate_at = 7\n"
        "\n[[notify.channel]]\n"
        'name = "mail"\n'
        'type = "smtp"\n'
        'host = "127.0.0.1"\n'
        f"port = {smtp_port}\n"
        'from = "certfleet@example.com"\n'
        'to = ["pki@example.com"]\n'
    )


def run_notify(c: Collector) -> dict[str, int]:
    r = c.cli("notify", "run", "--format", "json")
    assert r.code == 0, r.out + r.err
    return json.loads(r.out)


def test_notify_run_sends_one_digest_once_across_a_restart(tmp_path: pathlib.Path, smtp: Any) -> None:
    need_tools("openssl")
    sink, smtp_port = smtp
    c = Collector(tmp_path / "collector", extra_tables=notify_tables(smtp_port))
    c.start()
    try:
        assert c.init_admin().code == 0
        stores = tmp_path / "stores"
        (stores / "web").mkdir(parents=True)
        make_cert(stores / "web" / "soon.pem", "soon.example.test", days=10)
        make_cert(stores / "web" / "later.pem", "later.example.test", days=200)
        r = c.cli("owners", "add", "web-team", "--email", "web-team@example.com")
        assert r.code == 0, r.err
        r = c.cli("owners", "rules", "add", "--name", "web", "--owner", "web-team", "--path", f"{stores}/web/**")
        assert r.code == 0, r.err
        agent = Agent(tmp_path / "agent", pem_store(stores))
        agent.write_config(hostname="notify-host")
        assert agent.enroll(c, c.token()).code == 0
        r = agent.run_once()
        assert r.code == 0 and "full report 1 stored" in r.out, r.out + r.err

        first = run_notify(c)
        assert first == {"notices": 1, "digests": 1, "sent": 1, "retrying": 0, "failed": 0}, first
        assert len(sink.messages) == 1
        m = sink.messages[0]
        assert m["to"] == ["web-team@example.com"] and m["from"] == "certfleet@example.com"
        assert m["subject"] == "[certfleet] 1 notice(s) for web-team"
        assert "soon.example.test" in m["body"] and "threshold 14 days" in m["body"]
        assert f"notify-host:{stores}/web/soon.pem" in m["body"]
        assert "later.example.test" not in m["body"] and "threshold 60" not in m["body"]

        assert run_notify(c) == {"notices": 0, "digests": 0, "sent": 0, "retrying": 0, "failed": 0}
        assert len(sink.messages) == 1

        c.stop()
        c.start()                                     # its scheduler runs the notifier once at start
        time.sleep(2)
        assert run_notify(c) == {"notices": 0, "digests": 0, "sent": 0, "retrying": 0, "failed": 0}
        assert len(sink.messages) == 1

        r = c.cli("notify", "deliveries", "--format", "json")
        assert r.code == 0, r.err
        assert [(d["state"], d["channel"], d["target"], d["owner"]) for d in r.json()] == [
            ("sent", "mail", "web-team@example.com", "web-team")]
        r = c.cli("audit", "list", "--format", "json", "--action", "notification.sent")
        assert r.code == 0, r.err
        (sent,) = r.json()
        assert sent["target"] == "owner:web-team"
        assert [(n["kind"], n["threshold"]) for n in sent["detail"]["notices"]] == [("expiry", 14)]
        assert c.cli("audit", "verify").code == 0
    finally:
        c.stop()
