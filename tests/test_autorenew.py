"""Auto-renewal as a pure decision: rules from the config, plan_renewals at an injected time."""
from __future__ import annotations

import datetime as dt
import hashlib
import tomllib
from typing import Any

import pytest

from collector.config.core import ConfigError, config_from_dict
from collector.config.renewal import load_auto_rules, load_settings
from collector.domain.autorules import AutoRule, path_pattern
from collector.services.autorenew import Planned, busy_locations, build_autorenewer, location_key, plan_renewals
from collector.domain.jobstates import MaintenanceWindow, renewal_point
from collector.registry.types import CertificateView, JobView, LocationSelector, LocationView

UTC = dt.timezone.utc
DAY = dt.timedelta(days=1)
T0 = dt.datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
TEMPLATES = {"web": object(), "internal": object()}


def fp(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def loc(path: str = "/etc/nginx/ssl/site.pem", *, agent: str = "a1", hostname: str = "web-1.example.com",
        store_type: str = "pem", alias: str = "", chain_index: int = 0, status: str = "present",
        labels: dict[str, str] | None = None) -> LocationView:
    return LocationView(
        agent_id=agent, hostname=hostname, store_type=store_type, path=path, alias=alias, chain_index=chain_index,
        has_private_key=True, key_encrypted=False, key_match="matches", entry_type="certificate", status=status,
        first_seen=T0, last_seen=T0, removed_at=None, file_owner="root", file_group="root", file_mode=0o600,
        file_mtime=None, labels=labels if labels is not None else {"service": "nginx", "environment": "prod"},
    )


def cert(name: str = "www", *, days: float = 90, not_before: dt.datetime = T0, is_ca: bool = False,
         locations: tuple[LocationView, ...] | None = None) -> CertificateView:
    return CertificateView(
        fingerprint=fp(name), subject=f"CN={name}", issuer="CN=CA", serial="01", sans=(),
        not_before=not_before, not_after=not_before + dt.timedelta(days=days), key_type="EC", key_size=256,
        key_curve="secp256r1", signature_algorithm="ecdsa-with-SHA256", is_ca=is_ca, self_signed=False,
        key_usage=(), extended_key_usage=(), issuer_fingerprint="", der=b"",
        locations=locations if locations is not None else (loc(),),
    )


def rule(index: int = 1, **kw: Any) -> AutoRule:
    kw.setdefault("template", "web")
    kw.setdefault("jitter", 0.0)
    if isinstance(kw.get("window"), str):
        kw["window"] = MaintenanceWindow.parse(kw["window"])
    return AutoRule(index=index, **kw)


def due(c: CertificateView, rules: list[AutoRule], now: dt.datetime, active: Any = frozenset()) -> list[Planned]:
    return plan_renewals([c], rules, now, active)


# -- timing ------------------------------------------------------------------------------------


def test_default_is_two_thirds_of_the_lifetime() -> None:
    c = cert(days=90)                               # 2/3 point: T0 + 60 days
    assert due(c, [rule()], T0 + 60 * DAY - dt.timedelta(seconds=1)) == []
    (p,) = due(c, [rule()], T0 + 60 * DAY)
    assert p == Planned(
        fingerprint=c.fingerprint,
        location=LocationSelector(agent_id="a1", store_type="pem", path="/etc/nginx/ssl/site.pem", alias="",
                                  chain_index=0),
        template="web", reason="auto-renewal: 2/3 of lifetime passed (expires 2026-04-01, rule 1)", rule=1,
        hostname="web-1.example.com",
    )


def test_days_before_expiry() -> None:
    c = cert(days=90)
    r = [rule(days_before=30)]
    assert due(c, r, T0 + 59 * DAY) == []
    (p,) = due(c, r, T0 + 60 * DAY)
    assert p.reason == "auto-renewal: 30 days before expiry reached (expires 2026-04-01, rule 1)"


def test_percent_of_the_lifetime_left() -> None:
    c = cert(days=100)
    r = [rule(percent=10)]
    assert due(c, r, T0 + 89 * DAY) == []
    (p,) = due(c, r, T0 + 90 * DAY)
    assert "10% of lifetime left" in p.reason


def test_expired_certificates_still_installed_are_due() -> None:
    c = cert(days=30, not_before=T0 - 400 * DAY)
    (p,) = due(c, [rule(days_before=5)], T0)
    assert p.reason.startswith("auto-renewal: expired 2024-12-27 and still installed")


def test_window_crossing_midnight() -> None:
    # Saturday and Sunday nights, 22:00 to 04:00 Berlin time (UTC+1 in January)
    r = [rule(window="sat,sun 22:00-04:00 Europe/Berlin")]
    c = cert(days=30, not_before=dt.datetime(2025, 12, 1, tzinfo=UTC))   # due since mid December
    berlin = dt.timezone(dt.timedelta(hours=1))

    def at(day: int, hour: int, minute: int = 0) -> dt.datetime:   # January 2026: the 3rd is a Saturday
        return dt.datetime(2026, 1, day, hour, minute, tzinfo=berlin).astimezone(UTC)

    inside = [at(3, 22), at(3, 23, 59), at(4, 0), at(4, 3, 59), at(4, 22, 30), at(5, 3)]   # ... Mon 03:00
    outside = [at(2, 23), at(3, 21, 59), at(4, 4), at(4, 12), at(5, 4), at(5, 22)]           # Fri, ..., Mon 22:00
    assert all(due(c, r, t) for t in inside), [t for t in inside if not due(c, r, t)]
    assert not any(due(c, r, t) for t in outside), [t for t in outside if due(c, r, t)]
    # an expired certificate waits for the window too
    expired = cert(days=30, not_before=T0 - 400 * DAY)
    assert due(expired, r, at(3, 23)) and not due(expired, r, at(5, 12))


def test_jitter_spreads_a_fleet_deterministically() -> None:
    certs = [cert(f"host-{i}", days=90) for i in range(300)]
    r = [rule(jitter=0.05)]                         # +-4.5 days around T0 + 60 days
    base = T0 + 60 * DAY

    def share(now: dt.datetime) -> float:
        return len(plan_renewals(certs, r, now)) / len(certs)

    assert share(base - dt.timedelta(days=4.5)) == 0.0
    assert 0.02 < share(base - dt.timedelta(days=3.5)) < 0.25
    assert 0.35 < share(base) < 0.65
    assert 0.75 < share(base + dt.timedelta(days=3.5)) < 0.98
    assert share(base + dt.timedelta(days=4.5)) == 1.0
    # the same answer every time (and on every replica): the seed is the fingerprint
    assert plan_renewals(certs, r, base) == plan_renewals(list(reversed(certs)), r, base)[::-1]
    points = {c.fingerprint: renewal_point(c.not_before, c.not_after, jitter_fraction=0.05, seed=c.fingerprint)
              for c in certs}
    assert len(set(points.values())) == len(certs)
    assert {p.fingerprint for p in plan_renewals(certs, r, base)} == {f for f, t in points.items() if t <= base}


def test_no_jitter_renews_everyone_at_the_same_point() -> None:
    certs = [cert(f"host-{i}", days=90) for i in range(20)]
    assert plan_renewals(certs, [rule(jitter=0)], T0 + 60 * DAY - dt.timedelta(seconds=1)) == []
    assert len(plan_renewals(certs, [rule(jitter=0)], T0 + 60 * DAY)) == 20


# -- which locations --------------------------------------------------------------------------------


def test_labels_must_all_be_equal() -> None:
    now = T0 + 80 * DAY
    r = [rule(match={"service": "nginx", "environment": "prod"})]
    assert due(cert(locations=(loc(labels={"service": "nginx", "environment": "prod", "owner": "x"}),)), r, now)
    assert not due(cert(locations=(loc(labels={"service": "nginx", "environment": "test"}),)), r, now)
    assert not due(cert(locations=(loc(labels={"service": "nginx"}),)), r, now)


def test_hosts_match_the_hostname_case_insensitively() -> None:
    now = T0 + 80 * DAY
    r = [rule(hosts=("web-*", "db1.example.com"))]
    assert due(cert(locations=(loc(hostname="WEB-7.example.com"),)), r, now)
    assert due(cert(locations=(loc(hostname="db1.example.com"),)), r, now)
    assert not due(cert(locations=(loc(hostname="mail.example.com"),)), r, now)


def test_paths_with_one_and_any_depth() -> None:
    now = T0 + 80 * DAY
    r = [rule(paths=("/etc/nginx/**", "/srv/*/tls.pem"))]
    for path, ok in [("/etc/nginx/site.pem", True), ("/etc/nginx/ssl/deep/site.pem", True),
                     ("/srv/a/tls.pem", True), ("/srv/a/b/tls.pem", False), ("/etc/apache2/site.pem", False)]:
        assert bool(due(cert(locations=(loc(path),)), r, now)) is ok, path


def test_path_pattern() -> None:
    assert path_pattern("/etc/**/tls/*.pem").fullmatch("/etc/tls/a.pem")
    assert path_pattern("/etc/**/tls/*.pem").fullmatch("/etc/x/y/tls/a.pem")
    assert not path_pattern("/etc/**/tls/*.pem").fullmatch("/etc/x/tls/sub/a.pem")
    assert path_pattern("/a/site?.[pc]em").fullmatch("/a/site1.pem")
    assert not path_pattern("/a/site?.[!p]em").fullmatch("/a/site1.pem")
    assert path_pattern("/a/b+c(1).pem").fullmatch("/a/b+c(1).pem")
    assert not path_pattern("/a/*").fullmatch("/a/b/c")


def test_the_first_matching_rule_decides() -> None:
    c = cert(days=90, locations=(loc("/etc/nginx/a.pem"), loc("/etc/other/b.pem")))
    rules = [rule(1, paths=("/etc/nginx/**",), days_before=10, template="internal"), rule(2)]
    planned = due(c, rules, T0 + 70 * DAY)      # rule 1 (80 days) not yet; rule 2 (60 days) due
    assert [(p.location.path, p.rule, p.template) for p in planned] == [("/etc/other/b.pem", 2, "web")]
    planned = due(c, rules, T0 + 85 * DAY)
    assert [(p.location.path, p.rule, p.template) for p in planned] == [
        ("/etc/nginx/a.pem", 1, "internal"), ("/etc/other/b.pem", 2, "web")]


def test_no_matching_rule_means_no_renewal() -> None:
    assert due(cert(), [rule(hosts=("db-*",))], T0 + 89 * DAY) == []


def test_cas_chain_entries_removed_and_busy_locations_are_skipped() -> None:
    now = T0 + 80 * DAY
    assert due(cert(is_ca=True), [rule()], now) == []
    assert due(cert(locations=(loc(chain_index=1),)), [rule()], now) == []
    assert due(cert(locations=(loc(status="removed"),)), [rule()], now) == []
    c = cert(locations=(loc("/a.pem"), loc("/b.jks", store_type="jks", alias="web")))
    busy = {location_key("a1", "pem", "/a.pem", "")}
    (p,) = due(c, [rule()], now, busy)
    assert p.location == LocationSelector(agent_id="a1", store_type="jks", path="/b.jks", alias="web", chain_index=0)


def test_an_empty_validity_is_skipped() -> None:
    assert due(cert(days=0), [rule()], T0 + DAY) == []


def job(state: str, finished: dt.datetime | None, path: str = "/a.pem", chain_index: int = 0) -> JobView:
    return JobView(
        job_id="j", kind="renew", agent_id="a1", hostname="h", store_type="pem", path=path, alias="",
        chain_index=chain_index, old_fingerprint=fp("www"), template="web", requested_by="auto-renew", reason="",
        state=state, attempts=0, timeout=dt.timedelta(hours=1), deadline=T0, next_attempt_at=T0,
        command_sent_at=None, csr_der=b"", new_fingerprint="", certificate_der=b"", chain_ders=(),
        served_fingerprint="", result_detail=None, idempotency_key="", created_at=T0, updated_at=finished or T0,
        finished_at=finished,
    )


def test_busy_locations() -> None:
    now = T0 + 10 * DAY
    assert busy_locations([job("requested", None), job("stuck", None, "/b.pem")], now, DAY) == {
        location_key("a1", "pem", "/a.pem", ""), location_key("a1", "pem", "/b.pem", "")}
    assert busy_locations([job("failed", now - dt.timedelta(hours=23))], now, DAY) == {
        location_key("a1", "pem", "/a.pem", "")}
    assert busy_locations([job("verified", now - dt.timedelta(hours=25))], now, DAY) == set()
    assert busy_locations([job("requested", None, chain_index=1)], now, DAY) == set()


# -- configuration ------------------------------------------------------------------------------------

EXAMPLE = """
[renewal]
default_template = "web"
check_interval = "5m"
retry_after = "12h"

[[renewal.auto]]
template = "web"
match = { service = "nginx", environment = "prod" }
hosts = ["web-*"]
paths = ["/etc/nginx/**"]
days_before = 30
window = "sat,sun 22:00-04:00 Europe/Berlin"
jitter = 0.1

[[renewal.auto]]
template = "internal"
percent = 33
"""


def test_load_rules_from_toml() -> None:
    table = tomllib.loads(EXAMPLE)["renewal"]
    first, second = load_auto_rules(table, TEMPLATES)
    assert (first.index, first.template, dict(first.match), first.hosts, first.paths) == (
        1, "web", {"service": "nginx", "environment": "prod"}, ("web-*",), ("/etc/nginx/**",))
    assert (first.days_before, first.percent, first.jitter) == (30, None, 0.1)
    assert first.window == MaintenanceWindow.parse("sat,sun 22:00-04:00 Europe/Berlin")
    assert (second.index, second.template, second.percent, second.days_before, second.jitter, second.window) == (
        2, "internal", 33, None, 0.05, None)
    assert second.hosts == second.paths == () and dict(second.match) == {}
    settings = load_settings(table)
    assert settings.check_interval == 300 and settings.retry_after == dt.timedelta(hours=12)
    assert load_settings({}).check_interval == 600 and load_settings(None).retry_after == DAY
    assert load_auto_rules({"default_template": "web"}, TEMPLATES) == [] and load_auto_rules(None, TEMPLATES) == []


@pytest.mark.parametrize("rules, words", [
    ([{"template": "web"}, {"template": "web", "day_before": 3}], ["rule 2", "day_before", "unknown key"]),
    ([{"match": {"a": "b"}}], ["rule 1", "template", "required"]),
    ([{"template": "nope"}], ["rule 1", "template", "'nope'", "known: internal, web"]),
    ([{"template": "web", "days_before": 3, "percent": 10}], ["rule 1", "days_before", "not both"]),
    ([{"template": "web", "days_before": -1}], ["rule 1", "days_before", "negative"]),
    ([{"template": "web", "days_before": "30"}], ["rule 1", "days_before", "number"]),
    ([{"template": "web", "percent": 100}], ["rule 1", "percent", "between 0 and 100"]),
    ([{"template": "web", "percent": True}], ["rule 1", "percent", "number"]),
    ([{"template": "web", "window": "someday 25:00-26:00"}], ["rule 1", "window", "unknown day"]),
    ([{"template": "web", "window": "22:00-04:00 Mars/Olympus"}], ["rule 1", "window", "time zone"]),
    ([{"template": "web", "window": 2200}], ["rule 1", "window", "expected a string"]),
    ([{"template": "web", "jitter": 0.5}], ["rule 1", "jitter", "[0, 0.5)"]),
    ([{"template": "web", "hosts": []}], ["rule 1", "hosts", "non-empty list"]),
    ([{"template": "web", "paths": ["/a", 3]}], ["rule 1", "paths", "strings"]),
    ([{"template": "web", "match": {"service": 1}}], ["rule 1", "match", "'service'", "string"]),
    ([{"template": "web", "match": {}}], ["rule 1", "match", "non-empty"]),
    (["web"], ["rule 1", "table"]),
])
def test_bad_rules_are_clear_errors(rules: list[Any], words: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        load_auto_rules({"auto": rules}, TEMPLATES)
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    assert str(e.value).startswith("[[renewal.auto]] rule ")


def test_days_before_as_long_as_the_template_lives_is_refused() -> None:
    class Tpl:
        validity = dt.timedelta(days=30)

    with pytest.raises(ConfigError, match=r"rule 1: days_before: 30 days .* validity of 30 days"):
        load_auto_rules({"auto": [{"template": "web", "days_before": 30}]}, {"web": Tpl()})
    assert load_auto_rules({"auto": [{"template": "web", "days_before": 20}]}, {"web": Tpl()})[0].days_before == 20


def test_bad_renewal_table() -> None:
    with pytest.raises(ConfigError, match=r"\[\[renewal.auto\]\]"):
        load_auto_rules({"auto": {"template": "web"}}, TEMPLATES)
    with pytest.raises(ConfigError, match=r"\[renewal\]: unknown key\(s\) check_intervall"):
        load_settings({"check_intervall": "5m"})
    with pytest.raises(ConfigError, match="check_interval"):
        load_settings({"check_interval": "soon"})
    with pytest.raises(ConfigError, match="at least one second"):
        load_settings({"check_interval": 0})


def test_build_autorenewer(tmp_path: Any) -> None:
    plain = config_from_dict({"renewal": {"default_template": "web"}}, base=tmp_path)
    assert build_autorenewer(plain, object(), None, lambda: T0) is None   # type: ignore[arg-type]
    auto = config_from_dict(tomllib.loads(EXAMPLE), base=tmp_path)
    with pytest.raises(ConfigError, match=r"needs \[issuers\] and \[templates\]"):
        build_autorenewer(auto, object(), None, lambda: T0)   # type: ignore[arg-type]

    class Service:
        templates = TEMPLATES

    built = build_autorenewer(auto, object(), Service(), lambda: T0)   # type: ignore[arg-type]
    assert built is not None and [r.template for r in built.rules] == ["web", "internal"]
    assert built.check_interval == 300 and built.retry_after == dt.timedelta(hours=12)
