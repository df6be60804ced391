"""RenewalService against a real registry (SQLite and PostgreSQL) and real issuers:
an issuer outage is retried with backoff and then fails visibly; a refused request names the rule."""
from __future__ import annotations

import dataclasses
import datetime as dt
import pathlib

import pytest

from agent.keys import make_csr, new_key
from collector.api import convert
from collector.domain.commands import InstallCertificate
from collector.domain.jobstates import AgentJobUpdate
from collector import errors
from collector.issuers.acme import AcmeIssuer
from collector.issuers.solvers import StandaloneHttp01Solver
from collector.issuers.internal_ca import InternalCA
from collector.registry.types import CertFilter, LocationSelector
from collector.services.renewal import MAX_ATTEMPTS, RenewalService
from collector.config.templates import load_templates
from tests.conftest import free_port
from tests.helpers.authority import authorize
from tests.helpers.registry_certs import header, leaf, location, root_ca, store_report

T0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def setup(registry, make_agent, tmp_path: pathlib.Path):  # noqa: ANN001, ANN201
    make_agent("agent-1", "web1.example.com", now=T0)
    root = root_ca()
    cert = leaf("www.example.test", root)
    store_report(registry, "agent-1", header("r1", full=True, sequence=1, hostname="web1.example.com"),
                 [location(cert, "/etc/nginx/cert.pem")], now=T0)
    authorize(registry, "**.example.test")
    dead_port = free_port()   # nothing listens here: the ACME server is "down"
    issuers = {
        "internal": InternalCA("internal", tmp_path / "internal"),
        "down": AcmeIssuer("down", f"https://127.0.0.1:{dead_port}/dir", tmp_path / "acme",
                           StandaloneHttp01Solver("127.0.0.1", free_port()), network_timeout=dt.timedelta(seconds=2)),
    }
    templates = load_templates({
        "web": {"issuer": "internal", "allowed_san_patterns": ["*.example.test"]},
        "public": {"issuer": "down", "allowed_san_patterns": ["*.example.test"]},
        "narrow": {"issuer": "internal", "allowed_san_patterns": ["*.other.test"]},
    })
    clock = {"now": T0}
    svc = RenewalService(registry, issuers, templates, "web", lambda: clock["now"])
    return svc, cert, clock


def _csr() -> bytes:
    return make_csr(new_key("ec-p256"), "www.example.test", ["www.example.test"])


def _to_csr_received(svc: RenewalService, job_id: str) -> None:
    svc.commands_for("agent-1")                                   # PrepareRenewal sent: key_pending
    svc.on_update("agent-1", AgentJobUpdate(job_id=job_id, state="csr_ready", csr_der=_csr()))


def test_issuer_outage_is_retried_with_backoff_then_fails(setup) -> None:  # noqa: ANN001
    svc, cert, clock = setup
    (job,) = svc.request(cert.fingerprint[:10], LocationSelector(), "public", "admin:test", "test")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        _to_csr_received(svc, job.job_id)
        j = svc.registry.jobs.get(job.job_id)
        if attempt < MAX_ATTEMPTS:
            assert j.state == "requested" and j.attempts == attempt
            assert "retrying" in j.events[-1].reason and j.next_attempt_at > clock["now"]
            assert svc.commands_for("agent-1") == []              # backing off: nothing sent yet
            clock["now"] = j.next_attempt_at + dt.timedelta(seconds=1)
        else:
            assert j.state == "failed" and "gave up" in j.events[-1].reason


