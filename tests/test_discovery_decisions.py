"""collector/domain/netscan.py and serving.py: network scan and serving decisions, as pure functions."""
from __future__ import annotations

import datetime as dt

import pytest

from collector.domain import netscan as d
from collector.domain import serving
from collector.errors import InvalidInput

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
M = dt.timedelta(minutes=1)


def test_targets_are_parsed_and_counted() -> None:
    p = d.plan_scan(["10.0.0.0/28", "10.0.1.5", "10.0.2.1-10.0.2.20", "2001:db8::/126"], [443, 8443, 443])
    assert p.targets == ("10.0.0.0/28", "10.0.1.5", "10.0.2.1-10.0.2.20", "2001:db8::/126")
    assert p.ports == (443, 8443) and p.addresses == 16 + 1 + 20 + 4 and p.targets_total == 41 * 2
    assert (p.rate_per_second, p.timeout_seconds, p.concurrency) == (50.0, 3.0, 64)


@pytest.mark.parametrize("targets, ports, message", [
    (["10.0.0.1/28"], [443], "host bits set; did you mean 10.0.0.0/28?"),
    (["10.0.0.9-10.0.0.1"], [443], "ends before it starts"),
    (["10.0.0.1-2001:db8::1"], [443], "mixes IPv4 and IPv6"),
    (["web.example.com"], [443], "not an address, a network or a range"),
    (["10.0.0.0/28", "10.0.0.5"], [443], "overlap"),
    (["10.0.0.0/15"], [443], "131072 addresses"),
    (["10.0.0.0/16"], list(range(1, 20)), "= 1245184 probes"),
    (["10.0.0.1"], [0], "port 0 is not between 1 and 65535"),
    ([], [443], "needs targets"),
    (["10.0.0.1"], [], "needs ports"),
])
def test_bad_requests_name_the_problem(targets, ports, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match=message.replace("?", r"\?").replace("(", r"\(")):
        d.plan_scan(targets, ports)


def test_limits_and_starttls() -> None:
    with pytest.raises(InvalidInput, match="rate"):
        d.plan_scan(["10.0.0.1"], [443], rate_per_second=-1)
    with pytest.raises(InvalidInput, match="timeout"):
        d.plan_scan(["10.0.0.1"], [443], timeout_seconds=61)
    with pytest.raises(InvalidInput, match="concurrency"):
        d.plan_scan(["10.0.0.1"], [443], concurrency=5000)
    with pytest.raises(InvalidInput, match="'ldap' for port 389 is not one of smtp, imap, pop3"):
        d.plan_scan(["10.0.0.1"], [389], starttls={389: "ldap"})
    p = d.plan_scan(["10.0.0.1"], [25, 143, 2525, 443], starttls={2525: "SMTP"})
    assert p.starttls == {25: "smtp", 143: "imap", 2525: "smtp"}


def test_sni_names_are_cleaned() -> None:
    assert d.sni_list(["WWW.example.com.", "*.example.com", "10.0.0.1", "www.example.com", "", "mail.example.com"]) == (
        "www.example.com", "mail.example.com")


def test_progress_only_moves_forward_and_final_is_final() -> None:
    ch = d.progress_state("sent", (16, 0, 0, 0), "", d.Progress("running", 16, 5, 1))
    assert (ch.state, ch.probed, ch.tls_found, ch.finished) == ("running", 5, 1, False)
    ch = d.progress_state("running", (16, 8, 2, 0), "", d.Progress("running", 16, 5, 1))
    assert (ch.probed, ch.tls_found) == (8, 2)
    ch = d.progress_state("running", (16, 8, 2, 0), "", d.Progress("done", 16, 16, 3))
    assert ch.finished and ch.reason == "scan finished"
    assert d.progress_state("done", (16, 16, 3, 0), "", d.Progress("running", 16, 1)) is None
    assert d.progress_state("failed", (16, 1, 0, 0), "", d.Progress("done", 16, 16)) is None
    with pytest.raises(InvalidInput):
        d.progress_state("sent", (1, 0, 0, 0), "", d.Progress("paused"))


def test_deadlines() -> None:
    assert d.overdue("queued", T0, T0, T0 + 59 * M) is None
    assert "did not connect" in d.overdue("queued", T0, T0, T0 + 60 * M)
    assert d.overdue("sent", T0, T0 + 10 * M, T0 + 14 * M) is None
    assert "did not answer within 5 min" in d.overdue("sent", T0, T0 + 10 * M, T0 + 15 * M)
    assert "no progress from the agent for 5 min" in d.overdue("running", T0, T0, T0 + 5 * M)
    assert d.overdue("done", T0, T0, T0 + 1000 * M) is None


def test_endpoint_matching_and_renewability() -> None:
    assert serving.listens_on(["0.0.0.0:443"], "127.0.0.5:443")
    assert serving.listens_on(["[::]:8443"], "[::1]:8443")
    assert serving.listens_on(["127.0.0.5:443"], "127.0.0.5:443")
    assert not serving.listens_on(["127.0.0.6:443"], "127.0.0.5:443")
    assert not serving.listens_on(["0.0.0.0:80"], "127.0.0.5:443")

    class Loc:
        def __init__(self, store_type: str, role: str = "service") -> None:
            self.store_type, self.role = store_type, role

    assert serving.not_renewable(Loc("pem")) is None
    assert "TLS endpoint" in serving.not_renewable(Loc("endpoint"))
    assert "trust anchors are not renewed" in serving.not_renewable(Loc("pem", "trust_anchor"))
    hint = serving.reload_suggestion([{"name": "java", "pid": 8}, {"name": "nginx", "pid": 7, "suggested_reload": "nginx"}])
    assert hint == serving.ReloadSuggestion("nginx", "nginx", 7, "")
    assert hint.text() == "nginx (nginx pid 7 uses this location)"
    assert serving.ReloadSuggestion.from_json(hint.as_json()) == hint
    assert serving.reload_suggestion([{"name": "java", "pid": 8}]) is None
