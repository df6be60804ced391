"""CA keys in a PKCS#11 token (SoftHSM2, initialised here in a tmp dir through SOFTHSM2_CONF): the
hierarchy is made in the token once per registry, every collector signs there, the key is marked
sensitive and not extractable, the registry holds only its label; a real collector renews an
agent's certificate with it and `ca status` says where the key lives."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text

from collector.domain.templates import SubjectNames
from collector.errors import IssuerError
from collector.issuers.base import RevocationReason
from collector.issuers.ca_registry import SharedCAState
from collector.issuers.internal_ca import InternalCA
from collector.issuers.pkcs11_signer import Pkcs11Token, load_token
from tests.e2e.harness import BIN, Agent, Collector, run
from tests.helpers.collector_issuers import make_csr, make_template, new_key, utcnow

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "4711-test"


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One SoftHSM2 token for the session (a PKCS#11 library is initialised once per process)."""
    if shutil.which("softhsm2-util") is None or not Path(MODULE).exists():
        pytest.skip("needs softhsm2 (packaging/dev/setup.sh installs it)")
    pytest.importorskip("pkcs11", reason="needs python-pkcs11 (certfleet[hsm], in the test extra)")
    d = tmp_path_factory.mktemp("softhsm")
    (d / "tokens").mkdir()
    conf = d / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {d / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "certfleet", "--so-pin", "so-4711",
                    "--pin", PIN], check=True, capture_output=True)
    pin_file = d / "pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    yield {"conf": conf, "pin_file": pin_file, "token": Pkcs11Token(MODULE, "certfleet", PIN)}
    if old is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = old


def test_hierarchy_in_the_token_shared_by_collectors_key_never_leaves(collectors, db_url, softhsm, tmp_path) -> None:  # noqa: ANN001
    token: Pkcs11Token = softhsm["token"]
    now = utcnow()
    issuer = f"hsm{os.getpid()}{time.monotonic_ns() % 100000}"
    a, b = collectors(db_url, 2)

    def ca(c) -> InternalCA:  # noqa: ANN001
        d = c.data_dir / "issuers" / issuer
        return InternalCA(issuer, d, shared=SharedCAState(c.registry.issuer_state, c.wrapper, issuer, c.name, d, token))

    ca_a, ca_b = ca(a), ca(b)
    names = SubjectNames("web1.example.test", ("web1.example.test",))
    issued = ca_a.issue(make_csr(new_key("ec", "P-256"), dns=["web1.example.test"], cn="web1.example.test"),
                        make_template(issuer=issuer), names, now)
    assert ca_b.root_der(now) == ca_a.root_der(now)
    row = a.registry.issuer_state.get(issuer)
    assert row is not None and row.key_store == "pkcs11" and row.kek_id == ""
    label = bytes(row.key_ref).decode()
    assert label.startswith(f"certfleet-{issuer}-issuing-")
    # the chain verifies with openssl: the token's signatures are real
    pem = lambda d: x509.load_der_x509_certificate(d).public_bytes(serialization.Encoding.PEM)  # noqa: E731
    (tmp_path / "root.pem").write_bytes(pem(issued.root_der))
    (tmp_path / "chain.pem").write_bytes(b"".join(pem(d) for d in issued.chain_ders))
    (tmp_path / "leaf.pem").write_bytes(pem(issued.certificate_der))
    v = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "root.pem"), "-untrusted",
                        str(tmp_path / "chain.pem"), str(tmp_path / "leaf.pem")], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr
    # revoked through B, signed in the token, in A's CRL
    ca_b.revoke(issued.certificate_der, RevocationReason.key_compromise, now)
    crl = x509.load_der_x509_crl(ca_a.crl_der(now))
    inter = x509.load_der_x509_certificate(issued.chain_ders[0])
    assert crl.is_signature_valid(inter.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(int(issued.serial, 16)) is not None
    # the key in the token: sensitive, not extractable; its value cannot be read
    import pkcs11  # the optional binding, loaded by the fixture's token already

    session = token._session
    priv = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=label)
    assert priv[pkcs11.Attribute.SENSITIVE] and not priv[pkcs11.Attribute.EXTRACTABLE]
    with pytest.raises(pkcs11.PKCS11Error):
        priv[pkcs11.Attribute.VALUE]
    # and the registry holds no key: only labels
    with a.registry.engine.connect() as conn:
        refs = conn.execute(text("SELECT key_ref, root_key_ref FROM ca_hierarchies WHERE issuer = :i"),
                            {"i": issuer}).one()
    assert bytes(refs[0]).decode() == label and bytes(refs[1]).decode().startswith(f"certfleet-{issuer}-root-")


