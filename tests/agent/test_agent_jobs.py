"""A job's result file: real JSON of the job's update, and results left by earlier agents read compatibly.

An agent upgraded in the middle of a job finds the protobuf bytes the earlier agent wrote into
result.json (recorded files in data/jobs/, see the README there); a resent InstallCertificate is
answered with that recorded result, not installed again.
"""
from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from agent.commands import CommandHandler, JobDir
from agent.config import load_config
from agent.inventory import LocationKey
from agent.jobs import FAILED, ROLLED_BACK, VERIFIED, InstallCertificate, JobStep, JobUpdate
from agent.keys import new_key, private_key_pem
from agent.transport.wire import job_update_from_legacy_bytes, job_update_out
from certfleet.v1 import agent_pb2

from tests.helpers.agent_stores import write_config

DATA = Path(__file__).parent / "data" / "jobs"
JOB = "0f5c2d9e-3b7a-4c1e-9d2f-6a8b1c3e5f70"


def _handler(tmp_path: Path, installs: list) -> CommandHandler:  # type: ignore[type-arg]
    cfg = load_config(write_config(tmp_path / "cfg", ""))

    def installer(job, cmd, key):  # noqa: ANN001, ANN202
        installs.append(cmd.job_id)
        return JobUpdate(job_id=cmd.job_id, state=VERIFIED, served_fingerprint="ef" * 32,
                         steps=(JobStep("verify", True, "served", 0.5),))
    return CommandHandler(cfg, installer, legacy_result=job_update_from_legacy_bytes)


def _command(job_id: str) -> InstallCertificate:
    return InstallCertificate(job_id=job_id, location=LocationKey("pem", "/etc/ssl/www.pem", "", 0),
                              certificate_der=b"0\x82", expected_old_fingerprint="cd" * 32)


def _with_key(handler: CommandHandler, job_id: str) -> JobDir:
    job = handler.job(job_id)
    job.path.mkdir(parents=True, mode=0o700)
    (job.key_path).write_bytes(private_key_pem(new_key("ec-p256")))
    return job


def test_the_result_is_json_of_the_update_and_answers_a_resent_install(tmp_path: Path) -> None:
    installs: list[str] = []
    handler = _handler(tmp_path, installs)
    job = _with_key(handler, JOB)
    first = handler.install(_command(JOB))
    assert first.state == VERIFIED and installs == [JOB]
    doc = json.loads(job.result_path.read_text())                     # real JSON, named for what it holds
    assert doc["update"]["state"] == "verified" and doc["update"]["served_fingerprint"] == "ef" * 32
    assert doc["update"]["steps"] == [{"step": "verify", "ok": True, "detail": "served", "seconds": 0.5}]
    assert stat.S_IMODE(job.result_path.stat().st_mode) == 0o600
    assert not job.key_path.exists()                                   # verified: the job's key copy is gone
    again = handler.install(_command(JOB))                             # the collector resends after a reconnect
    assert again == first and installs == [JOB]


@pytest.mark.parametrize("recorded, state, reason, steps", [
    ("result-0.1-verified.json", VERIFIED, "", [("check", True), ("reload", True)]),
    ("result-0.1-rolled-back.json", ROLLED_BACK, "still serves " + "cd" * 32, [("verify", False)]),
    ("result-enum-failed.json", FAILED, "no key was made on this host", []),
])
def test_a_result_left_by_an_earlier_agent_is_read_and_resent(tmp_path: Path, recorded: str, state: str,
                                                              reason: str, steps: list) -> None:  # type: ignore[type-arg]
    installs: list[str] = []
    handler = _handler(tmp_path, installs)
    raw = (DATA / recorded).read_bytes()
    job_id = agent_pb2.JobUpdate.FromString(raw).job_id
    job = _with_key(handler, job_id)
    shutil.copy(DATA / recorded, job.result_path)                     # the agent was upgraded mid-job
    update = handler.install(_command(job_id))
    assert installs == []                                              # answered from the record, not installed again
    assert (update.job_id, update.state) == (job_id, state) and reason in update.reason
    assert [(s.step, s.ok) for s in update.steps] == steps
    wire = job_update_out(update)                                      # what goes back to the collector
    assert wire.state == agent_pb2.JobUpdateState.Value(f"JOB_UPDATE_STATE_{state.upper()}")


