"""The collector's config file read into typed sections (collector/config/): every table through one
reader that refuses unknown keys and names the file and line of what is wrong."""
from __future__ import annotations

import datetime as dt
import pathlib

import pytest

from collector.config.core import ConfigError, load_config
from collector.config.reader import Table, Where
from collector.domain.templates import TemplateConfigError
from collector.issuers.factory import build_issuers
from collector.notify.channels import NotifyConfigError

CONFIG = """\
[collector]
data_dir = "data"
token_ttl = "2h"

[issuers.internal]
type = "internal_ca"
crl_validity = "2d"

[templates.web]
issuer = "internal"
allowed_san_patterns = ["*.example.com"]

[renewal]
check_interval = "5m"

[[renewal.auto]]
template = "web"
days_before = 30

[policy]
file = "policy.toml"

[notify]
thresholds = [30, 7]

[[notify.channel]]
name = "mail"
type = "smtp"
host = "smtp.example.com"
from = "certfleet@example.com"
password_env = "CERTFLEET_TEST_SMTP_PASSWORD"

[audit]
retention = "90d"
"""


def write(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    p = tmp_path / "collector.toml"
    p.write_text(text)
    return p


def test_every_table_is_read_into_its_typed_section(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CERTFLEET_TEST_SMTP_PASSWORD", raising=False)
    cfg = load_config(write(tmp_path, CONFIG))
    assert cfg.data_dir == tmp_path / "data" and cfg.token_ttl == 7200
    assert list(cfg.issuers) == ["internal"] and cfg.issuers["internal"]["type"] == "internal_ca"
    assert cfg.templates["web"].issuer == "internal" and cfg.templates["web"].validity == dt.timedelta(days=90)
    assert cfg.renewal.check_interval == 300 and [(r.index, r.template, r.days_before) for r in cfg.renewal.rules] \
        == [(1, "web", 30)]
    assert cfg.policy.file == tmp_path / "policy.toml" and cfg.policy.evaluate_interval == dt.timedelta(hours=1)
    assert cfg.notify.thresholds.default == (30, 7) and cfg.notify.channel_names == ("mail",)
    assert cfg.audit.retention == dt.timedelta(days=90)
    # reading the config reads no channel secret (init-admin runs without the service's environment) ...
    assert cfg.notify.channel_tables[0]["password_env"] == "CERTFLEET_TEST_SMTP_PASSWORD"
    # ... making the channels does, and says where the channel is written
    with pytest.raises(NotifyConfigError, match=r"collector.toml:26: .*CERTFLEET_TEST_SMTP_PASSWORD .*is not set"):
        cfg.notify.channels
    monkeypatch.setenv("CERTFLEET_TEST_SMTP_PASSWORD", "pw")
    issuers = build_issuers(cfg.issuers, cfg.data_dir, base_dir=cfg.base_dir)
    assert issuers["internal"].crl_validity == dt.timedelta(days=2)   # type: ignore[attr-defined]


@pytest.mark.parametrize("change, error, where", [
    (("[collector]\n", "[collector]\ncolour = 1\n"), ConfigError, r":2: \[collector\]: unknown key\(s\) colour"),
    (('token_ttl = "2h"', 'token_ttl = "soon"'), ConfigError, r":3: \[collector\] token_ttl: not a duration"),
    (('crl_validity = "2d"', 'crl_validity = "2d"\ncolour = 1'), TemplateConfigError, r":8: issuer 'internal': unknown"),
    (('allowed_san_patterns = ["*.example.com"]', 'allowed_san_patterns = []'), TemplateConfigError,
     r":11: template 'web': allowed_san_patterns must name"),
    (('days_before = 30', 'days_before = -1'), ConfigError, r":18: \[\[renewal.auto\]\] rule 1: days_before: must not"),
    (('thresholds = [30, 7]', 'thresholds = []'), NotifyConfigError, r":24: \[notify\] thresholds must be"),
    (('type = "smtp"', 'type = "fax"'), NotifyConfigError, r":26: \[\[notify.channel\]\] 'mail': type must be one of"),
    (('retention = "90d"', 'retention = "1h"'), ConfigError, r":34: \[audit\] retention must be at least 1d"),
])
def test_errors_name_the_file_and_line(tmp_path: pathlib.Path, change: tuple[str, str], error: type,
                                       where: str) -> None:
    path = write(tmp_path, CONFIG.replace(*change, 1))
    with pytest.raises(error, match=str(path).replace(".", r"\.") + where):
        cfg = load_config(path)
        build_issuers(cfg.issuers, cfg.data_dir)


def test_inline_tables_as_the_ansible_role_writes_them_name_their_line() -> None:
    text = '["renewal"]\n"auto" = [{"template" = "web"}, {"template" = "web", "jitter" = 0.7}]\n'
    where = Where("c.toml", text)
    assert where(("renewal", "auto", 1), "jitter") == "c.toml:2"
    assert where(("notify",), "colour") == "c.toml"          # not written at all: the file only
    assert Where()(("renewal",), "auto") == ""                # a config made from a dict: nowhere
    t = Table({"a": 1}, "[x]", ("x",), Where("c.toml", "[x]\na = 1\n"))
    with pytest.raises(ConfigError, match=r"^c.toml:2: \[x\]: unknown key\(s\) a \(known: b\)$"):
        t.check_keys({"b"})


def test_a_misspelt_table_or_channel_setting_is_refused_not_ignored(tmp_path: pathlib.Path) -> None:
    """Before, [notfy] (or `hots = ...` in a channel) was read as nothing at all: the feature stayed
    unconfigured without a word."""
    path = write(tmp_path, CONFIG.replace("[notify]\n", "[notfy]\n", 1))
    with pytest.raises(ConfigError, match=r"collector\.toml:23: unknown table\(s\) \[notfy\] \(known: \[collector\]"):
        load_config(path)
    path = write(tmp_path, CONFIG.replace('host = "smtp.example.com"', 'hots = "smtp.example.com"', 1))
    with pytest.raises(NotifyConfigError, match=r"collector\.toml:26: .*'mail': an smtp channel needs host"):
        load_config(path)
    path = write(tmp_path, CONFIG.replace('host = "smtp.example.com"', 'host = "smtp.example.com"\nport_ = 25', 1))
    with pytest.raises(NotifyConfigError, match=r"collector\.toml:26: .*'mail': unknown key\(s\) port_ \(known: "):
        load_config(path)


def test_approvals_table_is_read_and_checked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from collector.config.core import parse_config  # only this test parses text

    cfg = parse_config('[collector]\ndata_dir = "d"\n\n[approvals]\nalways_templates = ["public"]\n'
                       'wildcards = true\nexpire_after = "2d"\nnotify_owner = "security"\n', tmp_path / "c.toml")
    p = cfg.approvals.policy
    assert p.always_templates == {"public"} and p.wildcards and p.expire_after == dt.timedelta(days=2)
    assert cfg.approvals.notify_owner == "security" and not p.trust_on_first_sight
    assert parse_config('[collector]\ndata_dir = "d"\n', tmp_path / "c.toml").approvals.policy.expire_after == \
        dt.timedelta(days=7)
    with pytest.raises(ConfigError, match="wildcards must be true or false"):
        parse_config('[collector]\ndata_dir = "d"\n[approvals]\nwildcards = "yes"\n', tmp_path / "c.toml")
    with pytest.raises(ConfigError, match="unknown|trust_first"):
        parse_config('[collector]\ndata_dir = "d"\n[approvals]\ntrust_first = true\n', tmp_path / "c.toml")
