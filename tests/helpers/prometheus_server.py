"""A real Prometheus server (Debian ``prometheus``) for the tests: its own data directory, a loopback
port, a scrape config written for the test, stopped by its PID."""
from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from tests.conftest import free_port


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


@dataclass
class ScrapeTarget:
    job: str
    address: str                        # host:port
    token_file: pathlib.Path | None = None


@dataclass
class Prometheus:
    workdir: pathlib.Path
    targets: list[ScrapeTarget]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        jobs = []
        for t in self.targets:
            job: dict[str, Any] = {"job_name": t.job, "scrape_interval": "2s", "scrape_timeout": "2s",
                                   "static_configs": [{"targets": [t.address]}]}
            if t.token_file is not None:
                job["authorization"] = {"type": "Bearer", "credentials_file": str(t.token_file)}
            jobs.append(job)
        config = self.workdir / "prometheus.yml"
        # JSON is YAML: no YAML writer needed
        config.write_text(json.dumps({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                                      "scrape_configs": jobs}, indent=1))
        self.log = open(self.workdir / "prometheus.log", "a")
        binary = prometheus_binary()
        assert binary is not None
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=self.log, stderr=self.log,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(self.workdir / 'prometheus.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError("prometheus not ready in 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()                      # by its PID: this test's server only
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` through the HTTP API (``/api/v1/query``)."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, expr: str) -> float | None:
        """The one value of ``expr`` (None when it has no series; an error when it has several)."""
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def targets_up(self) -> dict[str, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/targets", timeout=10) as r:
            body = json.load(r)
        return {t["labels"]["job"]: t["health"] for t in body["data"]["activeTargets"]}
