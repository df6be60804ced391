"""The collector's [metrics] and [log] tables: defaults, errors that name the file and line."""
from __future__ import annotations

import pathlib

import pytest

from collector.config.core import load_config, parse_config
from collector.errors import ConfigError


def test_defaults_metrics_off_plain_logs() -> None:
    c = parse_config("[collector]\n")
    assert c.metrics.enabled is False and c.log.format == "plain"
    assert (c.metrics.refresh, c.metrics.owner_refresh) == (120.0, 300.0)


def test_listener_and_token_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "metrics.token").write_text("t0k3n\n")
    path = tmp_path / "collector.toml"
    path.write_text('[collector]\n\n[metrics]\nlisten = "127.0.0.1:9792"\nbearer_token_file = "metrics.token"\n'
                    'refresh = "1m"\n\n[log]\nformat = "json"\n')
    c = load_config(path)
    assert c.metrics.host_port() == ("127.0.0.1", 9792)
    assert c.metrics.bearer_token_file == tmp_path / "metrics.token"    # relative to the config file
    assert c.metrics.token() == "t0k3n" and c.metrics.refresh == 60.0
    assert c.log.format == "json"


@pytest.mark.parametrize(("table", "message"), [
    ('[metrics]\nlisten = "9792"\n', "[metrics] listen: '9792' is not HOST:PORT"),
    ('[metrics]\nport = 9792\n', "unknown"),
    ('[metrics]\nbearer_token_file = "/nonexistent/token"\n', "is not a readable file"),
    ('[metrics]\nrefresh = "0s"\n', "refresh must be at least 1s"),
    ('[log]\nformat = "xml"\n', "[log] format must be one of plain, json"),
])
def test_errors_name_the_line(tmp_path: pathlib.Path, table: str, message: str) -> None:
    path = tmp_path / "collector.toml"
    path.write_text("[collector]\n\n" + table)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert message in str(e.value)
    assert f"{path}:" in str(e.value)
