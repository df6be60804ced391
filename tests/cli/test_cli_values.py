"""Values typed on the ``certfleet`` command line: times, horizons, durations, ports, labels, expiries.
Each flag keeps its own meaning of a bare number (``--expiring-within 30`` is days, ``--ttl 30`` is
seconds); the units after a number are the product's one grammar (certfleet/values.py)."""
from __future__ import annotations

import datetime as dt

import pytest

from collector.cli.args import days_or_duration, parse_time, seconds
from collector.cli.netscan import _ports, _seconds, _starttls, _targets
from collector.cli.owners import _labels
from collector.cli.policy import parse_expiry
from collector.errors import CollectorError, InvalidInput

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("value,expected", [
    ("2026-01-31", dt.datetime(2026, 1, 31, tzinfo=UTC)),
    ("2026-01-31T10:00:00Z", dt.datetime(2026, 1, 31, 10, tzinfo=UTC)),
    ("2026-01-31T10:00z", dt.datetime(2026, 1, 31, 10, tzinfo=UTC)),
    (" 2026-01-31T12:00:00+02:00 ", dt.datetime(2026, 1, 31, 10, tzinfo=UTC)),
])
def test_times_are_iso_8601_and_utc_without_a_zone(value: str, expected: dt.datetime) -> None:
    assert parse_time(value, "--since") == expected


def test_a_bad_time_names_the_flag() -> None:
    with pytest.raises(InvalidInput, match=r"^--since: 'yesterday' is not an ISO 8601 time \(e\.g\. 2026-01-31"):
        parse_time("yesterday", "--since")


@pytest.mark.parametrize("value,expected", [
    ("30", 30 * 86400), ("30d", 30 * 86400), ("12h", 12 * 3600), ("90m", 5400), ("45s", 45), (" 7 ", 7 * 86400),
    ("1.5", 36 * 3600),
    # the product's grammar, whole: weeks and upper-case units (refused before: "1w" was read as "1wd")
    ("1w", 7 * 86400), ("2W", 14 * 86400), ("30D", 30 * 86400), ("1d12h", 36 * 3600),
])
def test_expiring_within_a_bare_number_is_days(value: str, expected: int) -> None:
    assert days_or_duration(value, "--expiring-within") == expected


def test_expiring_within_refuses_what_is_not_a_duration() -> None:
    with pytest.raises(CollectorError, match="^--expiring-within: "):
        days_or_duration("soon", "--expiring-within")


@pytest.mark.parametrize("value,expected", [("30", 30), ("30m", 1800), ("1h30m", 5400), ("2d", 172800), ("1w", 604800)])
def test_ttl_a_bare_number_is_seconds(value: str, expected: int) -> None:
    assert seconds(value, "--ttl") == expected


def test_ttl_error_is_the_one_grammar_s() -> None:
    with pytest.raises(CollectorError) as e:
        seconds("5x", "--ttl")
    assert str(e.value) == ("--ttl: not a duration: '5x' (use e.g. \"30s\", \"15m\", \"1h30m\", \"2d\", \"1w\" "
                            "or a number of seconds)")


def test_netscan_values() -> None:
    assert _targets(["10.0.0.1, 10.0.0.0/30", "10.0.1.1-10.0.1.3,"]) == ["10.0.0.1", "10.0.0.0/30", "10.0.1.1-10.0.1.3"]
    assert _ports(["443,8000-8002", " 25 "]) == [443, 8000, 8001, 8002, 25]
    assert _starttls(["25=SMTP,143=imap"]) == {25: "smtp", 143: "imap"}
    assert _seconds("3") == 3.0 and _seconds("2.5s") == 2.5 and _seconds("1m") == 60.0
    with pytest.raises(CollectorError, match=r"--ports: '44x' is not a port or a range of ports \(443, 8000-8010\)"):
        _ports(["44x"])
    with pytest.raises(CollectorError, match="is not a range of ports"):
        _ports(["9-1"])
    with pytest.raises(CollectorError, match=r"--starttls: 'bad' is not PORT=PROTOCOL"):
        _starttls(["bad"])


def test_labels_are_name_equals_value() -> None:
    assert _labels(["environment=prod", " team = web "]) == {"environment": "prod", "team": "web"}
    assert _labels(None) == {}
    with pytest.raises(InvalidInput, match="--label 'nope': use NAME=VALUE"):
        _labels(["nope"])


@pytest.mark.parametrize("value,expected", [
    ("30d", NOW + dt.timedelta(days=30)),
    ("12h", NOW + dt.timedelta(hours=12)),
    # the product's grammar, whole (refused before: only NUMBER + one of s, m, h, d was a duration here)
    ("1w", NOW + dt.timedelta(weeks=1)), ("1h30m", NOW + dt.timedelta(minutes=90)),
    ("1.5d", NOW + dt.timedelta(hours=36)),
    ("2027-01-31", dt.datetime(2027, 1, 31, 23, 59, 59, tzinfo=UTC)),
    ("2027-01-31T10:00:00", dt.datetime(2027, 1, 31, 10, tzinfo=UTC)),
    ("2027-01-31T10:00:00+01:00", dt.datetime(2027, 1, 31, 9, tzinfo=UTC)),
])
def test_an_exception_expires_at_a_date_or_after_a_duration(value: str, expected: dt.datetime) -> None:
    assert parse_expiry(value, NOW) == expected


@pytest.mark.parametrize("value,message", [
    ("", "--expires is required"), ("nonsense", "--expires 'nonsense' is not a date"),
    ("30", "--expires '30' is not a date"),          # a bare number is neither a date nor a duration here
])
def test_a_bad_expiry_is_invalid_input(value: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_expiry(value, NOW)
