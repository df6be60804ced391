"""The Ansible roles against this machine, as a new user would run them.

ansible/site.yml with an inventory that puts localhost in both groups (local connection, the
system python3 with its apt bindings), the packages from packaging/build-deb.sh, non-default
loopback ports. systemd is not PID 1 here, so the roles use their direct mode: the units' own
ExecStart lines, as the units' users, under start-stop-daemon.

- run 1 converges (changed > 0, failed 0) and never prints the enrollment token;
- run 2 changes nothing (PLAY RECAP changed=0) and does not enroll again;
- the admin identity the role made lists exactly one agent, and the running agent service has
  reported the test certificate to the collector;
- config files, owners, modes and the service users are what the packages and units promise.

Everything is undone at the end: services stopped, packages purged, the folders the roles made
removed. The test refuses to run (skip, with the reason) on a machine that already has certfleet
installed, so it never touches a real installation.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib

import pytest

from tests.debs import PACKAGES, package_lock

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "ansible/site.yml"
ANSIBLE_PLAYBOOK = pathlib.Path(sys.executable).parent / "ansible-playbook"
SYSTEM_PYTHON = "/usr/bin/python3"
UNITS = ("certfleet-agent.service", "certfleet-collector.service")
PID_DIR = pathlib.Path("/run/certfleet-direct")
ADMIN_CONFIG = pathlib.Path("/var/lib/certfleet/collector/ansible-admin/certfleet.toml")
AGENT_DATA = pathlib.Path("/var/lib/certfleet/agent")
AGENT_HOSTNAME = "ansible-test-agent.certfleet.invalid"
DROPIN = pathlib.Path("/etc/systemd/system/certfleet-agent.service.d/stores.conf")
# made by the roles (not by the packages); removed at the end unless they were there before
ROLE_PATHS = (
    PID_DIR, pathlib.Path("/var/log/certfleet"), pathlib.Path("/usr/local/lib/certfleet-ansible"),
    pathlib.Path("/var/cache/certfleet-ansible"), DROPIN.parent,
)
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def task_status(output: str, task: str) -> str:
    """The first result line (ok/changed/skipping/included/fatal) after the TASK header that ends in `task`."""
    m = re.search(r"^TASK \[[^\]]*" + re.escape(task) + r"\] \**\n+(\w+)", output, re.M)
    assert m, f"no task {task!r} in the output"
    return m.group(1)


@pytest.fixture(scope="session")
def ansible_host_ready() -> None:
    """Skip (with the reason) before anything is built when this machine cannot run the test."""
    preconditions()


def preconditions() -> None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root: installs the .deb packages and starts their services (CI runs as root)")
    for tool in ("dpkg", "dpkg-deb", "dpkg-query", "start-stop-daemon", "runuser"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (a Debian host)")
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.skip(f"needs {ANSIBLE_PLAYBOOK} (pip install -e '.[test]' brings ansible-core)")
    if not os.path.exists(SYSTEM_PYTHON) or subprocess.run(
            [SYSTEM_PYTHON, "-c", "import apt"], capture_output=True).returncode != 0:
        pytest.skip(f"{SYSTEM_PYTHON} has no apt bindings (Debian package python3-apt; packaging/dev/setup.sh "
                    "installs it): ansible.builtin.apt needs them on the host")
    for pkg in PACKAGES:
        status = subprocess.run(["dpkg-query", "--show", "--showformat", "${db:Status-Status}", pkg],
                                capture_output=True, text=True).stdout.strip()
        if status and status != "not-installed":
            pytest.skip(f"{pkg} is already on this machine ({status}): this test installs and purges its own "
                        "packages and does not touch an existing installation")
    for path in ("/etc/certfleet", "/var/lib/certfleet"):
        if os.path.exists(path):
            pytest.skip(f"{path} exists: a certfleet installation (or its leftovers) is on this machine; "
                        "this test would purge it")


def parse_recap(output: str) -> dict[str, int]:
    m = RECAP.findall(output)
    assert len(m) == 1, f"expected one host in the PLAY RECAP, found {m}:\n{output[-3000:]}"
    _, ok, changed, unreachable, failed = m[0]
    return {"ok": int(ok), "changed": int(changed), "unreachable": int(unreachable), "failed": int(failed)}


def run_playbook(inventory: pathlib.Path, work: pathlib.Path) -> tuple[dict[str, int], str, float]:
    env = dict(
        os.environ,
        ANSIBLE_ROLES_PATH=str(ROOT / "ansible/roles"),
        ANSIBLE_HOME=str(work / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(work / "ansible-tmp"),
        ANSIBLE_REMOTE_TEMP=str(work / "ansible-tmp"),
        ANSIBLE_PIPELINING="1",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_STDOUT_CALLBACK="default",
        ANSIBLE_CONFIG=str(work / "no-ansible.cfg"),   # not a stray ansible.cfg of the machine
        PYTHONUNBUFFERED="1",
    )
    (work / "no-ansible.cfg").write_text("[defaults]\n")
    started = time.monotonic()
    proc = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(PLAYBOOK)],
        cwd=work, env=env, capture_output=True, text=True, timeout=420,
    )
    seconds = time.monotonic() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"ansible-playbook exited {proc.returncode}:\n{output[-6000:]}"
    return parse_recap(output), output, seconds


def make_certificate(folder: pathlib.Path) -> str:
    """A self-signed certificate in folder/web.pem; returns its SHA-256 fingerprint."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ansible-test.certfleet.invalid")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "web.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def admin_cli(*args: str) -> str:
    """`certfleet` with the admin identity the collector role made, as the collector's user."""
    proc = subprocess.run(
        ["runuser", "-u", "certfleet", "--", "certfleet", "--config", str(ADMIN_CONFIG), *args],
        capture_output=True, text=True, timeout=60, cwd="/",
    )
    assert proc.returncode == 0, f"certfleet {' '.join(args)} failed ({proc.returncode}): {proc.stderr}"
    return proc.stdout


