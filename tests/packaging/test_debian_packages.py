"""The Debian packages, as a new user would meet them: built from the repository, installed with
dpkg on this machine, services started the way their units would start them, upgraded, removed
and purged. The machine is left as it was found (everything is purged at the end).

Needs root and dpkg (CI runs as root on a throwaway Debian machine); skipped with the reason
otherwise, and when certfleet is already installed here (it would not be left as found).
systemd is not PID 1 on these machines: the units are checked with `systemd-analyze verify`,
and their ExecStart lines run as the unit says (User/Group, NoNewPrivileges,
CapabilityBoundingSet, UMask, Environment) with setpriv.

The tests in this module run in order and share one installation.
"""
from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import ROOT, free_port
from tests.debs import finish_build as _finish_build
from tests.debs import PACKAGES, package_lock, project_version, start_build
from tests.packaging.conftest import good_stores_toml

pytestmark = pytest.mark.slow

UNIT_DIR = Path("/lib/systemd/system")
ETC = Path("/etc/certfleet")
LIB = Path("/var/lib/certfleet")
UPGRADE_SUFFIX = "+upgradetest1"
# Taken by every test that installs the packages on this machine (tests/ansible too), so two never overlap.


def _why_skip() -> str | None:
    if os.geteuid() != 0:
        return "needs root: installs the packages with dpkg (CI runs as root on a throwaway machine)"
    missing = [t for t in ("dpkg", "dpkg-deb", "systemd-analyze", "setpriv", "runuser") if shutil.which(t) is None]
    if missing:
        return f"needs {', '.join(missing)}"
    if not Path("/usr/bin/python3").exists():
        return "needs the system python3 (>= 3.11) the packages run on"
    return None


if (_reason := _why_skip()) is not None:
    pytest.skip(_reason, allow_module_level=True)


def sh(*args: str, check: bool = True, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)
    if check:
        assert p.returncode == 0, f"{shlex.join(args)} -> {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def dpkg(*args: str) -> subprocess.CompletedProcess:
    """dpkg with the admin's usual options; waits while another dpkg holds the lock."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    deadline = time.monotonic() + 120
    while True:
        p = sh("dpkg", "--force-confdef", "--force-confold", *args, check=False, env=env)
        if p.returncode != 0 and "lock" in p.stderr and time.monotonic() < deadline:
            time.sleep(2)
            continue
        assert p.returncode == 0, f"dpkg {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
        return p


def status(package: str) -> str:
    p = sh("dpkg-query", "-W", "-f=${Status} ${Version}", package, check=False)
    return p.stdout.strip() if p.returncode == 0 else "not-installed"


def mode_owner(path: Path) -> tuple[str, str, str]:
    st = os.lstat(path)
    return f"{stat.S_IMODE(st.st_mode):04o}", pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(outdir: Path, version: str) -> subprocess.Popen:
    return start_build(outdir, version)


def finish_build(proc: subprocess.Popen, outdir: Path, version: str) -> dict[str, Path]:
    debs = _finish_build(proc, outdir, version)
    for name, path in debs.items():
        assert path.name == f"{name}_{version}_{sh('dpkg', '--print-architecture').stdout.strip()}.deb"
    return debs


# ------------------------------------------------------------------------------------ units


@dataclass
class Unit:
    path: Path
    service: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> "Unit":
        unit = cls(path)
        section = None
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            if section == "Service":
                key, _, value = line.partition("=")
                unit.service.setdefault(key.strip(), []).append(value.strip())
        return unit

    def one(self, key: str, default: str = "") -> str:
        return self.service.get(key, [default])[-1]

    def argv(self) -> list[str]:
        return shlex.split(self.one("ExecStart"))

    def environment(self) -> dict[str, str]:
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        for line in self.service.get("Environment", []):
            for item in shlex.split(line):
                k, _, v = item.partition("=")
                env[k] = v
        for name in self.service.get("EnvironmentFile", []):
            optional = name.startswith("-")
            p = Path(name.lstrip("-"))
            if not p.exists():
                assert optional, f"EnvironmentFile {p} is missing"
                continue
            for line in p.read_text().splitlines():
                if line.strip() and not line.lstrip().startswith("#"):
                    k, _, v = line.partition("=")
                    env[k.strip()] = v.strip()
        user = self.one("User", "root")
        env.update(HOME=pwd.getpwnam(user).pw_dir, USER=user, LOGNAME=user)
        return env

    def setpriv(self) -> list[str]:
        """setpriv options that apply the unit's user, group, no-new-privileges and capability bounding set."""
        args = ["setpriv"]
        user, group = self.one("User"), self.one("Group")
        if user:
            args += [f"--reuid={user}", f"--regid={group or user}", "--init-groups"]
        if self.one("NoNewPrivileges") == "yes":
            args.append("--no-new-privs")
        if "CapabilityBoundingSet" in self.service:
            caps = self.one("CapabilityBoundingSet").split()
            args.append("--bounding-set=" + ",".join(["-all"] + [f"+{c.lower().removeprefix('cap_')}" for c in caps]))
            args.append("--inh-caps=-all")
        return args + ["--"]

    def popen(self, argv: list[str] | None = None, **kw) -> subprocess.Popen:
        return subprocess.Popen(
            self.setpriv() + (argv or self.argv()), env=self.environment(), cwd=self.one("WorkingDirectory", "/"),
            umask=int(self.one("UMask", "0022"), 8), **kw)

    def run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        p = self.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=timeout)
        return subprocess.CompletedProcess(argv, p.returncode, out, err)


