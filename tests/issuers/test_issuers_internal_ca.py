"""The internal CA beyond the contract: its files, imports, CRL, serial log and refusals."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from collector.errors import IssuerError
from collector.issuers.base import KnowsIssued, RevocationReason, SupportsCRL, SupportsRoot
from collector.issuers.internal_ca import InternalCA
from collector.domain.templates import SubjectNames, TemplateConfigError
from tests.helpers.collector_issuers import make_template, utcnow
from tests.helpers.collector_issuers import make_csr, new_key, openssl_ca

NAMES = SubjectNames("www.example.test", ["www.example.test"], [])


def _issue(ca: InternalCA, names: SubjectNames = NAMES, now: dt.datetime | None = None, **tpl):
    csr = make_csr(new_key(), list(names.dns), list(names.ips), names.common_name or None)
    return ca.issue(csr, make_template(issuer=ca.name, **tpl), names, now or utcnow())


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_generated_hierarchy_is_made_once_with_private_keys(tmp_path: Path) -> None:
    d = tmp_path / "issuers" / "internal"
    ca = InternalCA("internal", d, common_name="Example Corp")
    assert not d.exists(), "nothing is made before first use"
    issued = _issue(ca)
    assert _mode(d / "root.key") == 0o600 and _mode(d / "intermediate.key") == 0o600
    root = x509.load_pem_x509_certificate((d / "root.pem").read_bytes())
    inter = x509.load_pem_x509_certificate((d / "intermediate.pem").read_bytes())
    assert root.subject.rfc4514_string() == "CN=Example Corp Root CA,O=certfleet"
    assert inter.subject.rfc4514_string() == "CN=Example Corp Intermediate CA,O=certfleet"
    assert issued.root_der == root.public_bytes(serialization.Encoding.DER)
    assert issued.chain_ders == (inter.public_bytes(serialization.Encoding.DER),)
    bc = inter.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    # a second collector (or a restart) on the same directory uses the same hierarchy
    again = InternalCA("internal", d)
    assert _issue(again).root_der == issued.root_der
    assert again.root_der(utcnow()) == issued.root_der


def test_leaf_takes_names_from_the_request_not_from_the_csr(tmp_path: Path) -> None:
    ca = InternalCA("internal", tmp_path)
    csr = make_csr(new_key(), ["evil.other.test"], ["192.0.2.1"], "evil.other.test")
    issued = ca.issue(csr, make_template(), NAMES, utcnow())
    cert = issued.certificate
    assert cert.subject.rfc4514_string() == "CN=www.example.test"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["www.example.test"]
    assert san.value.get_values_for_type(x509.IPAddress) == []
    assert not san.critical


def test_names_without_common_name_make_a_critical_san(tmp_path: Path) -> None:
    ca = InternalCA("internal", tmp_path)
    issued = _issue(ca, SubjectNames("", ["api.example.test"], ["127.0.0.3"]))
    cert = issued.certificate
    assert len(cert.subject) == 0
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical


def test_serials_are_random_logged_and_distinct(tmp_path: Path) -> None:
    ca = InternalCA("internal", tmp_path)
    serials = {_issue(ca).serial for _ in range(5)}
    assert len(serials) == 5
    assert all(int(s, 16) >> 64 for s in serials)
    with sqlite3.connect(tmp_path / "state.sqlite3") as db:
        logged = {r[0] for r in db.execute("SELECT serial FROM issued")}
    assert logged == serials


def test_crl_lists_revocations_with_reasons_and_increasing_numbers(tmp_path: Path) -> None:
    ca = InternalCA("internal", tmp_path, crl_validity=dt.timedelta(days=2))
    assert isinstance(ca, SupportsCRL)
    a, b, c = _issue(ca), _issue(ca), _issue(ca)
    now = utcnow()
    ca.revoke(a.certificate_der, RevocationReason.key_compromise, now)
    ca.revoke(b.certificate_der, RevocationReason.unspecified, now)
    crl1 = x509.load_der_x509_crl(ca.crl_der(now))
    crl2 = x509.load_der_x509_crl(ca.crl_der(now))
    issuing = x509.load_der_x509_certificate(a.chain_ders[0])
    assert crl1.is_signature_valid(issuing.public_key())  # type: ignore[arg-type]
    assert crl1.issuer == issuing.subject
    assert crl1.next_update_utc == now + dt.timedelta(days=2)
    n1 = crl1.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    n2 = crl2.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert n2 == n1 + 1
    ea = crl1.get_revoked_certificate_by_serial_number(int(a.serial, 16))
    eb = crl1.get_revoked_certificate_by_serial_number(int(b.serial, 16))
    assert ea is not None and ea.extensions.get_extension_for_class(x509.CRLReason).value.reason \
        is x509.ReasonFlags.key_compromise
    assert eb is not None and len(eb.extensions) == 0  # unspecified: no reason code (RFC 5280 5.3.1)
    assert crl1.get_revoked_certificate_by_serial_number(int(c.serial, 16)) is None
    # with openssl too
    if shutil.which("openssl"):
        import subprocess

        p = tmp_path / "crl.der"
        p.write_bytes(ca.crl_der(now))
        out = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(p), "-noout", "-text"],
                             capture_output=True, text=True, check=True)
        assert a.serial.upper() in out.stdout.upper().replace(":", "")


def test_hold_can_be_lifted_permanent_revocation_cannot(tmp_path: Path) -> None:
    ca = InternalCA("internal", tmp_path)
    held, gone = _issue(ca), _issue(ca)
    now = utcnow()
    ca.revoke(held.certificate_der, RevocationReason.certificate_hold, now)
    ca.revoke(gone.certificate_der, RevocationReason.superseded, now)
    assert {s for s, _, _ in ca.revocations()} == {held.serial, gone.serial}
    ca.revoke(held.certificate_der, RevocationReason.remove_from_crl, now)
    assert [s for s, _, _ in ca.revocations()] == [gone.serial]
    with pytest.raises(IssuerError, match="permanent"):
        ca.revoke(gone.certificate_der, RevocationReason.remove_from_crl, now)
    with pytest.raises(IssuerError, match="cannot be put on hold"):
        ca.revoke(gone.certificate_der, RevocationReason.certificate_hold, now)
    with pytest.raises(IssuerError, match="no hold to remove"):
        ca.revoke(held.certificate_der, RevocationReason.remove_from_crl, now)
    # a milder reason is upgraded to keyCompromise
    ca.revoke(gone.certificate_der, RevocationReason.key_compromise, now)
    assert ca.revocations()[0][1] is RevocationReason.key_compromise


def test_revoking_a_certificate_of_another_ca_is_refused(tmp_path: Path) -> None:
    ours, theirs = InternalCA("ours", tmp_path / "a"), InternalCA("theirs", tmp_path / "b")
    foreign = _issue(theirs)
    with pytest.raises(IssuerError, match="was not issued by 'ours'"):
        ours.revoke(foreign.certificate_der, RevocationReason.superseded, utcnow())


def test_an_internal_ca_knows_the_certificates_it_issued(tmp_path: Path) -> None:
    ours, theirs = InternalCA("ours", tmp_path / "a"), InternalCA("theirs", tmp_path / "b")
    assert isinstance(ours, KnowsIssued) and isinstance(ours, SupportsRoot) and isinstance(ours, SupportsCRL)
    foreign = _issue(theirs)
    assert not ours.issued(foreign.certificate_der, utcnow())
    assert not (tmp_path / "a").exists(), "asking a CA that made nothing yet makes nothing"
    mine = _issue(ours)
    assert ours.issued(mine.certificate_der, utcnow()) and not theirs.issued(mine.certificate_der, utcnow())
    assert not ours.issued(b"not a certificate", utcnow())


def test_expired_intermediate_refuses_to_issue(tmp_path: Path) -> None:
    ca = InternalCA("internal", tmp_path, intermediate_validity=dt.timedelta(days=10))
    now = utcnow()
    issued = _issue(ca, now=now, validity=dt.timedelta(days=30))
    assert issued.not_after == ca.hierarchy(now).issuing.not_valid_after_utc  # clamped to 10 days
    with pytest.raises(IssuerError, match="expires on"):
        _issue(ca, now=now + dt.timedelta(days=11))


def test_crl_distribution_point(tmp_path: Path) -> None:
    ca = InternalCA("internal", tmp_path, crl_url="http://pki.example.test/internal.crl")
    cdp = _issue(ca).certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name == [x509.UniformResourceIdentifier("http://pki.example.test/internal.crl")]


def test_rsa_hierarchy(tmp_path: Path) -> None:
    ca = InternalCA("internal", tmp_path, ca_key_type="rsa")
    issued = _issue(ca)
    root = x509.load_der_x509_certificate(issued.root_der or b"")
    assert root.public_key().key_size == 4096  # type: ignore[union-attr]


# -- imported hierarchies ----------------------------------------------------------------


@pytest.fixture
def files(openssl_ca_files: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    out = {}
    for k, p in openssl_ca_files.items():
        out[k] = tmp_path / "in" / p.name
        out[k].parent.mkdir(exist_ok=True)
        shutil.copy2(p, out[k])
    return out


def _imported(files: dict[str, Path], tmp_path: Path) -> InternalCA:
    return InternalCA("imp", tmp_path / "state", root_cert=files["root_cert"],
                      intermediate_cert=files["intermediate_cert"], intermediate_key=files["intermediate_key"])


def test_imported_hierarchy_does_not_copy_keys(files, tmp_path: Path) -> None:
    ca = _imported(files, tmp_path)
    issued = _issue(ca)
    assert issued.root_der == x509.load_pem_x509_certificate(files["root_cert"].read_bytes()).public_bytes(
        serialization.Encoding.DER)
    assert not list((tmp_path / "state").glob("*.key"))


def test_imported_bundle_with_the_root_at_the_end_is_accepted(files, tmp_path: Path) -> None:
    bundle = files["intermediate_cert"].read_bytes() + files["root_cert"].read_bytes()
    files["intermediate_cert"].write_bytes(bundle)
    issued = _issue(_imported(files, tmp_path))
    assert len(issued.chain_ders) == 1


def test_imported_key_readable_by_others_is_refused(files, tmp_path: Path) -> None:
    os.chmod(files["intermediate_key"], 0o644)
    with pytest.raises(IssuerError, match="chmod 600"):
        _imported(files, tmp_path)


def test_imported_key_of_another_certificate_is_refused(files, tmp_path: Path) -> None:
    shutil.copy2(files["root_key"], files["intermediate_key"])
    os.chmod(files["intermediate_key"], 0o600)
    with pytest.raises(IssuerError, match="does not belong"):
        _imported(files, tmp_path)


def test_imported_intermediate_of_another_root_is_refused(files, tmp_path: Path) -> None:
    other = openssl_ca(tmp_path / "other")
    shutil.copy2(other["root_cert"], files["root_cert"])
    with pytest.raises(IssuerError, match="is not signed by"):
        _imported(files, tmp_path)


def test_imported_leaf_instead_of_intermediate_is_refused(files, tmp_path: Path) -> None:
    leaf = _issue(_imported(files, tmp_path)).certificate
    files["intermediate_cert"].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(IssuerError):
        _imported(files, tmp_path)


def test_half_an_import_is_a_config_error(files, tmp_path: Path) -> None:
    with pytest.raises(TemplateConfigError, match="together"):
        InternalCA("imp", tmp_path, root_cert=files["root_cert"])


def test_root_key_without_root_certificate_is_not_replaced(tmp_path: Path) -> None:
    ca = InternalCA("internal", tmp_path)
    _issue(ca)
    for f in ("root.pem", "intermediate.pem", "intermediate.key"):
        (tmp_path / f).unlink()
    with pytest.raises(IssuerError, match="root.pem is missing"):
        _issue(InternalCA("internal", tmp_path))
