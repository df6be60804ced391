"""One ACME account per issuer per registry: collectors with their own data_dir on one database
register once, with the registry's (wrapped) account key, against a real pebble."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text

from collector.issuers.acme import ACCOUNT_KEY_FILE, AcmeIssuer
from collector.issuers.ca_registry import shared_private_key
from collector.issuers.solvers import StandaloneHttp01Solver
from collector.pki import write_private_file
from tests.helpers.collector_issuers import CHALLTESTSRV, PEBBLE, Pebble, start_pebble, utcnow


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    missing = [t for t in (PEBBLE, CHALLTESTSRV) if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (packaging/dev/setup.sh installs pebble)")
    pb = start_pebble(tmp_path_factory.mktemp("pebble"))
    try:
        yield pb
    finally:
        pb.stop()


def acme_for(c, pebble: Pebble, solver) -> AcmeIssuer:  # noqa: ANN001
    def shared_key(make, legacy):  # noqa: ANN001, ANN202
        return shared_private_key(c.registry.issuer_state, c.wrapper, "le", "acme_account_key", make, legacy, utcnow())

    return AcmeIssuer("le", pebble.directory_url, c.data_dir / "issuers" / "le", solver, ca_bundle=pebble.ca_bundle,
                      shared_key=shared_key)


def test_collectors_on_one_registry_share_one_acme_account(collectors, db_url, pebble) -> None:  # noqa: ANN001
    solver = StandaloneHttp01Solver("127.0.0.1", pebble.http01_port)
    try:
        a, b = collectors(db_url, 2)
        # a collector from before left its account key in its data_dir: that account is kept
        old = ec.generate_private_key(ec.SECP256R1())
        legacy = a.data_dir / "issuers" / "le" / ACCOUNT_KEY_FILE
        legacy.parent.mkdir(parents=True)
        write_private_file(legacy, old.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
        legacy_url = AcmeIssuer("le", pebble.directory_url, a.data_dir / "issuers" / "le", solver,
                                ca_bundle=pebble.ca_bundle).account_url()
        url_a = acme_for(a, pebble, solver).account_url()
        url_b = acme_for(b, pebble, solver).account_url()
        assert url_a == url_b == legacy_url
        assert not (b.data_dir / "issuers" / "le" / ACCOUNT_KEY_FILE).exists(), "no key file on the other collector"
        with a.registry.engine.connect() as conn:
            rows = conn.execute(text("SELECT wrapped FROM issuer_secrets WHERE kind = 'acme_account_key'")).all()
        assert len(rows) == 1
        clear = old.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
        assert clear not in bytes(rows[0][0])
    finally:
        solver.close()