def test_the_verified_0_1_result_keeps_its_figures(tmp_path: Path) -> None:
    u = job_update_from_legacy_bytes((DATA / "result-0.1-verified.json").read_bytes())
    assert (u.job_id, u.state, u.served_fingerprint, u.reload_seconds) == (JOB, VERIFIED, "ab" * 32, 0.25)
    assert u.steps[1] == JobStep("reload", True, "nginx: exit 0 in 0.250 s", 0.25)


def test_an_unreadable_result_lets_the_job_run_again(tmp_path: Path) -> None:
    installs: list[str] = []
    handler = _handler(tmp_path, installs)
    job = _with_key(handler, JOB)
    job.result_path.write_bytes(b"\xff\x00 not a message")
    assert job.result() is None
    assert handler.install(_command(JOB)).state == VERIFIED and installs == [JOB]
    assert json.loads(job.result_path.read_text())["update"]["state"] == "verified"


def test_an_install_for_a_job_without_its_key_fails_visibly_and_is_recorded(tmp_path: Path) -> None:
    """The data directory was reset (or the command came to the wrong host): no job directory at all.

    The job fails with the reason, once; the failure is recorded like any result, so a resent
    command gets the same answer instead of breaking the command stream.
    """
    installs: list[str] = []
    handler = _handler(tmp_path, installs)
    update = handler.install(_command(JOB))
    assert update.state == FAILED and "no key was made on this host" in update.reason and installs == []
    assert handler.job(JOB).result() == update
    assert handler.install(_command(JOB)) == update


def test_an_interrupted_install_is_resumed_from_its_job_directory(tmp_path: Path) -> None:
    """The agent stopped in the middle of an install: on its next connection it finishes the job at once
    from the job directory (issue 13: it used to wait up to two minutes for the collector to resend)."""
    cfg = load_config(write_config(tmp_path / "cfg", ""))

    def dies(job, cmd, key):  # noqa: ANN001, ANN202 - the agent process ends here (kill -9 mid-install)
        raise SystemExit(137)
    first = CommandHandler(cfg, dies, legacy_result=job_update_from_legacy_bytes)
    job = _with_key(first, JOB)
    cmd = InstallCertificate(job_id=JOB, location=LocationKey("jks", "/srv/app.jks", "app", 0),
                             certificate_der=b"0\x82\x01", chain_der=(b"0\x82\x02", b"0\x82\x03"),
                             expected_old_fingerprint="cd" * 32, trust_anchor_der=b"0\x82\x03")
    with pytest.raises(SystemExit):
        first.install(cmd)
    assert job.result() is None and job.pending_install() == cmd
    assert stat.S_IMODE(job.install_path.stat().st_mode) == 0o600
    installs: list[str] = []
    restarted = _handler(tmp_path, installs)
    [update] = restarted.resume_pending()
    assert update.state == VERIFIED and installs == [JOB]
    assert restarted.resume_pending() == [] and job.pending_install() is None
    assert restarted.install(cmd) == update and installs == [JOB]      # the collector's resend: answered, not redone


def test_verified_by_travels_in_the_result_and_on_the_wire(tmp_path: Path) -> None:
    update = JobUpdate(job_id=JOB, state=VERIFIED, verified_by="none")
    assert JobUpdate.from_json(update.to_json()) == update
    wire = job_update_out(update)
    assert wire.verified_by == "none"
    assert agent_pb2.JobUpdate.FromString(wire.SerializeToString()).verified_by == "none"


@pytest.mark.parametrize("state", [VERIFIED, ROLLED_BACK, FAILED])
def test_every_install_outcome_asks_for_a_report_at_once(tmp_path: Path, state: str) -> None:
    """The touched files reach the collector in the next report, without waiting for the scan interval."""
    cfg = load_config(write_config(tmp_path / "cfg", ""))
    wakes: list[int] = []
    handler = CommandHandler(cfg, lambda job, cmd, key: JobUpdate(job_id=cmd.job_id, state=state),
                             on_installed=lambda: wakes.append(1))
    _with_key(handler, JOB)
    handler.install(_command(JOB))
    assert wakes == [1]
    handler.install(_command(JOB))                                     # a resend answered from result.json
    assert wakes == [1]