class RunningCollector:
    """certfleet-collector started as its unit would start it."""

    def __init__(self, unit: Unit, log: Path) -> None:
        self.unit = unit
        self.log_path = log
        self.log = open(log, "a")
        self.proc = unit.popen(stdout=subprocess.PIPE, stderr=self.log, text=True)
        deadline = time.monotonic() + 60
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if " ready: " in line:
                self.ready_line = line
                return
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise AssertionError(f"the collector did not start: {log.read_text()[-3000:]}")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        return self.proc.returncode


# ------------------------------------------------------------------------------------ the installation


@dataclass
class Deployment:
    work: Path
    debs: dict[str, Path]
    upgrade_build: subprocess.Popen
    upgrade_dir: Path
    upgrade_version: str
    collector: RunningCollector | None = None
    admin_dir: Path = LIB / "collector" / "pkgtest-admin"
    ports: tuple[int, int] = (0, 0)
    agent_id: str = ""

    @property
    def admin_config(self) -> Path:
        return self.admin_dir / "certfleet.toml"

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return sh("/usr/bin/certfleet", "--config", str(self.admin_config), *args)


def _machine_state() -> str | None:
    """Why this machine is not as the test needs it (no certfleet installed, no certfleet state), or None."""
    found = {p: status(p) for p in PACKAGES}
    if any("not-installed" not in s for s in found.values()):
        return f"certfleet is installed on this machine ({found}); the test would change it"
    left = [str(p) for p in (ETC, LIB) if p.exists()]
    if left or _user_exists():
        return f"this machine already has certfleet state ({', '.join(left) or 'the user certfleet'}); purge it first"
    return None


@pytest.fixture(scope="module")
def deployment(project_debs: dict[str, Path]) -> Iterator[Deployment]:
    work = Path(tempfile.mkdtemp(prefix="certfleet-deb-test-"))
    try:
        base = project_version()
        debs = dict(project_debs)   # built once per session (tests/conftest.py); building changes nothing here
        with package_lock():
            if (why := _machine_state()) is not None:
                pytest.skip(why)
            upgrade_version = base + UPGRADE_SUFFIX
            # the upgrade's packages are built while the first ones are installed and used
            dep = Deployment(work, debs, build(work / "v2", upgrade_version), work / "v2", upgrade_version)
            try:
                yield dep
            finally:
                if dep.collector is not None:
                    dep.collector.stop()
                if dep.upgrade_build.poll() is None:
                    dep.upgrade_build.kill()
                    dep.upgrade_build.wait()
                installed = [p for p in PACKAGES if "not-installed" not in status(p)]
                if installed:
                    dpkg("--purge", *installed)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _user_exists() -> bool:
    try:
        pwd.getpwnam("certfleet")
        return True
    except KeyError:
        return False


# ------------------------------------------------------------------------------------ the tests, in order


