"""The admin CLI's config file (collector/config/client.py): what init-admin writes is what the CLI
reads; every way it can be wrong is named with the file."""
from __future__ import annotations

import pathlib

import pytest

from collector.config.client import ENV, ClientConfigError, load_client_config, write_client_config


def test_what_init_admin_writes_the_cli_reads(tmp_path: pathlib.Path) -> None:
    path = write_client_config(tmp_path, "collector.example:7443", server_name="collector.example")
    assert path == tmp_path / "certfleet.toml"
    assert path.read_text().startswith(f"# certfleet admin client config; use with: certfleet --config {path}\n")
    cfg = load_client_config(str(path))
    assert (cfg.collector, cfg.server_name) == ("collector.example:7443", "collector.example")
    base = tmp_path.resolve()
    assert (cfg.ca, cfg.certificate, cfg.key) == (base / "ca.pem", base / "admin.pem", base / "admin.key")
    assert "server_name" not in write_client_config(tmp_path, "c:1").read_text()
    assert load_client_config(str(path)).server_name == ""


def test_the_environment_names_it_and_absolute_paths_stay(tmp_path: pathlib.Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[client]\ncollector = "h:1"\nca = "/etc/certfleet/ca.pem"\ncertificate = "sub/a.pem"\nkey = "k"\n')
    monkeypatch.setenv(ENV, str(path))
    cfg = load_client_config(None)
    assert cfg.ca == pathlib.Path("/etc/certfleet/ca.pem") and cfg.certificate == tmp_path.resolve() / "sub/a.pem"


@pytest.mark.parametrize("content,message", [
    (None, "{path}: no such client config"),
    ("[client\n", "{path}: not valid TOML: "),
    ("collector = 'x'\n", "{path}: needs a [client] table"),
    ("[client]\ncollector = 'h:1'\nca = ''\n", "{path}: [client] is missing ca, certificate, key"),
])
def test_a_broken_config_is_named(tmp_path: pathlib.Path, content: str | None, message: str) -> None:
    path = tmp_path / "certfleet.toml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ClientConfigError) as e:
        load_client_config(str(path))
    assert str(e.value).startswith(message.format(path=path))


def test_no_config_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(ClientConfigError, match=r"^no client config: pass --config PATH or set CERTFLEET_CONFIG"):
        load_client_config(None)
