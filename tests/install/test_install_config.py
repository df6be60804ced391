"""Config additions for installs: [reload.<name>] actions, per-store reload, verify endpoints."""
from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import DEFAULT_RELOAD_TIMEOUT, DEFAULT_VERIFY_TIMEOUT, ReloadAction, VerifyEndpoint, load_config
from agent.errors import AgentError, ConfigError, ReloadNotAllowed

FULL = """\
[agent]
data_dir = "data"

[reload.nginx]
command = ["/usr/sbin/nginx", "-s", "reload"]
timeout = "20s"

[reload.tomcat]
command = ["systemctl", "reload", "tomcat10"]

[[store]]
name = "web"
paths = ["/etc/nginx/ssl/*.pem"]
reload = "nginx"
verify = [{ host = "127.0.0.1", port = 8443, sni = "www.example.test" }]
verify_timeout = "15s"

[[store]]
name = "app"
type = "jks"
paths = ["/srv/app/keystore.jks"]
password_env = "APP_KS_PASS"
reload = "tomcat"

[[store.verify]]
host = "::1"
port = 9443
sni = "app.example.test"
ca_file = "ca/internal-root.pem"

[[store.verify]]
port = 9444
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "agent.toml"
    p.write_text(text)
    p.chmod(0o600)
    return p


def test_reload_actions_and_endpoints_load(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, FULL))
    assert cfg.reload_action("nginx") == ReloadAction("nginx", ("/usr/sbin/nginx", "-s", "reload"), 20.0)
    assert cfg.reload_action("tomcat").timeout == DEFAULT_RELOAD_TIMEOUT == 30.0
    web, app = cfg.store("web"), cfg.store("app")
    assert web.reload == "nginx" and web.verify_timeout == 15.0
    assert web.verify == (VerifyEndpoint("127.0.0.1", 8443, "www.example.test"),)
    assert app.reload == "tomcat" and app.verify_timeout == DEFAULT_VERIFY_TIMEOUT
    assert app.verify == (
        VerifyEndpoint("::1", 9443, "app.example.test", str(tmp_path / "ca/internal-root.pem")),
        VerifyEndpoint("127.0.0.1", 9444, None, None),
    )
    assert str(app.verify[0]) == "[::1]:9443 (SNI app.example.test)"


def test_only_configured_actions_can_be_named(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, FULL))
    with pytest.raises(ReloadNotAllowed) as e:
        cfg.reload_action("rm-everything")
    assert isinstance(e.value, AgentError)
    assert str(e.value) == (
        f"reload action 'rm-everything' is not allowed by this agent (allowed: nginx, tomcat); "
        f"define it as a [reload.rm-everything] table in {tmp_path / 'agent.toml'}")


def test_configs_without_the_new_keys_still_load(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, '[[store]]\nname = "a"\npaths = ["/etc/ssl/*.pem"]\n'))
    assert cfg.reload_actions == {} and cfg.stores[0].reload is None and cfg.stores[0].verify == ()
    with pytest.raises(ReloadNotAllowed, match=r"allowed: none are configured"):
        cfg.reload_action("nginx")


def test_a_shell_string_is_refused(tmp_path: Path) -> None:
    text = '[reload.nginx]\ncommand = "nginx -s reload && echo done"\n'
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, text))
    assert str(e.value) == (
        f"{tmp_path / 'agent.toml'}:2: [reload.nginx]: command must be an argument list such as "
        '["/usr/sbin/nginx", "-s", "reload"], not a string: certfleet never runs commands through a shell')


@pytest.mark.parametrize("table,message", [
    ('[reload.nginx]\ntimeout = "5s"\n', "'command' is required"),
    ('[reload.nginx]\ncommand = []\n', "command must be a non-empty list of strings"),
    ('[reload.nginx]\ncommand = ["nginx", 1]\n', "command must be a non-empty list of strings"),
    ('[reload.nginx]\ncommand = ["nginx"]\ntimeout = "soon"\n', "not a duration: 'soon'"),
    ('[reload.nginx]\ncommand = ["nginx"]\ntimeout = 0\n', "timeout must be more than 0 seconds"),
    ('[reload.nginx]\ncommand = ["nginx"]\nshell = true\n', "unknown key 'shell'"),
    ('reload = "nginx"\n', "'reload' must hold tables such as [reload.nginx]"),
    ('[reload]\nnginx = ["nginx", "-s", "reload"]\n', "reload 'nginx' must be a table such as [reload.nginx]"),
])
def test_bad_reload_tables(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        load_config(_write(tmp_path, table))


@pytest.mark.parametrize("store,message", [
    ('reload = "apache"\n', "store 'web': reload action 'apache' is not defined (add a [reload.apache] table; "
                            "defined: nginx)"),
    ('reload = ""\n', "reload must name a [reload.<name>] action"),
    ('verify = [{ host = "127.0.0.1" }]\n', "verify endpoint 1: port is required and must be a number from 1 to 65535"),
    ('verify = [{ port = 70000 }]\n', "verify endpoint 1: port is required"),
    ('verify = [{ port = 443, sni = "" }]\n', "verify endpoint 1: sni must be a non-empty host name"),
    ('verify = [{ port = 443, timeout = 3 }]\n', "verify endpoint 1: unknown key 'timeout'"),
    ('verify = ["127.0.0.1:443"]\n', "verify endpoint 1 must be a table"),
    ('verify_timeout = "never"\n', "not a duration"),
])
def test_bad_store_install_keys(tmp_path: Path, store: str, message: str) -> None:
    text = ('[reload.nginx]\ncommand = ["nginx", "-s", "reload"]\n'
            '[[store]]\nname = "web"\npaths = ["/etc/ssl/*.pem"]\n' + store)
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, text))
    assert message in str(e.value)
    assert str(e.value).startswith(f"{tmp_path / 'agent.toml'}:")