def test_pkcs11_settings_are_checked(tmp_path, softhsm) -> None:  # noqa: ANN001
    loose = tmp_path / "pin"
    loose.write_text(PIN)
    loose.chmod(0o644)
    with pytest.raises(IssuerError, match="0600"):
        load_token({"module": MODULE, "token": "certfleet", "pin_file": str(loose)}, tmp_path)
    with pytest.raises(IssuerError, match="cannot open a session"):
        load_token({"module": MODULE, "token": "certfleet", "pin_env": "P"}, tmp_path, environ={"P": "wrong"})


ISSUERS = """
[issuers.internal]
type = "internal_ca"
common_name = "certfleet HSM CA"

[templates.web]
issuer = "internal"
key_type = "ec"
curve = "P-256"
validity = "30d"
key_usage = ["digital_signature"]
extended_key_usage = ["serverAuth"]
allowed_san_patterns = ["*.example.test"]

[renewal]
default_template = "web"
"""


def test_a_collector_renews_with_the_key_in_the_token(tmp_path, softhsm, pg_url) -> None:  # noqa: ANN001
    tables = ISSUERS + (f'\n[keys.pkcs11]\nmodule = "{MODULE}"\ntoken = "certfleet"\n'
                        f'pin_file = "{softhsm["pin_file"]}"\n')
    c = Collector(tmp_path / "collector", database_url=pg_url, extra_tables=tables)
    c.start()
    svc = None
    try:
        st = run("certfleet-collector", "ca", "status", "--config", str(c.config), env=c.env)
        assert st.code == 0, st.err
        assert "issuing key: pkcs11 token, label certfleet-internal-issuing-" in st.out and "never exported" in st.out
        assert c.init_admin().code == 0
        c.authorize("*.example.test")          # since issue 11 only granted names are issued
        site = tmp_path / "site"
        site.mkdir()
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", str(site / "key.pem"), "-out", str(site / "cert.pem"), "-days", "20",
                        "-subj", "/CN=www.example.test", "-addext", "subjectAltName=DNS:www.example.test"],
                       check=True, capture_output=True)
        agent = Agent(tmp_path / "agent", f'[[store]]\nname = "web"\ntype = "pem"\npaths = ["{site}/*.pem"]\n')
        agent.write_config(hostname="web-01")
        agent.config.write_text(agent.config.read_text().replace("[agent]\n", '[agent]\nscan_interval = "2s"\n', 1))
        assert agent.enroll(c, c.token()).code == 0
        log = open(tmp_path / "agent.log", "a")
        svc = subprocess.Popen([str(BIN / "certfleet-agent"), "run", "--config", str(agent.config)],
                               stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        fp = ""
        while not fp and time.monotonic() < deadline:
            r = c.cli("certs", "list", "--host", "web-01", "--format", "json")
            fp = next((x["fingerprint_sha256"] for x in (r.json() if r.code == 0 else [])), "")
            time.sleep(0.5)
        assert fp, "the agent's first report"
        r = c.cli("renew", fp[:12], "--wait", "--timeout", "90")
        assert r.code == 0 and "verified" in r.out, r.out + r.err
        new = x509.load_pem_x509_certificate((site / "cert.pem").read_bytes())
        token: Pkcs11Token = softhsm["token"]
        st = run("certfleet-collector", "ca", "status", "--config", str(c.config), env=c.env)
        label = st.out.split("label ")[1].split(" ")[0]
        assert "certfleet HSM CA Intermediate CA" in new.issuer.rfc4514_string()
        new.verify_directly_issued_by(_intermediate_for(token, label, new))
    finally:
        if svc is not None:
            svc.terminate()
            svc.wait(10)
        c.stop()


def _intermediate_for(token: Pkcs11Token, label: str, leaf: x509.Certificate) -> x509.Certificate:
    """A stand-in issuer certificate carrying the token key's public key (verify_directly_issued_by
    needs a certificate): the leaf verifies under it only if the token's key signed it."""
    k = ec.generate_private_key(ec.SECP256R1())
    pub = token.key(label).public_key()
    return (x509.CertificateBuilder().subject_name(leaf.issuer).issuer_name(leaf.issuer).public_key(pub)
            .serial_number(1).not_valid_before(dt.datetime(2000, 1, 1)).not_valid_after(dt.datetime(2100, 1, 1))
            .sign(k, hashes.SHA256()))
