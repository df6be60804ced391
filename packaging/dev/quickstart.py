#!/usr/bin/env python3
"""certfleet quickstart: one collector, one agent, real stores, one report.

1. makes sample stores with openssl and keytool (PEM, encrypted key, DER,
   PKCS#12, JKS, JCEKS, and some broken files),
2. starts a collector on SQLite on loopback ports,
3. writes an admin identity, creates an enrollment token, enrolls an agent,
4. the agent scans the stores and reports once,
5. prints the registry's certificate report and the agent's scan errors.

Everything lives in .quickstart/ (made anew each run). Run it through
packaging/dev/quickstart.sh, which sets up the virtualenv first.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORK = ROOT / ".quickstart"
BIN = pathlib.Path(sys.executable).parent


def say(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args: str, env: dict | None = None, capture: bool = False) -> str:
    print("$ " + " ".join(a if " " not in a else repr(a) for a in args), flush=True)
    proc = subprocess.run(list(args), env=env, text=True, capture_output=capture)
    if proc.returncode != 0:
        if capture:
            sys.stderr.write(proc.stdout + proc.stderr)
        sys.exit(f"quickstart: `{args[0]}` failed with exit code {proc.returncode}")
    return proc.stdout if capture else ""


def load_sample_maker():
    spec = importlib.util.spec_from_file_location("make_sample_stores", ROOT / "packaging/dev/make_sample_stores.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def wait_ready(proc: subprocess.Popen, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                sys.exit(f"quickstart: the collector exited with code {proc.returncode}")
            continue
        sys.stdout.write("   collector: " + line)
        if " ready: " in line:
            return line
    sys.exit("quickstart: the collector did not become ready in time")


def main() -> int:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(mode=0o700)

    say("making sample stores with openssl and keytool")
    stores = WORK / "stores"
    sample = load_sample_maker().make_sample_stores(stores)
    print(f"   {len(list(p for p in stores.rglob('*') if p.is_file()))} files in {stores}")

    say("starting a collector on SQLite (loopback only)")
    port, enroll_port = free_port(), free_port()
    collector_toml = WORK / "collector.toml"
    collector_toml.write_text(
        "[collector]\n"
        f'data_dir = "{WORK / "collector"}"\n'
        f'listen = "127.0.0.1:{port}"\n'
        f'enroll_listen = "127.0.0.1:{enroll_port}"\n'
    )
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log = open(WORK / "collector.log", "w")
    collector = subprocess.Popen(
        [str(BIN / "certfleet-collector"), "serve", "--config", str(collector_toml)],
        stdout=subprocess.PIPE, stderr=log, text=True, env=env,
    )
    try:
        wait_ready(collector)

        say("admin identity for the certfleet CLI")
        run(str(BIN / "certfleet-collector"), "init-admin", "--config", str(collector_toml), "--out", str(WORK / "admin"))
        env["CERTFLEET_CONFIG"] = str(WORK / "admin" / "certfleet.toml")

        say("a single-use enrollment token")
        tok = json.loads(run(str(BIN / "certfleet"), "token", "create", "--ttl", "10m", "--format", "json", env=env, capture=True))
        print(f"   token {tok['token'][:10]}… expires {tok['expires_at']}, CA {tok['ca_fingerprint_sha256'][:16]}…")

        say("enrolling the agent (key made here, CA pinned by fingerprint)")
        agent_toml = WORK / "agent.toml"
        agent_toml.write_text(
            "[agent]\n"
            f'data_dir = "{WORK / "agent"}"\n'
            'labels = { environment = "quickstart" }\n\n'
            + sample["config_toml"]
            # TLS endpoints: the agent probes what it is told here (the collector's own listener);
            # on a server, leave listeners on to probe every port the host listens on
            + f'\n[endpoints]\nlisteners = false\ntargets = ["127.0.0.1:{port}"]\n'
        )
        agent_toml.chmod(0o600)
        run(str(BIN / "certfleet-agent"), "enroll", "--config", str(agent_toml), "--collector",
            tok["enrollment_endpoint"], "--ca-fingerprint", tok["ca_fingerprint_sha256"],
            env=dict(env, CERTFLEET_ENROLL_TOKEN=tok["token"]))   # not on the command line: `ps` shows that

        say("one scan and report")
        run(str(BIN / "certfleet-agent"), "run", "--config", str(agent_toml), "--once", env=env)

        say("the registry: every certificate on this host")
        run(str(BIN / "certfleet"), "certs", "list", env=env)

        say("certificates expiring within 30 days")
        run(str(BIN / "certfleet"), "certs", "list", "--expiring-within", "30d", env=env)

        say("agents, with the items their scan could not read")
        run(str(BIN / "certfleet"), "agents", "list", env=env)
    finally:
        collector.terminate()
        try:
            collector.wait(10)
        except subprocess.TimeoutExpired:
            collector.kill()
        log.close()

    say("done")
    print(f"""   Everything is in {WORK}. To look further, start the collector again:
     .venv/bin/certfleet-collector serve --config {collector_toml} &
     export CERTFLEET_CONFIG={WORK / 'admin' / 'certfleet.toml'}
     .venv/bin/certfleet certs list --format json
     .venv/bin/certfleet certs show <fingerprint prefix>
     .venv/bin/certfleet-agent scan --config {agent_toml}""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
