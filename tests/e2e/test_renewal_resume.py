"""Renewals that meet an agent's restart, end to end (nginx on loopback, the internal CA):

- a job queued while the agent is offline runs when it comes back, and as soon as it ends the
  registry shows the new certificate at the file (the agent's start-up scan, read before the
  install wrote the file, does not put the old one back);
- an agent killed in the middle of an install gets the install again as soon as it reconnects,
  and the job ends well before the collector's two-minute resend.
"""
from __future__ import annotations

import json
import pathlib
import signal
import time

from tests.e2e.test_renewal import Service, registry_fingerprint, wait_for
from tests.helpers.install_sites import served_fingerprint

FINAL = ("verified", "failed", "rolled_back", "stuck")


def _job(c, job_id: str) -> dict:  # noqa: ANN001
    r = c.cli("jobs", "show", job_id, "--format", "json")
    return json.loads(r.out) if r.code == 0 else {"state": ""}


def _at_file(c) -> list[str]:  # noqa: ANN001
    """Fingerprints the registry shows present at the site's cert.pem."""
    r = c.cli("certs", "list", "--host", "web-01", "--format", "json")
    assert r.code == 0, r.err
    return [x["fingerprint_sha256"] for x in r.json()
            if any(loc["path"].endswith("/cert.pem") and loc["status"] == "present" for loc in x["locations"])]


def test_a_job_queued_offline_shows_the_new_certificate_at_the_file_as_soon_as_it_ends(world) -> None:  # noqa: ANN001
    c, nginx, make_agent, cert = world
    agent, svc = make_agent()
    old = wait_for(lambda: registry_fingerprint(c), what="the first report")
    svc.stop()                                            # offline: the job waits in the registry
    r = c.cli("renew", old[:12])
    assert r.code == 0, r.err
    job_id = r.out.split()[1]
    # as deployed: the next scan is far away, so the start-up scan's report is the only one
    agent.config.write_text(agent.config.read_text().replace('scan_interval = "2s"', 'scan_interval = "10m"'))
    back = Service(agent)                                 # start-up scan and the queued install race
    try:
        job = wait_for(lambda: (lambda j: j if j["state"] in FINAL else None)(_job(c, job_id)), timeout=60,
                       what="the job to end")
        assert job["state"] == "verified", job
        assert _at_file(c) == [job["new_fingerprint"]]    # at once, not at the next scan
        time.sleep(3)                                     # the start-up scan's report has landed by now
        assert _at_file(c) == [job["new_fingerprint"]]
        assert served_fingerprint(nginx.port) == job["new_fingerprint"]
    finally:
        back.stop()


def test_an_agent_killed_mid_install_gets_the_job_again_at_once(world, tmp_path: pathlib.Path) -> None:  # noqa: ANN001
    c, nginx, make_agent, cert = world
    marker = tmp_path / "reloading"
    slow = ["/bin/sh", "-c", f'touch "{marker}"; sleep 4; exec "$@"', "reload", *nginx.reload_command]
    agent, svc = make_agent(reload_command=slow)
    old = wait_for(lambda: registry_fingerprint(c), what="the first report")
    r = c.cli("renew", old[:12])
    assert r.code == 0, r.err
    job_id = r.out.split()[1]
    wait_for(marker.exists, timeout=60, what="the agent to reach the reload")
    svc.proc.send_signal(signal.SIGKILL)                  # killed mid-install
    svc.proc.wait(10)
    assert _job(c, job_id)["state"] == "installing"
    started = time.monotonic()
    back = Service(agent)
    try:
        job = wait_for(lambda: (lambda j: j if j["state"] in FINAL else None)(_job(c, job_id)), timeout=90,
                       what="the job to end after the agent came back")
        took = time.monotonic() - started
        assert job["state"] == "verified", job
        assert took < 60, f"the job ended {took:.0f} s after the agent came back (the resend waits 120 s)"
        assert served_fingerprint(nginx.port) == job["new_fingerprint"]
    finally:
        back.stop()


from tests.e2e.test_renewal import world  # noqa: E402,F401 - the fixture (nginx, collector, agent maker)