def pid_of(unit: str) -> int | None:
    try:
        pid = int((PID_DIR / f"{unit}.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if os.path.exists(f"/proc/{pid}") else None


def cleanup(existed: dict[pathlib.Path, bool]) -> list[str]:
    problems = []
    for unit in UNITS:
        pidfile = PID_DIR / f"{unit}.pid"
        if pidfile.exists():
            p = subprocess.run(["start-stop-daemon", "--stop", "--pidfile", str(pidfile), "--retry", "TERM/20/KILL/5",
                                "--remove-pidfile", "--oknodo"], capture_output=True, text=True)
            if p.returncode != 0:
                problems.append(f"stopping {unit}: {p.stderr.strip()}")
    p = subprocess.run(["dpkg", "--purge", *PACKAGES], capture_output=True, text=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if p.returncode != 0:
        problems.append(f"dpkg --purge: {p.stderr.strip()}")
    for path, was_there in existed.items():
        if not was_there and path.exists():
            shutil.rmtree(path, ignore_errors=True)
    return problems


@pytest.fixture(scope="module")
def fleet(ansible_host_ready, certfleet_debs, tmp_path_factory: pytest.TempPathFactory):
    """Both playbook runs against this machine; yields what the tests look at, then undoes it all."""
    preconditions()   # again: nothing may have changed while the packages were built
    held = contextlib.ExitStack()
    held.enter_context(package_lock())
    work = tmp_path_factory.mktemp("ansible")
    os.chmod(work, 0o755)            # the agent (root) reads the store; the collector never looks here
    stores = work / "stores"
    fingerprint = make_certificate(stores)
    port, enroll_port = free_port(), free_port()
    host_vars = {
        "ansible_connection": "local",
        "ansible_python_interpreter": SYSTEM_PYTHON,
        "certfleet_collector_deb": str(certfleet_debs["collector"]),
        "certfleet_agent_deb": str(certfleet_debs["agent"]),
        "certfleet_collector_public_name": "127.0.0.1",
        "certfleet_collector_bind": "127.0.0.1",
        "certfleet_collector_port": port,
        "certfleet_collector_enroll_port": enroll_port,
        "certfleet_agent_hostname": AGENT_HOSTNAME,
        "certfleet_agent_scan_interval": "20s",
        "certfleet_agent_labels": {"environment": "ansible-test"},
        "certfleet_agent_stores": [{
            "name": "web", "type": "pem", "paths": [f"{stores}/*.pem"],
            "labels": {"service": "web", "owner": "web-team"}, "reload": "noop",
        }],
        "certfleet_agent_reload_actions": {"noop": {"command": ["/bin/true"], "timeout": "10s"}},
    }
    inventory = work / "inventory.yml"   # JSON is YAML
    inventory.write_text(json.dumps({
        "all": {"hosts": {"localhost": host_vars}, "children": {
            "certfleet_collectors": {"hosts": {"localhost": None}},
            "certfleet_agents": {"hosts": {"localhost": None}},
        }},
    }, indent=1))
    existed = {p: p.exists() for p in ROLE_PATHS}
    try:
        recap1, out1, t1 = run_playbook(inventory, work)
        identity = json.loads((AGENT_DATA / "identity/collector.json").read_text())
        key_mtime = (AGENT_DATA / "identity/agent.key").stat().st_mtime_ns
        recap2, out2, t2 = run_playbook(inventory, work)
        print(f"\nansible-playbook run 1: {t1:.0f}s {recap1}\nansible-playbook run 2: {t2:.0f}s {recap2}")
        yield {
            "runs": [(recap1, out1, t1), (recap2, out2, t2)], "identity": identity, "key_mtime": key_mtime,
            "fingerprint": fingerprint, "stores": stores, "ports": (port, enroll_port),
        }
    finally:
        problems = cleanup(existed)
        held.close()
        assert not problems, "cleanup: " + "; ".join(problems)


def test_first_run_converges_without_showing_the_token(fleet):
    recap, out, _ = fleet["runs"][0]
    assert recap["failed"] == 0 and recap["unreachable"] == 0
    assert recap["changed"] > 0
    # tokens look like cfe_...; the enrollment and token tasks are no_log
    assert "cfe_" not in out
    assert "enrolled as agent " + fleet["identity"]["agent_id"] in out


def test_second_run_changes_nothing_and_does_not_enroll_again(fleet):
    recap, out, _ = fleet["runs"][1]
    assert recap == {**recap, "changed": 0, "failed": 0, "unreachable": 0}, out[-4000:]
    assert task_status(fleet["runs"][0][1], "certfleet-agent | enroll once") == "included"
    assert task_status(out, "certfleet-agent | enroll once") == "skipping"
    assert task_status(out, "certfleet-collector | make the admin identity Ansible uses") == "skipping"
    assert json.loads((AGENT_DATA / "identity/collector.json").read_text()) == fleet["identity"]
    assert (AGENT_DATA / "identity/agent.key").stat().st_mtime_ns == fleet["key_mtime"]


def test_the_agent_is_listed_once_and_its_service_reported(fleet):
    agent_id = fleet["identity"]["agent_id"]
    deadline = time.monotonic() + 60
    while True:
        agents = json.loads(admin_cli("agents", "list", "--format", "json"))
        assert [a["agent_id"] for a in agents] == [agent_id], agents
        if agents[0]["locations"] >= 1 or time.monotonic() > deadline:
            break
        time.sleep(2)
    a = agents[0]
    assert a["hostname"] == AGENT_HOSTNAME and a["status"] == "active"
    assert a["labels"].get("environment") == "ansible-test"
    # the store's certificate (the agent may also report TLS endpoints it discovers on this host)
    assert a["locations"] >= 1, a
    assert [e for e in a["errors"] if e["path"].startswith(str(fleet["stores"]))] == [], a["errors"]
    certs = json.loads(admin_cli("certs", "list", "--host", AGENT_HOSTNAME, "--format", "json"))
    assert fleet["fingerprint"] in [c["fingerprint_sha256"] for c in certs]
    # the endpoint the agent reports to is the collector's advertised mutual-TLS listener
    assert fleet["identity"]["endpoint"] == f"127.0.0.1:{fleet['ports'][0]}"


def test_services_run_as_their_units_users_with_the_written_configs(fleet):
    collector, agent = pid_of("certfleet-collector.service"), pid_of("certfleet-agent.service")
    assert collector and agent, "both services run under start-stop-daemon with a pid file"

    def uid(pid: int) -> int:
        line = next(x for x in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("Uid:"))
        return int(line.split()[1])

    import pwd

    assert pwd.getpwuid(uid(collector)).pw_name == "certfleet"
    assert uid(agent) == 0                    # the packaged agent unit has no User=
    cmdline = pathlib.Path(f"/proc/{collector}/cmdline").read_bytes().split(b"\0")
    assert b"serve" in cmdline and b"/etc/certfleet/collector.toml" in cmdline

    conf = pathlib.Path("/etc/certfleet/collector.toml")
    st = conf.stat()
    assert (st.st_mode & 0o777, st.st_uid) == (0o640, 0) and __import__("grp").getgrgid(st.st_gid).gr_name == "certfleet"
    c = tomllib.loads(conf.read_text())["collector"]
    assert c["listen"] == f"127.0.0.1:{fleet['ports'][0]}" and c["enroll_listen"] == f"127.0.0.1:{fleet['ports'][1]}"

    agent_conf = pathlib.Path("/etc/certfleet/agent.toml")
    assert agent_conf.stat().st_mode & 0o777 == 0o600 and agent_conf.stat().st_uid == 0
    a = tomllib.loads(agent_conf.read_text())
    assert a["store"][0]["paths"] == [f"{fleet['stores']}/*.pem"]
    assert a["reload"]["noop"]["command"] == ["/bin/true"]
    assert f"ReadWritePaths=-{fleet['stores']}" in DROPIN.read_text().splitlines()

    admin_dir = ADMIN_CONFIG.parent
    assert admin_dir.stat().st_mode & 0o777 == 0o700
    assert (admin_dir / "admin.key").stat().st_mode & 0o077 == 0
