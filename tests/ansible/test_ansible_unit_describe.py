"""The unit reader the Ansible roles use in direct mode (no systemd as PID 1).

It reads the real unit files from packaging/systemd/ (and drop-ins made here) the way systemd
finds them, and must hand back the argv, user, environment and directories the service needs.
No root needed: the unit directories are pointed at a temporary tree.
"""
from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
HELPER = ROOT / "ansible/roles/certfleet_common/files/certfleet-unit-describe.py"
UNITS = ROOT / "packaging/systemd"


def load_helper():
    spec = importlib.util.spec_from_file_location("certfleet_unit_describe", HELPER)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def units(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch):
    """(module, etc_dir, lib_dir): the helper reading units from tmp_path only."""
    mod = load_helper()
    etc, lib = tmp_path / "etc/systemd/system", tmp_path / "lib/systemd/system"
    etc.mkdir(parents=True)
    lib.mkdir(parents=True)
    monkeypatch.setattr(mod, "UNIT_DIRS", (str(etc), str(lib)))
    return mod, etc, lib


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_packaged_collector_unit(units):
    mod, etc, lib = units
    src = UNITS / "certfleet-collector.service"
    if not src.exists():
        pytest.skip("packaging/systemd/certfleet-collector.service is not there yet")
    write(lib / src.name, src.read_text())
    d = mod.describe("certfleet-collector")
    assert d["unit"] == "certfleet-collector.service"
    assert d["argv"][0].endswith("/certfleet-collector")
    assert d["argv"][1:] == ["serve", "--config", "/etc/certfleet/collector.toml"]
    assert (d["user"], d["group"]) == ("certfleet", "certfleet")
    assert {"path": "/var/lib/certfleet/collector", "mode": "0700", "owner": "certfleet", "group": "certfleet"} \
        in d["directories"]
    assert d["umask"] == "0077"
    # what start-stop-daemon cannot do is named, not silently dropped
    assert "ProtectSystem" in d["ignored"] and "NoNewPrivileges" in d["ignored"]


def test_packaged_agent_unit_runs_as_root_and_tolerates_a_missing_env_file(units):
    mod, etc, lib = units
    src = UNITS / "certfleet-agent.service"
    if not src.exists():
        pytest.skip("packaging/systemd/certfleet-agent.service is not there yet")
    write(lib / src.name, src.read_text())
    d = mod.describe("certfleet-agent.service")
    assert d["user"] == "root" and d["group"] == "root"
    assert d["argv"][1:] == ["run", "--config", "/etc/certfleet/agent.toml"]
    assert d["environment"] == {}      # EnvironmentFile=-/etc/certfleet/agent.env is optional


def test_dropin_overrides_exec_start_and_environment(units):
    mod, etc, lib = units
    write(lib / "x.service", """
[Unit]
Description=x
[Service]
Environment="GREETING=hello world" MODE=a
EnvironmentFile=-/nonexistent/env
ExecStart=/usr/bin/x --old
User=nobody
Group=nogroup
RuntimeDirectory=x x/sub
RuntimeDirectoryMode=0750
""")
    envfile = write(etc.parent / "x.env", "# comment\nMODE='from file'\nEXTRA=1\n")
    write(etc / "x.service.d/10-override.conf", f"""
[Service]
EnvironmentFile={envfile}
ExecStart=
ExecStart=/usr/bin/x --name ${{GREETING}} $GREETING %n \\
  --mode=${{MODE}}
""")
    d = mod.describe("x")
    assert d["dropins"] == [str(etc / "x.service.d/10-override.conf")]
    # ${VAR} stays one word; $VAR alone splits on white space; %n is the unit name
    assert d["argv"] == ["/usr/bin/x", "--name", "hello world", "hello", "world", "x.service", "--mode=from file"]
    assert d["environment"] == {"GREETING": "hello world", "MODE": "from file", "EXTRA": "1"}
    assert [x["path"] for x in d["directories"]] == ["/run/x", "/run/x/sub"]
    assert all(x["mode"] == "0750" and x["owner"] == "nobody" for x in d["directories"])


@pytest.mark.parametrize("service, message", [
    ("[Service]\nType=forking\nExecStart=/usr/bin/x\n", "Type=forking"),
    ("[Service]\nExecStart=x --relative\n", "absolute path"),
    ("[Service]\nExecStart=/usr/bin/x %Z\n", "specifier %Z"),
    ("[Service]\nUser=nobody\n", "exactly one ExecStart"),
    ("[Service]\nExecStart=@/usr/bin/x y\n", "'@'"),
])
def test_what_direct_mode_cannot_do_is_refused_with_the_reason(units, service, message):
    mod, etc, lib = units
    write(lib / "bad.service", service)
    with pytest.raises(mod.UnitError, match=message.replace("(", r"\(")):
        mod.describe("bad.service")


def test_missing_and_masked_units_from_the_command_line(units, tmp_path):
    mod, etc, lib = units
    with pytest.raises(mod.UnitError, match="no unit file nothing.service"):
        mod.describe("nothing")
    write(lib / "m.service", "[Service]\nExecStart=/usr/bin/m\n")
    (etc / "m.service").symlink_to("/dev/null")
    with pytest.raises(mod.UnitError, match="masked"):
        mod.describe("m.service")
    # as the role runs it: exit 2 and one line on stderr for an unknown unit, JSON for a real one
    proc = subprocess.run([sys.executable, str(HELPER), "certfleet-no-such-unit-here"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("certfleet-unit-describe: no unit file certfleet-no-such-unit-here.service")
    proc = subprocess.run([sys.executable, str(HELPER)], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_plus_prefix_runs_as_root_and_colon_skips_expansion(units):
    mod, etc, lib = units
    write(lib / "p.service", "[Service]\nUser=nobody\nEnvironment=A=1\nExecStart=+:/usr/bin/p $A\n")
    d = mod.describe("p")
    assert d["user"] == "root" and d["argv"] == ["/usr/bin/p", "$A"]
    json.dumps(d)   # what the role reads is JSON