def test_internal_ca_issues_and_install_command_follows(setup) -> None:  # noqa: ANN001
    svc, cert, clock = setup
    (job,) = svc.request(cert.fingerprint, LocationSelector(), "", "admin:test", "test")
    assert svc.request(cert.fingerprint, LocationSelector(), "", "admin:test", "again")[0].job_id == job.job_id
    _to_csr_received(svc, job.job_id)
    assert svc.registry.jobs.get(job.job_id).state == "issued"
    (command,) = svc.commands_for("agent-1")
    assert isinstance(command, InstallCertificate)
    cmd = convert.command_out(command)                              # what the agent reads
    assert cmd.WhichOneof("body") == "install_certificate"
    assert cmd.install_certificate.expected_old_fingerprint == cert.fingerprint
    assert cmd.install_certificate.trust_anchor_der                 # the internal root, for the agent's check
    svc.on_update("agent-1", AgentJobUpdate(job_id=job.job_id, state="verified",
                                                 served_fingerprint=svc.registry.jobs.get(job.job_id).new_fingerprint))
    assert svc.registry.jobs.get(job.job_id).state == "verified"


def test_request_outside_template_names_the_rule(setup) -> None:  # noqa: ANN001
    svc, cert, clock = setup
    with pytest.raises(errors.CollectorError) as e:
        svc.request(cert.fingerprint, LocationSelector(), "narrow", "admin:test", "test")
    assert "*.other.test" in str(e.value) and "www.example.test" in str(e.value)
    assert svc.registry.jobs.list() == []


def test_update_from_another_agent_refused(setup, make_agent) -> None:  # noqa: ANN001
    svc, cert, clock = setup
    make_agent("agent-2", "web2.example.com", now=T0)
    (job,) = svc.request(cert.fingerprint, LocationSelector(), "", "admin:test", "test")
    with pytest.raises(errors.PermissionDenied):
        svc.on_update("agent-2", AgentJobUpdate(job_id=job.job_id, state="csr_ready", csr_der=_csr()))


def test_revocation_goes_to_the_issuer_that_knows_it_issued_the_certificate(setup) -> None:  # noqa: ANN001
    svc, cert, clock = setup
    (job,) = svc.request(cert.fingerprint, LocationSelector(), "", "admin:test", "test")
    _to_csr_received(svc, job.job_id)
    new = svc.registry.jobs.get(job.job_id)
    # the new certificate reaches the registry as the agent reports it
    store_report(svc.registry, "agent-1", header("r2", full=True, sequence=2, hostname="web1.example.com"),
                 [location(cert, "/etc/nginx/cert.pem"), location(new.certificate_der, "/etc/nginx/new.pem")], now=T0)
    # the internal CA knows it issued it: revoked there, the unreachable ACME server is not asked
    assert svc.revoke(new.new_fingerprint, "superseded", "admin:test") == (new.new_fingerprint, "internal")
    # a certificate no configured CA issued: the internal CA says so, the ACME server is tried and fails
    with pytest.raises(errors.InvalidInput, match="no configured issuer accepted") as e:
        svc.revoke(cert.fingerprint, "superseded", "admin:test")
    assert "internal: did not issue this certificate" in str(e.value) and "down: " in str(e.value)


def _at_file(svc: RenewalService, path: str = "/etc/nginx/cert.pem") -> list[tuple[str, str]]:
    """(fingerprint, status) of every certificate the registry shows at ``path``."""
    return sorted((c.fingerprint, loc.status) for c in svc.registry.list_certificates(CertFilter(include_removed=True))
                  for loc in c.locations if loc.path == path)


def _verify(svc: RenewalService, job_id: str, clock: dict) -> str:
    """Carry a job through CSR, issue and install to ``verified``; returns the new fingerprint."""
    _to_csr_received(svc, job_id)
    (command,) = svc.commands_for("agent-1")
    assert isinstance(command, InstallCertificate)
    svc.on_update("agent-1", AgentJobUpdate(job_id=job_id, state="verified", reason="served"))
    job = svc.registry.jobs.get(job_id)
    assert job.state == "verified" and job.new_fingerprint
    return job.new_fingerprint


