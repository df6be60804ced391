"""One value grammar for the whole product (certfleet/values.py), one table of cases.

Every place that reads a duration from a config file (agent [agent] scan_interval, collector
[collector] token_ttl, template validity, issuer settings) accepts exactly the durations of
this table and refuses exactly its bad ones.
"""
from __future__ import annotations

import datetime as dt
import pathlib

import pytest

from certfleet.values import parse_duration, parse_size

DURATIONS = [
    ("30s", 30), ("15m", 900), ("1h", 3600), ("2d", 172800), ("1w", 604800), ("1h30m", 5400),
    ("1h 30m", 5400), ("1.5h", 5400), ("250ms", 0.25), ("90", 90), (45, 45), (2.5, 2.5), ("2D", 172800),
]
BAD_DURATIONS = ["15 minutes", "1 hour", "h", "-5", "", "1x", "1h30", "inf", "nan", True]
SIZES = [
    ("512KB", 512 * 1024), ("10MB", 10 * 1024**2), ("1GiB", 1024**3), ("200B", 200), ("4096", 4096), (1000, 1000),
    ("2k", 2048),
]
BAD_SIZES = ["10 parsecs", "MB", "0", "-1KB", "", True]


@pytest.mark.parametrize("text,seconds", DURATIONS)
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", BAD_DURATIONS)
def test_bad_durations_say_what_to_write(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("text,size", SIZES)
def test_sizes(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", BAD_SIZES)
def test_bad_sizes(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)  # type: ignore[arg-type]


def _toml(value: str | float) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


@pytest.mark.parametrize("text,seconds", [d for d in DURATIONS if d[1] >= 1])
def test_agent_and_collector_configs_read_the_same_durations(tmp_path: pathlib.Path, text: str | float,
                                                            seconds: float) -> None:
    from agent.config import parse_config
    from collector.config.core import config_from_dict
    from collector.issuers.settings import config_duration

    agent = parse_config(f"[agent]\nscan_interval = {_toml(text)}\n", path=tmp_path / "agent.toml")
    assert agent.scan_interval == pytest.approx(seconds)
    collector = config_from_dict({"collector": {"token_ttl": text}}, base=tmp_path)
    assert collector.token_ttl == pytest.approx(seconds)
    assert config_duration("ca", {"poll": text}, "poll", dt.timedelta(0)).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("bad", [b for b in BAD_DURATIONS if isinstance(b, str) and b])
def test_agent_and_collector_configs_refuse_the_same_durations(tmp_path: pathlib.Path, bad: str) -> None:
    from agent.config import ConfigError as AgentConfigError, parse_config
    from collector.config.core import ConfigError as CollectorConfigError, config_from_dict

    with pytest.raises(AgentConfigError, match="scan_interval"):
        parse_config(f'[agent]\nscan_interval = "{bad}"\n', path=tmp_path / "agent.toml")
    with pytest.raises(CollectorConfigError, match="token_ttl"):
        config_from_dict({"collector": {"token_ttl": bad}}, base=tmp_path)
