"""The [notify] config: defaults, thresholds by environment and owner, secrets never inline."""
from __future__ import annotations

import datetime as dt

import pytest

from collector.notify.channels import NotifyConfigError
from collector.config.notify import NotifySettings


def test_defaults_and_overrides(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    s = NotifySettings.from_config({})
    assert s.thresholds.default == (60, 30, 14, 7, 1) and s.interval == dt.timedelta(minutes=15)
    assert s.agent_silent_after == dt.timedelta(days=1) and not s.channels
    (tmp_path / "pw").write_text("s3cr$t@\n")
    monkeypatch.setenv("DESK_TOKEN", "tok")
    s = NotifySettings.from_config({"notify": {
        "interval": "5m", "thresholds_by_environment": {"prod": [90, 60, 30, 14, 7, 3, 1]},
        "thresholds_by_owner": {"Web": [30, 7]}, "escalate_at": 3,
        "channel": [{"name": "mail", "type": "smtp", "host": "h", "from": "c@example.com", "username": "u",
                     "password_file": str(tmp_path / "pw")},
                    {"name": "desk", "type": "ticket", "url": "https://desk.example.com/t", "token_env": "DESK_TOKEN",
                     "kinds": ["escalation"]}]}})
    assert s.thresholds.for_item("web", ["prod"]) == (30, 7)
    assert s.thresholds.for_item("db", ["prod", "test"]) == (90, 60, 30, 14, 7, 3, 1)
    assert s.thresholds.for_item("db", []) == (60, 30, 14, 7, 1) and s.thresholds.escalate_at == 3
    mail = s.channels["mail"]
    assert mail._password == "s3cr$t@" and "s3cr" not in repr(mail)   # type: ignore[attr-defined]
    assert s.ticket_kinds == {"desk": ("escalation",)}


@pytest.mark.parametrize("notify, match", [
    ({"channel": [{"name": "m", "type": "smtp", "host": "h", "from": "a@b.c", "password": "x"}]}, "never the password"),
    ({"channel": [{"name": "m", "type": "fax"}]}, "type must be one of"),
    ({"channel": [{"name": "s", "type": "slack"}]}, "needs url"),
    ({"thresholds": []}, "non-empty list"),
    ({"colour": "red"}, "unknown key"),
    ({"channel": [{"name": "t", "type": "ticket", "url": "https://x", "kinds": ["nope"]}]}, "unknown kind"),
])
def test_bad_config_is_refused(notify, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotifyConfigError, match=match):
        NotifySettings.from_config({"notify": notify})
