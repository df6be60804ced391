"""The ACME issuer against a pebble that rejects nonces (``PEBBLE_WFE_NONCEREJECT``): a
``badNonce`` is sent again with the fresh nonce the rejection carries, so an issuance goes
through a server that rejects a third of them; a server that rejects every nonce is a
retryable outage (IssuerUnavailable: the job is retried with its backoff), not a refusal that
fails the job at once."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from collector.domain.templates import SubjectNames
from collector.errors import IssuerUnavailable
from collector.issuers.acme import AcmeIssuer
from collector.issuers.solvers import StandaloneHttp01Solver
from tests.helpers.collector_issuers import (
    CHALLTESTSRV, PEBBLE, Pebble, make_csr, make_template, new_key, start_pebble, utcnow, verify_chain,
)
from tests.issuers.conftest import need


def _pebble(tmp_path: Path, percent: int) -> Iterator[tuple[Pebble, StandaloneHttp01Solver]]:
    need(PEBBLE, CHALLTESTSRV)
    pb = start_pebble(tmp_path / f"pebble-{percent}", nonce_reject_percent=percent)
    solver = StandaloneHttp01Solver("127.0.0.1", pb.http01_port)
    try:
        yield pb, solver
    finally:
        solver.close()
        pb.stop()


@pytest.fixture
def rejecting_a_third(tmp_path: Path) -> Iterator[tuple[Pebble, StandaloneHttp01Solver]]:
    yield from _pebble(tmp_path, 33)


@pytest.fixture
def rejecting_all(tmp_path: Path) -> Iterator[tuple[Pebble, StandaloneHttp01Solver]]:
    yield from _pebble(tmp_path, 100)


def _issue(pb: Pebble, solver: StandaloneHttp01Solver, state: Path, name: str):  # noqa: ANN202
    issuer = AcmeIssuer("pebble", pb.directory_url, state, solver, ca_bundle=pb.ca_bundle)
    names = SubjectNames(name, [name], [])
    csr = make_csr(new_key(), [name], [], name)
    return issuer.issue(csr, make_template(issuer="pebble"), names, utcnow())


def test_bad_nonces_are_sent_again_and_the_issuance_goes_through(rejecting_a_third, tmp_path: Path) -> None:
    pb, solver = rejecting_a_third
    for i in range(3):                 # several orders: dozens of POSTs, about a third rejected
        issued = _issue(pb, solver, tmp_path / "state", f"nonce{i}.example.test")
        verify_chain(issued, pb.root_der(), f"nonce{i}.example.test", utcnow())


def test_a_server_rejecting_every_nonce_is_unavailable_not_a_refusal(rejecting_all, tmp_path: Path) -> None:
    pb, solver = rejecting_all
    with pytest.raises(IssuerUnavailable, match="badNonce"):
        _issue(pb, solver, tmp_path / "state", "never.example.test")
