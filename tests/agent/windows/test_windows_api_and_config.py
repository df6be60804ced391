"""The boundary off Windows, the [windows] section, and how the agent picks the Windows source up."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, parse_config
from agent.windows.sslcert import SslBinding


def test_api_imports_on_linux_and_refuses_to_work() -> None:
    api_mod = importlib.import_module("agent.windows.api")
    from agent.windows.errors import WindowsUnavailable

    api = api_mod.RealWindowsApi()
    binding = SslBinding("ipport", "0.0.0.0", 443, "AB" * 20, "{4dc3e181-e14b-4a21-b022-59fc669b0914}", "MY")
    calls = [
        lambda: api.list_store("LocalMachine", "My"),
        lambda: api.list_iis_sites_xml(),
        lambda: api.show_sslcert(),
        lambda: api.import_pfx("My", b"\x30\x00", "not-a-secret", False, ""),
        lambda: api.delete("My", "AB" * 20, True),
        lambda: api.update_sslcert(binding, "CD" * 20, "My"),
    ]
    for call in calls:
        with pytest.raises(WindowsUnavailable, match=f"only be read on Windows \\(this host runs {sys.platform}\\)"):
            call()


def test_real_api_satisfies_the_protocol() -> None:
    from agent.windows.api import RealWindowsApi, WindowsApi

    wanted = {n for n in vars(WindowsApi) if not n.startswith("_")}
    assert wanted == {"list_store", "list_iis_sites_xml", "show_sslcert", "import_pfx", "delete", "update_sslcert"}
    assert all(callable(getattr(RealWindowsApi, n)) for n in wanted)


def config(tmp_path: Path, windows: str = "") -> object:
    return parse_config(f'[agent]\ndata_dir = "{tmp_path}"\n' + (f"[windows]\n{windows}\n" if windows else ""),
                        path=tmp_path / "agent.toml")


def test_windows_section_defaults(tmp_path: Path) -> None:
    s = config(tmp_path).windows
    assert s.enabled is (sys.platform == "win32")
    assert s.stores == ("My", "WebHosting") and s.iis and s.remove_replaced
    assert s.verify_address == "127.0.0.1" and s.verify_timeout == 30.0


def test_windows_section_values(tmp_path: Path) -> None:
    s = config(tmp_path, 'enabled = true\nstores = ["Remote Desktop", "my"]\niis = false\nremove_replaced = false\n'
                         'verify_address = "::1"\nverify_timeout = "1m"\nlabels = { service = "iis" }').windows
    assert s.enabled and s.stores == ("My", "WebHosting", "Remote Desktop") and not s.iis
    assert not s.remove_replaced and s.verify_address == "::1" and s.verify_timeout == 60.0
    assert dict(s.labels) == {"service": "iis"}


@pytest.mark.parametrize("body,message", [
    ("stores = \"My\"", "stores: must be a list"),
    ("stores = [\"My/../x\"]", "is not a system store name"),
    ("enabled = \"yes\"", "enabled: must be true or false"),
    ("verify_address = \"localhost\"", "verify_address: must be an IP address"),
    ("verify_timeout = \"soon\"", "verify_timeout: not a duration"),
    ("store = [\"My\"]", "unknown key 'store'"),
])
def test_windows_section_errors_name_the_line(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        config(tmp_path, body)
    assert message in str(e.value)
    assert f"{tmp_path / 'agent.toml'}:4" in str(e.value)            # [agent], data_dir, [windows], the key


def test_build_sources_adds_the_windows_source_when_enabled(tmp_path: Path) -> None:
    from agent.service import build_sources
    from agent.sources.windows_store import WindowsStoreSource

    on = [s for s in build_sources(config(tmp_path, "enabled = true")) if isinstance(s, WindowsStoreSource)]
    assert len(on) == 1 and on[0].store_types == frozenset({"windows"})
    off = [s for s in build_sources(config(tmp_path, "enabled = false")) if isinstance(s, WindowsStoreSource)]
    assert off == []