def test_packages_are_self_contained(deployment: Deployment) -> None:
    arch = sh("dpkg", "--print-architecture").stdout.strip()
    for name, deb in deployment.debs.items():
        fields = {k: sh("dpkg-deb", "-f", str(deb), k).stdout.strip() for k in ("Package", "Architecture", "Depends")}
        assert fields["Package"] == name and fields["Architecture"] == arch
        assert "python3." in fields["Depends"] and "adduser" in fields["Depends"]
        root = deployment.work / "x" / name
        root.mkdir(parents=True)
        sh("dpkg-deb", "-x", str(deb), str(root))
        sh("dpkg-deb", "-e", str(deb), str(root / "DEBIAN"))
        conf = (root / "DEBIAN/conffiles").read_text().split()
        pkg = name.removeprefix("certfleet-")
        assert conf == [f"/etc/certfleet/{pkg}.toml"]
        for script in ("postinst", "prerm", "postrm"):
            sh("sh", "-n", str(root / "DEBIAN" / script))
        # nothing refers to the repository or the build's staging directory
        leaks = sh("grep", "-rlF", "-e", str(ROOT), "-e", "certfleet-deb.", str(root), check=False)
        assert leaks.stdout == "", f"build paths left in: {leaks.stdout[:2000]}"
        venv = root / "opt/certfleet" / pkg
        site = next(venv.glob("lib/python3.*/site-packages"))
        assert (site / pkg).is_dir() and (site / "certfleet/v1").is_dir()
        other = "collector" if pkg == "agent" else "agent"
        assert not (site / other).exists(), f"{name} ships the {other} package"
        for script in venv.joinpath("bin").iterdir():
            if script.is_file() and not script.is_symlink():
                first = script.read_bytes().split(b"\n", 1)[0]
                if first.startswith(b"#!"):
                    assert first == f"#!/opt/certfleet/{pkg}/bin/python -I".encode(), (script, first)
        assert (root / "lib/systemd/system" / f"{name}.service").is_file()


def test_install_creates_user_and_private_directories(deployment: Deployment) -> None:
    dpkg("-i", *map(str, deployment.debs.values()))
    for p in PACKAGES:
        assert status(p).startswith("install ok installed"), status(p)
    user = pwd.getpwnam("certfleet")
    assert user.pw_uid < 1000 and user.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")
    assert grp.getgrgid(user.pw_gid).gr_name == "certfleet"
    expected = {
        ETC: ("0750", "root", "certfleet"),
        ETC / "agent.toml": ("0600", "root", "root"),
        ETC / "collector.toml": ("0640", "root", "certfleet"),
        ETC / "secrets": ("0750", "root", "certfleet"),
        LIB: ("0750", "root", "certfleet"),
        LIB / "agent": ("0700", "root", "root"),
        LIB / "collector": ("0700", "certfleet", "certfleet"),
    }
    assert {p: mode_owner(p) for p in expected} == expected
    links = {"/usr/bin/certfleet-agent": "/opt/certfleet/agent/bin/certfleet-agent",
             "/usr/bin/certfleet-collector": "/opt/certfleet/collector/bin/certfleet-collector",
             "/usr/bin/certfleet": "/opt/certfleet/collector/bin/certfleet"}
    assert {k: os.readlink(k) for k in links} == links
    version = project_version()
    assert sh("/usr/bin/certfleet-agent", "--version").stdout.strip() == f"certfleet-agent {version}"
    assert sh("/usr/bin/certfleet-collector", "--version").stdout.strip() == f"certfleet-collector {version}"


def test_installed_units_verify(deployment: Deployment) -> None:
    units = [str(UNIT_DIR / f"{p}.service") for p in PACKAGES]
    p = sh("systemd-analyze", "verify", *units, check=False, cwd="/")
    assert p.returncode == 0 and p.stdout.strip() == "" and p.stderr.strip() == "", p.stdout + p.stderr
    collector = Unit.read(UNIT_DIR / "certfleet-collector.service")
    assert collector.one("User") == "certfleet" and collector.one("CapabilityBoundingSet") == ""
    agent = Unit.read(UNIT_DIR / "certfleet-agent.service")
    assert set(agent.one("CapabilityBoundingSet").split()) == {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER",
                                                                "CAP_KILL"}
    for unit in (agent, collector):
        for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                           ("PrivateTmp", "yes"), ("PrivateDevices", "yes"), ("Restart", "on-failure")):
            assert unit.one(key) == value, (unit.path, key)
        assert unit.one("SystemCallFilter") != ""


_IMPORT_ALL = """
import importlib, json, pkgutil, sys
tops, skip = sys.argv[1].split(","), set(sys.argv[2].split(","))
done, failed = [], {}
for top in tops:
    package = importlib.import_module(top)
    for info in pkgutil.walk_packages(package.__path__, top + "."):
        if info.name in skip:
            continue
        try:
            importlib.import_module(info.name)
            done.append(info.name)
        except Exception as e:
            failed[info.name] = repr(e)
print(json.dumps({"done": done, "failed": failed, "file": package.__file__}))
"""

