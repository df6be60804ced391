"""RenewalService against a real registry (SQLite and PostgreSQL) and real issuers:
an issuer outage is retried with backoff and then fails visibly; a refused request names the rule."""
from __future__ import annotations

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
from collector.registry.types import LocationSelector
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
