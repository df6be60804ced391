"""The agent's TOML configuration: what users write, and the errors they get."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from agent.config import Secret, default_hostname, load_config, parse_duration
from agent.errors import AgentError, ConfigError, PasswordUnavailable

from tests.helpers.agent_stores import store_toml, write_config


def test_full_example_loads(tmp_path: Path) -> None:
    path = write_config(tmp_path, store_toml(
        "nginx", ["/etc/nginx/**/*.pem", "/srv/app/keystore.jks"], exclude=["**/dhparam.pem"],
        labels={"service": "nginx", "owner": "web-team"}, password_env="NGINX_KS_PASS", follow_symlinks=False,
    ), agent='scan_interval = "1h30m"\nmax_file_size = "512KB"\nlabels = { environment = "prod" }\n'
             '[collector]\naddress = "collector.example.net:7443"\n')
    cfg = load_config(path)
    assert cfg.scan_interval == 5400 and cfg.max_file_size == 512 * 1024
    assert cfg.hostname == "test-host" and cfg.data_dir == tmp_path / "data"
    assert cfg.collector == {"address": "collector.example.net:7443"}
    store = cfg.store("nginx")
    assert store.type == "auto" and store.paths == ("/etc/nginx/**/*.pem", "/srv/app/keystore.jks")
    assert store.exclude == ("**/dhparam.pem",) and store.follow_symlinks is False
    assert dict(cfg.labels_for(store)) == {"environment": "prod", "service": "nginx", "owner": "web-team"}


def test_defaults(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[[store]]\nname = "a"\npaths = ["/etc/ssl/*.pem"]\n')
    cfg = load_config(path)
    assert cfg.hostname == default_hostname()
    assert cfg.hostname and not cfg.hostname.startswith("localhost") or socket.gethostname().startswith("localhost")
    assert cfg.scan_interval == 15 * 60 and cfg.max_file_size == 10 * 1024 * 1024
    assert cfg.data_dir.is_absolute() and cfg.data_dir.name == "certfleet-agent"
    assert cfg.stores[0].follow_symlinks is True and cfg.collector == {}


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    cfg_dir = tmp_path / "etc"
    cfg_dir.mkdir()
    path = cfg_dir / "agent.toml"
    path.write_text('[agent]\ndata_dir = "state"\n[[store]]\nname = "a"\npaths = ["certs/**/*.pem"]\n'
                    'exclude = ["old/*.pem", "*.bak"]\npassword_file = "secret/pw"\n')
    cfg = load_config(path)
    s = cfg.stores[0]
    assert cfg.data_dir == cfg_dir / "state"
    assert s.paths == (str(cfg_dir / "certs/**/*.pem"),)
    assert s.exclude == (str(cfg_dir / "old/*.pem"), "*.bak")
    assert s.password_file == str(cfg_dir / "secret/pw")


@pytest.mark.parametrize("bad", ["15 minutes", "h", "-5", "", "1x"])
def test_bad_duration_is_a_config_error_naming_the_key(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)
    path = write_config(tmp_path, "", agent=f'scan_interval = "{bad}"\n')
    with pytest.raises(ConfigError, match=r"agent\.toml:\d+: \[agent\] scan_interval"):
        load_config(path)


def test_unknown_keys_are_named_with_their_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, store_toml("web", ["/etc/*.pem"]) + 'pasword_file = "/x"\n')
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    line = path.read_text().splitlines().index('pasword_file = "/x"') + 1
    assert "store 'web'" in msg and "unknown key 'pasword_file'" in msg
    assert f"{path}:{line}:" in msg

    path = write_config(tmp_path, "", agent='scan_intervall = "5m"\n')
    with pytest.raises(ConfigError, match="unknown key 'scan_intervall' in \\[agent\\]"):
        load_config(path)
    path.write_text('[agent]\n[colector]\naddress = "x"\n')
    with pytest.raises(ConfigError, match="unknown key 'colector'"):
        load_config(path)


def test_store_errors_name_the_store(tmp_path: Path) -> None:
    cases = {
        store_toml("web", ["/a/*.pem"], type="pkcs11"): "store 'web': type must be one of",
        store_toml("web", ["/a"]) + store_toml("web", ["/b"]): "store name 'web' is used twice",
        '[[store]]\nname = "web"\n': "store 'web': 'paths' is required",
        '[[store]]\npaths = ["/a"]\n': "store #1: 'name' is required",
        store_toml("web", ["/a"], password_file="/p", password_env="P"): "use only one of password",
        store_toml("web", ["/a"], password_env="not a name"): "environment variable name",
        store_toml("web", ["/a"]) + "follow_symlinks = \"yes\"\n": "follow_symlinks must be true or false",
        store_toml("web", ["/a"]) + "labels = { team = [1] }\n": "label 'team' must be a string",
    }
    for stores, expected in cases.items():
        with pytest.raises(ConfigError, match=expected):
            load_config(write_config(tmp_path, stores))


def test_invalid_toml_reports_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[agent]\nhostname = "a"\nscan_interval = \n')
    with pytest.raises(ConfigError, match=r"agent\.toml: invalid TOML: .*line 3"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_inline_password_refused_when_config_is_world_readable(tmp_path: Path) -> None:
    path = write_config(tmp_path, store_toml("tomcat", ["/srv/*.p12"], password="hunter2-secret"), mode=0o644)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert "store 'tomcat'" in msg and "readable by every user" in msg
    assert f"chmod o-r {path}" in msg and "password_file" in msg and "password_env" in msg
    assert "hunter2" not in msg
    path.chmod(0o640)
    cfg = load_config(path)
    assert cfg.stores[0].read_password() == Secret("hunter2-secret")


def test_secrets_never_show_in_repr_or_errors(tmp_path: Path) -> None:
    path = write_config(tmp_path, store_toml("tomcat", ["/srv/*.p12"], password="hunter2-secret")
                        + store_toml("other", ["/x"], password="hunter2-other", type="pkcs11"))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "hunter2" not in str(e.value)
    path = write_config(tmp_path, store_toml("tomcat", ["/srv/*.p12"], password="hunter2-secret"))
    cfg = load_config(path)
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg)
    assert "hunter2" not in repr(cfg.stores[0]) and "hunter2" not in repr(cfg.stores[0].read_password())
    secret = cfg.stores[0].read_password()
    assert secret is not None and secret.reveal() == "hunter2-secret" and f"{secret}" == "Secret('***')"


def test_password_file_and_env_are_read_lazily(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pw = tmp_path / "pw"
    path = write_config(tmp_path, store_toml("f", ["/a"], password_file=str(pw))
                        + store_toml("e", ["/b"], password_env="CERTFLEET_TEST_PW"))
    monkeypatch.delenv("CERTFLEET_TEST_PW", raising=False)
    cfg = load_config(path)          # neither exists yet: not an error at load time
    with pytest.raises(PasswordUnavailable) as e:
        cfg.store("f").read_password()
    assert e.value.reason == "no_password" and str(pw) in str(e.value) and isinstance(e.value, AgentError)
    with pytest.raises(PasswordUnavailable, match="CERTFLEET_TEST_PW.*not set"):
        cfg.store("e").read_password()
    pw.write_text("p@$$ word\n")
    monkeypatch.setenv("CERTFLEET_TEST_PW", "from-env")
    assert cfg.store("f").read_password() == Secret("p@$$ word")     # trailing newline removed, spaces kept
    assert cfg.store("e").read_password() == Secret("from-env")
    if os.geteuid() != 0:
        pw.chmod(0)
        with pytest.raises(PasswordUnavailable) as e:
            cfg.store("f").read_password()
        assert e.value.reason == "unreadable"
