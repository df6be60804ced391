"""Fixtures for the issuer tests.

The contract suite (test_issuers_contract.py) runs against every issuer through
the parametrized ``case`` fixture:

- ``internal-generated``: an internal CA that makes its root and intermediate;
- ``internal-imported``: an internal CA from root/intermediate files made with openssl;
- ``acme-pebble``: the ACME issuer against Debian's real ``pebble``, started here on
  127.0.0.1 with free ports. ``pebble-challtestsrv`` (same Debian package) is its DNS
  server and answers every A query with 127.0.0.1, so pebble's http-01 validation
  reaches the test's standalone responder on pebble's ``httpPort``.

Only a missing tool skips (with the reason); packaging/dev/setup.sh installs them.
"""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Callable, Iterator

import pytest
from cryptography import x509

from collector.issuers.acme import AcmeIssuer
from collector.issuers.base import Issued
from collector.issuers.internal_ca import InternalCA
from collector.issuers.solvers import StandaloneHttp01Solver
from tests.helpers.collector_issuers import (
    CHALLTESTSRV, NAMES, PEBBLE, IssuerCase, Pebble, openssl_ca, start_pebble, utcnow,
)


@pytest.fixture
def now() -> dt.datetime:
    """The real time: pebble and path validation work on the wall clock."""
    return utcnow()


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian packages pebble/openssl; packaging/dev/setup.sh installs them)")


@pytest.fixture(scope="session")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    need(PEBBLE, CHALLTESTSRV)
    pb = start_pebble(tmp_path_factory.mktemp("pebble"))
    try:
        yield pb
    finally:
        pb.stop()


@pytest.fixture(scope="session")
def http01_solver(pebble: Pebble) -> Iterator[StandaloneHttp01Solver]:
    """The standalone http-01 responder on pebble's httpPort (it listens only while a challenge is out)."""
    solver = StandaloneHttp01Solver("127.0.0.1", pebble.http01_port)
    yield solver
    solver.close()


@pytest.fixture(scope="session")
def openssl_ca_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    need("openssl")
    return openssl_ca(tmp_path_factory.mktemp("openssl-ca"))


def _crl_revoked(ca: InternalCA) -> Callable[[Issued], bool]:
    def check(issued: Issued) -> bool:
        crl = x509.load_der_x509_crl(ca.crl_der(utcnow()))
        issuing = x509.load_der_x509_certificate(issued.chain_ders[0])
        assert crl.is_signature_valid(issuing.public_key())  # type: ignore[arg-type]
        return crl.get_revoked_certificate_by_serial_number(int(issued.serial, 16)) is not None
    return check


@pytest.fixture(scope="module", params=["internal-generated", "internal-imported", "acme-pebble"])
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> IssuerCase:
    kind = request.param
    data = tmp_path_factory.mktemp(kind)
    if kind == "internal-generated":
        ca = InternalCA("internal", data / "issuers" / "internal")
        return IssuerCase(kind, ca, NAMES, lambda i: i.root_der, _crl_revoked(ca))
    if kind == "internal-imported":
        files = request.getfixturevalue("openssl_ca_files")
        ca = InternalCA(
            "imported", data / "issuers" / "imported", root_cert=files["root_cert"],
            intermediate_cert=files["intermediate_cert"], intermediate_key=files["intermediate_key"],
        )
        return IssuerCase(kind, ca, NAMES, lambda i: i.root_der, _crl_revoked(ca))
    pb: Pebble = request.getfixturevalue("pebble")
    solver = request.getfixturevalue("http01_solver")
    acme = AcmeIssuer("pebble", pb.directory_url, data / "issuers" / "pebble", solver, ca_bundle=pb.ca_bundle,
                      email="pki@example.test")
    root = pb.root_der()
    return IssuerCase(
        kind, acme, NAMES, lambda i: root,
        lambda i: pb.cert_status(i.serial).get("Status", "").lower() == "revoked",
    )
