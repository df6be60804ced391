"""Run the real programs as a user would: collector, admin CLI and agent as subprocesses."""
from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time
from dataclasses import dataclass, field

from tests.conftest import ROOT, free_port

BIN = pathlib.Path(sys.executable).parent


def load_sample_maker():
    spec = importlib.util.spec_from_file_location("make_sample_stores", ROOT / "packaging/dev/make_sample_stores.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@dataclass
class Collector:
    workdir: pathlib.Path
    database_url: str = ""
    extra_config: str = ""          # more lines for the [collector] table
    extra_tables: str = ""          # more tables after it ([issuers.x], [templates.y], ...)
    port: int = field(default_factory=free_port)
    enroll_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def config(self) -> pathlib.Path:
        return self.workdir / "collector.toml"

    @property
    def admin_config(self) -> pathlib.Path:
        return self.workdir / "admin" / "certfleet.toml"

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, CERTFLEET_CONFIG=str(self.admin_config), PYTHONUNBUFFERED="1")

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            "[collector]",
            f'data_dir = "{self.workdir / "data"}"',
            f'listen = "127.0.0.1:{self.port}"',
            f'enroll_listen = "127.0.0.1:{self.enroll_port}"',
        ]
        if self.database_url:
            lines.append(f'database_url = "{self.database_url}"')
        if self.extra_config:
            lines.append(self.extra_config)
        self.config.write_text("\n".join(lines) + "\n" + self.extra_tables)
        self.log = open(self.workdir / "collector.log", "a")
        self.proc = subprocess.Popen(
            [str(BIN / "certfleet-collector"), "serve", "--config", str(self.config)],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env=self.env,
        )
        deadline = time.monotonic() + 30
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if " ready: " in line:
                return
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"collector exited: {(self.workdir / 'collector.log').read_text()[-3000:]}")
        raise RuntimeError("collector not ready in 30 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()

    def init_admin(self, name: str = "admin", role: str = "admin", out: pathlib.Path | None = None) -> Result:
        return run("certfleet-collector", "init-admin", "--config", str(self.config),
                   "--out", str(out or self.admin_config.parent), "--name", name, "--role", role, env=self.env)

    def cli(self, *args: str, env: dict | None = None) -> Result:
        return run("certfleet", *args, env=env or self.env)

    def authorize(self, pattern: str, owner: str = "fixture-team", hosts: str = "**") -> None:
        """Since issue 11 renewals issue only authorized names: ``owner`` holds ``pattern`` and hosts
        matching ``hosts`` may receive it (certfleet names grant/allow, as an admin would)."""
        for args in (("names", "grant", "--owner", owner, pattern), ("names", "allow", "--hosts", hosts,
                                                                     "--pattern", pattern)):
            r = self.cli(*args)
            assert r.code == 0, r.out + r.err

    def token(self, ttl: str = "10m") -> dict:
        r = self.cli("token", "create", "--ttl", ttl, "--format", "json")
        assert r.code == 0, r.err
        return r.json()


def run(prog: str, *args: str, env: dict | None = None, timeout: float = 120) -> Result:
    p = subprocess.run([str(BIN / prog), *args], capture_output=True, text=True, env=env, timeout=timeout)
    return Result(p.returncode, p.stdout, p.stderr)


# The test host is shared: every other test's TLS servers (and the collector) listen on it too, so an
# e2e agent does not probe the host's listening ports unless its test asks ([endpoints] in stores_toml).
NO_LISTENERS = "\n[endpoints]\nlisteners = false\n"


@dataclass
class Agent:
    workdir: pathlib.Path
    stores_toml: str
    endpoints_toml: str = NO_LISTENERS   # added unless stores_toml has its own [endpoints]; "" for the defaults

    @property
    def config(self) -> pathlib.Path:
        return self.workdir / "agent.toml"

    def write_config(self, hostname: str = "") -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        host = f'hostname = "{hostname}"\n' if hostname else ""
        self.config.write_text(
            f'[agent]\ndata_dir = "{self.workdir / "data"}"\n{host}labels = {{ environment = "test" }}\n\n' + self.stores_toml
            + ("" if "[endpoints]" in self.stores_toml else self.endpoints_toml)
        )
        self.config.chmod(0o600)

    def enroll(self, collector: Collector, token: dict, *extra: str) -> Result:
        # the token goes as operators should pass it: not on the command line (visible in `ps`)
        r = run("certfleet-agent", "enroll", "--config", str(self.config), "--collector", token["enrollment_endpoint"],
                "--ca-fingerprint", token["ca_fingerprint_sha256"], *extra,
                env=dict(os.environ, CERTFLEET_ENROLL_TOKEN=token["token"]))
        if r.code == 0:
            mode = (self.workdir / "data").stat().st_mode & 0o777
            assert mode == 0o700, f"the agent's data dir is {oct(mode)} after enrollment"
        return r

    def run_once(self, *extra: str) -> Result:
        return run("certfleet-agent", "run", "--config", str(self.config), "--once", *extra)


def collector_ca(c: Collector):  # noqa: ANN201
    """The collector CA of ``c`` as its registry holds it (wrapped with the KEK in its data_dir)."""
    from collector.config.core import load_config  # test helper: only the tests that sign with the CA load these
    from collector.pki.keywrap import load_key_wrapper
    from collector.pki.shared import load_or_create_shared
    from collector.registry import Registry

    config = load_config(c.config)
    with Registry.open(config.database_url) as registry:
        wrapper = load_key_wrapper(config.keys, config.data_dir, config.base_dir)
        return load_or_create_shared(registry.issuer_state, wrapper, config.pki_dir,
                                     dt.datetime.now(dt.timezone.utc))