# alembic's environment script runs only inside alembic (it reads alembic.context.config at import)
_NOT_IMPORTABLE_ALONE = {"collector.registry.migrations.env"}


def test_installed_environments_import_every_module(deployment: Deployment) -> None:
    for pkg, other in (("agent", "collector"), ("collector", "agent")):
        python = f"/opt/certfleet/{pkg}/bin/python"
        p = sh(python, "-I", "-c", _IMPORT_ALL, f"{pkg},certfleet", ",".join(_NOT_IMPORTABLE_ALONE), cwd="/")
        result = json.loads(p.stdout)
        assert result["failed"] == {}, result["failed"]   # agent.windows imports anywhere; only its api calls Windows
        assert f"{pkg}.cli" in result["done"] or f"{pkg}.server" in result["done"]
        assert "certfleet.v1.agent_pb2_grpc" in result["done"]
        assert len(result["done"]) > 20
        assert sh(python, "-I", "-c", f"import {other}", check=False, cwd="/").returncode != 0
        # installed, not editable: the code is under /opt, never the repository
        assert sh(python, "-I", "-c", f"import {pkg}; print({pkg}.__file__)", cwd="/").stdout.startswith(
            f"/opt/certfleet/{pkg}/lib/")


def test_shipped_agent_config_scans_nothing(deployment: Deployment) -> None:
    p = sh("/usr/bin/certfleet-agent", "scan", "--config", str(ETC / "agent.toml"), "--format", "json")
    assert json.loads(p.stdout)["summary"]["stores"] == 0
    p = sh("/usr/bin/certfleet-agent", "doctor", "--config", str(ETC / "agent.toml"), "--format", "json",
           check=False)
    report = json.loads(p.stdout)
    assert p.returncode == 1
    checks = {c["check"]: c for c in report["checks"]}
    assert checks["config"]["status"] == "warn" and "no [[store]]" in checks["config"]["message"]
    assert checks["data_dir"]["status"] == "ok"
    assert checks["identity"]["status"] == "fail" and "not enrolled" in checks["identity"]["message"]


def test_collector_and_agent_run_as_their_units(deployment: Deployment, samples: dict) -> None:
    port, enroll_port = free_port(), free_port()
    deployment.ports = (port, enroll_port)
    conf = ETC / "collector.toml"
    before = mode_owner(conf)
    with open(conf, "w") as f:       # as an admin edits it: in place, mode and owner kept
        f.write(
            "[collector]\n"
            'data_dir = "/var/lib/certfleet/collector"\n'
            f'listen = "127.0.0.1:{port}"\n'
            f'enroll_listen = "127.0.0.1:{enroll_port}"\n'
            'server_names = ["localhost", "127.0.0.1"]\n'
        )
    assert mode_owner(conf) == before
    unit = Unit.read(UNIT_DIR / "certfleet-collector.service")
    deployment.collector = RunningCollector(unit, deployment.work / "collector.log")
    # its state is its own: CA and registry owned by certfleet
    for item in (LIB / "collector").rglob("*"):
        assert mode_owner(item)[1] == "certfleet", item

    # the first admin identity, as the service user (README.Debian)
    r = sh("runuser", "-u", "certfleet", "--", "/usr/bin/certfleet-collector", "init-admin", "--config", str(conf),
           "--out", str(deployment.admin_dir), cwd="/")
    assert "written to" in r.stdout
    token = json.loads(deployment.cli("token", "create", "--ttl", "10m", "--format", "json").stdout)

    with open(ETC / "agent.toml", "w") as f:
        f.write('[agent]\ndata_dir = "/var/lib/certfleet/agent"\nhostname = "pkgtest-host"\n\n'
                + good_stores_toml(samples))
    r = sh("/usr/bin/certfleet-agent", "enroll", "--config", str(ETC / "agent.toml"),
           "--collector", token["enrollment_endpoint"], "--token", token["token"],
           "--ca-fingerprint", token["ca_fingerprint_sha256"], cwd="/")
    deployment.agent_id = r.stdout.split("enrolled as agent ")[1].split(";")[0]
    assert mode_owner(LIB / "agent" / "identity" / "agent.key")[0] == "0600"

    agent_unit = Unit.read(UNIT_DIR / "certfleet-agent.service")
    r = agent_unit.run(agent_unit.argv() + ["--once"])
    assert r.returncode == 0 and "stored by the collector" in r.stdout, r.stderr
    # the service itself, as its unit runs it: up, reporting, and stopping cleanly on SIGTERM
    service = agent_unit.popen(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4)
        assert service.poll() is None, service.communicate()[1][-2000:]
    finally:
        service.send_signal(signal.SIGTERM)
        _, err = service.communicate(timeout=30)
    assert service.returncode == 0 and "agent stopped" in err, err[-2000:]

    agents = json.loads(deployment.cli("agents", "list", "--format", "json").stdout)
    assert "pkgtest-host" in json.dumps(agents)
    certs = deployment.cli("certs", "list", "--format", "json").stdout
    assert samples["files"]["jks"] in certs and samples["files"]["p12"] in certs

    p = sh("/usr/bin/certfleet-agent", "doctor", "--config", str(ETC / "agent.toml"), "--format", "json",
           check=False, cwd="/")
    report = json.loads(p.stdout)
    assert p.returncode == 0 and report["failed"] == 0 and report["warnings"] == 0, p.stdout