def test_a_verified_install_is_at_the_file_at_once_and_an_older_scan_does_not_undo_it(setup) -> None:  # noqa: ANN001
    """The agent's start-up scan read the file before a queued install replaced it; its report
    arrives after the job ended. The registry keeps the new certificate at the file."""
    svc, cert, clock = setup
    (job,) = svc.request(cert.fingerprint, LocationSelector(), "", "admin:test", "test")
    startup_scan = T0 + dt.timedelta(seconds=5)           # the agent's scan starts, reads the old file
    clock["now"] = T0 + dt.timedelta(seconds=10)
    new_fp = _verify(svc, job.job_id, clock)              # ... the install lands and is verified
    assert (new_fp, "present") in _at_file(svc)           # shown at once, not at the next scan interval
    assert (cert.fingerprint, "present") not in _at_file(svc)
    # the start-up scan's report (full), with the old certificate at the file, arrives now
    late = header("r2", full=True, sequence=2, hostname="web1.example.com")
    late = dataclasses.replace(late, scanned_at=startup_scan)
    store_report(svc.registry, "agent-1", late, [location(cert, "/etc/nginx/cert.pem")],
                 now=T0 + dt.timedelta(seconds=12))
    assert (new_fp, "present") in _at_file(svc) and (cert.fingerprint, "present") not in _at_file(svc)
    # a scan made after the install says what is in the file, whatever it is
    newer = dataclasses.replace(header("r3", full=True, sequence=3, hostname="web1.example.com"),
                                scanned_at=T0 + dt.timedelta(seconds=20))
    store_report(svc.registry, "agent-1", newer, [location(cert, "/etc/nginx/cert.pem")],
                 now=T0 + dt.timedelta(seconds=21))
    assert (cert.fingerprint, "present") in _at_file(svc)


def test_an_install_with_nothing_to_verify_says_so_in_the_job_and_the_cli(setup) -> None:  # noqa: ANN001
    """A store with no verify entry (a JKS for a JVM nobody probes): the agent installs and reports
    verified_by "none"; the job says it was NOT verified, and `jobs show` / `renew --wait` say so."""
    from certfleet.v1 import agent_pb2                          # the wire, as an agent sends it
    from collector.cli.jobs import follow_jobs, job_detail      # the admin's view of the same job
    svc, cert, _ = setup
    (job,) = svc.request(cert.fingerprint, LocationSelector(), "", "admin:test", "test")
    _to_csr_received(svc, job.job_id)
    svc.commands_for("agent-1")
    msg = agent_pb2.JobUpdate(job_id=job.job_id, state=agent_pb2.JOB_UPDATE_STATE_VERIFIED,
                              reason="installed", verified_by="none")
    svc.on_update("agent-1", convert.job_update_in(msg))
    view = svc.registry.jobs.get(job.job_id)
    assert view.state == "verified" and "NOT verified" in view.events[-1].reason
    info = convert.job_out(view)
    assert "NOT verified: the store has no verify entry" in job_detail(info)

    class Stub:
        def GetJob(self, req, timeout):  # noqa: ANN001, ANN201, N802
            return info
    import io
    out = io.StringIO()
    follow_jobs(Stub(), [job.job_id], timeout=5, out=out)       # type: ignore[arg-type]
    assert "installed but NOT verified" in out.getvalue()


def test_an_install_probed_by_endpoints_stays_plainly_verified(setup) -> None:  # noqa: ANN001
    from certfleet.v1 import agent_pb2                          # the wire, as an agent sends it
    from collector.cli.jobs import job_detail                   # the admin's view of the same job
    svc, cert, _ = setup
    (job,) = svc.request(cert.fingerprint, LocationSelector(), "", "admin:test", "test")
    _to_csr_received(svc, job.job_id)
    svc.commands_for("agent-1")
    msg = agent_pb2.JobUpdate(job_id=job.job_id, state=agent_pb2.JOB_UPDATE_STATE_VERIFIED,
                              reason="served", verified_by="endpoints")
    svc.on_update("agent-1", convert.job_update_in(msg))
    view = svc.registry.jobs.get(job.job_id)
    assert view.state == "verified" and view.events[-1].reason == "served"
    assert "NOT verified" not in job_detail(convert.job_out(view))