def test_upgrade_keeps_config_identity_and_state(deployment: Deployment) -> None:
    assert deployment.collector is not None, "needs the running deployment of the previous test"
    kept = [ETC / "agent.toml", ETC / "collector.toml", LIB / "agent/identity/agent.key",
            LIB / "agent/identity/agent.pem", LIB / "agent/identity/collector.json", LIB / "agent/state.json",
            LIB / "collector/kek", deployment.admin_dir / "admin.pem"]
    kept = [p for p in kept if p.exists()]
    assert len(kept) >= 7, kept
    before = {p: (digest(p), mode_owner(p)) for p in kept}
    dirs = {p: mode_owner(p) for p in (ETC, LIB, LIB / "agent", LIB / "collector")}
    registry = LIB / "collector/registry.db"
    assert registry.exists()

    deployment.collector.stop()        # what the unit's restart after the upgrade does, by hand
    deployment.collector = None
    debs = finish_build(deployment.upgrade_build, deployment.upgrade_dir, deployment.upgrade_version)
    dpkg("-i", *map(str, debs.values()))
    for p in PACKAGES:
        assert status(p) == f"install ok installed {deployment.upgrade_version}"
    assert {p: (digest(p), mode_owner(p)) for p in kept} == before
    assert {p: mode_owner(p) for p in dirs} == dirs
    assert not list(ETC.glob("*.dpkg-*")), list(ETC.glob("*"))

    deployment.collector = RunningCollector(Unit.read(UNIT_DIR / "certfleet-collector.service"),
                                            deployment.work / "collector.log")
    agent_unit = Unit.read(UNIT_DIR / "certfleet-agent.service")
    r = agent_unit.run(agent_unit.argv() + ["--once"])
    assert r.returncode == 0 and "delta report" in r.stdout, r.stdout + r.stderr   # same identity, same state
    agents = json.loads(deployment.cli("agents", "list", "--format", "json").stdout)
    assert [a["hostname"] for a in agents].count("pkgtest-host") == 1 and deployment.agent_id in json.dumps(agents)
    deployment.collector.stop()
    deployment.collector = None


def test_remove_keeps_and_purge_deletes(deployment: Deployment) -> None:
    dpkg("--remove", *PACKAGES)
    for p in PACKAGES:
        assert status(p).startswith("deinstall ok config-files"), status(p)
    assert not Path("/opt/certfleet").exists() and not Path("/usr/bin/certfleet-agent").exists()
    for p in (ETC / "agent.toml", ETC / "collector.toml", LIB / "agent/identity/agent.key",
              LIB / "collector/kek", LIB / "collector/registry.db"):
        assert p.exists(), f"{p} was removed by dpkg -r"
    assert _user_exists()

    dpkg("--purge", "certfleet-agent")           # the collector is still there: shared things stay
    assert not (LIB / "agent").exists() and not (ETC / "agent.toml").exists()
    assert (ETC / "collector.toml").exists() and (LIB / "collector").exists() and _user_exists()

    dpkg("--purge", "certfleet-collector")       # the last one: everything goes
    for p in PACKAGES:
        assert status(p) == "not-installed" or "not-installed" in status(p), status(p)
    assert not ETC.exists() and not LIB.exists()
    assert not _user_exists()
    with pytest.raises(KeyError):
        grp.getgrnam("certfleet")
