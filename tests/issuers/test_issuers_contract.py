"""The contract every issuer passes (internal CA generated and imported, ACME on pebble).

An issuer that cannot set validity/KU/EKU itself (``applies_template_profile``
false: an ACME CA decides them) skips only those checks, and says so.
"""
from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from collector.errors import IssuerError
from collector.issuers.base import Issued, Issuer, RevocationReason
from collector.domain.templates import SubjectNames
from tests.helpers.collector_issuers import IssuerCase, utcnow
from tests.helpers.collector_issuers import make_csr, new_key, spki, tamper_signature, verify_chain

SLACK = dt.timedelta(seconds=5)


@pytest.fixture(scope="module")
def default_issue(case: IssuerCase) -> tuple[Issued, object, dt.datetime]:
    """One certificate per issuer, shared by the read-only checks below."""
    before = utcnow()
    issued, key = case.issue()
    return issued, key, before


def _sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), {str(i) for i in san.get_values_for_type(x509.IPAddress)}


def test_is_an_issuer(case: IssuerCase) -> None:
    assert isinstance(case.issuer, Issuer)
    assert isinstance(case.issuer.name, str) and case.issuer.name


def test_certificate_is_for_the_csr_key_and_the_requested_names(case: IssuerCase, default_issue) -> None:
    issued, key, _ = default_issue
    cert = x509.load_der_x509_certificate(issued.certificate_der)
    assert spki(cert) == spki(key)
    dns, ips = _sans(cert)
    assert dns == set(case.names.dns)
    assert ips == set(case.names.ips)
    assert issued.serial == format(cert.serial_number, "x")
    assert issued.not_after == cert.not_valid_after_utc
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if cns:  # an ACME CA may leave the CN out; when there is one, it is one of the names
        assert cns[0].value in case.names.all()


def test_chain_is_complete_and_validates_to_the_root(case: IssuerCase, default_issue) -> None:
    issued, _, _ = default_issue
    assert issued.certificate_der not in issued.chain_ders
    root = case.trust_root(issued)
    assert root not in issued.chain_ders, "chain_ders holds intermediates only; the root is separate"
    for name in case.names.dns:
        verify_chain(issued, root, name, utcnow())
    # fullchain = leaf + intermediates
    assert issued.fullchain_ders() == [issued.certificate_der, *issued.chain_ders]
    assert issued.fullchain_pem().count(b"BEGIN CERTIFICATE") == 1 + len(issued.chain_ders)


def test_validity_is_within_the_template_and_the_issuing_certificate(case: IssuerCase, default_issue) -> None:
    issued, _, before = default_issue
    cert = x509.load_der_x509_certificate(issued.certificate_der)
    after = utcnow()
    assert cert.not_valid_before_utc <= after
    assert cert.not_valid_after_utc > after
    assert cert.not_valid_after_utc <= case.issuing_not_after(issued)
    if not case.issuer.applies_template_profile:
        pytest.skip(f"{case.id}: the ACME CA chooses the validity itself")
    template = case.template()
    assert cert.not_valid_after_utc <= after + template.validity + SLACK
    assert cert.not_valid_after_utc >= before + template.validity - SLACK


def test_validity_is_clamped_to_the_issuing_certificate(case: IssuerCase) -> None:
    if not case.issuer.applies_template_profile:
        pytest.skip(f"{case.id}: the ACME CA chooses the validity itself")
    issued, _ = case.issue(case.template(validity=dt.timedelta(days=3650)))
    cert = x509.load_der_x509_certificate(issued.certificate_der)
    ceiling = case.issuing_not_after(issued)
    assert cert.not_valid_after_utc == ceiling
    assert ceiling < utcnow() + dt.timedelta(days=3650)


def test_key_usage_and_extended_key_usage_follow_the_template(case: IssuerCase) -> None:
    if not case.issuer.applies_template_profile:
        pytest.skip(f"{case.id}: the ACME CA chooses key usage and extended key usage itself")
    template = case.template(
        key_type="rsa", key_size=2048, curve=None, key_usage=("digital_signature", "key_encipherment"),
        extended_key_usage=("clientAuth",),
    )
    issued, _ = case.issue(template)
    cert = x509.load_der_x509_certificate(issued.certificate_der)
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature and ku.value.key_encipherment
    assert not ku.value.key_cert_sign and not ku.value.crl_sign and not ku.value.content_commitment
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())  # type: ignore[arg-type]
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    issuing = x509.load_der_x509_certificate(issued.chain_ders[0])
    assert aki.key_identifier == issuing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def test_rsa_template_with_rsa_csr(case: IssuerCase) -> None:
    template = case.template(key_type="rsa", key_size=2048, curve=None,
                             key_usage=("digital_signature", "key_encipherment"))
    names = SubjectNames("rsa.example.test", ("rsa.example.test",), ())
    issued, key = case.issue(template, names=names)
    cert = x509.load_der_x509_certificate(issued.certificate_der)
    assert spki(cert) == spki(key)
    assert _sans(cert) == ({"rsa.example.test"}, set())
    verify_chain(issued, case.trust_root(issued), "rsa.example.test", utcnow())


def test_renewal_keeps_the_certificate_names(case: IssuerCase, default_issue) -> None:
    old, _, _ = default_issue
    names = SubjectNames.from_certificate(old.certificate_der)
    assert set(names.dns) == set(case.names.dns) and set(names.ips) == set(case.names.ips)
    renewed, key = case.issue(names=names)
    cert = x509.load_der_x509_certificate(renewed.certificate_der)
    assert _sans(cert) == (set(case.names.dns), set(case.names.ips))
    assert spki(cert) == spki(key)
    assert renewed.serial != old.serial


# -- refusals: clear messages, before anything is signed ------------------------------


def _refused(case: IssuerCase, *, template=None, names: SubjectNames, csr: bytes | None = None) -> str:
    template = template or case.template()
    if csr is None:
        key = new_key(template.key_type, template.key_size or template.curve)
        csr = make_csr(key, list(names.dns), list(names.ips), names.common_name or None)
    with pytest.raises(IssuerError) as err:
        case.issuer.issue(csr, template, names, utcnow())
    return str(err.value)


def test_a_name_outside_the_template_is_refused(case: IssuerCase) -> None:
    names = SubjectNames("www.example.test", ("www.example.test", "www.other.test"), ())
    msg = _refused(case, names=names)
    assert "www.other.test" in msg and "*.example.test" in msg and "'web'" in msg


def test_a_deeper_subdomain_is_refused_by_a_single_label_wildcard(case: IssuerCase) -> None:
    msg = _refused(case, names=SubjectNames("", ("a.b.example.test",), ()))
    assert "a.b.example.test" in msg


def test_an_ip_outside_the_template_is_refused(case: IssuerCase) -> None:
    msg = _refused(case, names=SubjectNames("", ("www.example.test",), ("192.0.2.7",)))
    assert "192.0.2.7" in msg and "127.0.0.0/8" in msg


def test_a_wildcard_is_refused_unless_the_template_allows_it(case: IssuerCase) -> None:
    msg = _refused(case, names=SubjectNames("", ("*.example.test",), ()))
    assert "wildcard" in msg and "*.example.test" in msg


def test_a_bad_csr_signature_is_refused(case: IssuerCase) -> None:
    key = new_key()
    csr = tamper_signature(make_csr(key, list(case.names.dns), list(case.names.ips), case.names.common_name))
    msg = _refused(case, names=case.names, csr=csr)
    assert "signature" in msg


def test_garbage_instead_of_a_csr_is_refused(case: IssuerCase) -> None:
    msg = _refused(case, names=case.names, csr=b"\x30\x03\x02\x01\x00")
    assert "CSR" in msg


def test_a_csr_key_other_than_the_template_asks_is_refused(case: IssuerCase) -> None:
    key = new_key("ec", "P-384")
    csr = make_csr(key, list(case.names.dns), list(case.names.ips), case.names.common_name)
    msg = _refused(case, names=case.names, csr=csr)
    assert "EC P-256" in msg and "EC P-384" in msg


def test_a_template_of_another_issuer_is_refused(case: IssuerCase) -> None:
    msg = _refused(case, template=case.template(issuer="someone-else"), names=case.names)
    assert "someone-else" in msg


# -- revocation -------------------------------------------------------------------------


def test_revoke_is_seen_by_the_ca_and_is_repeatable(case: IssuerCase) -> None:
    issued, _ = case.issue(names=SubjectNames("", ("revoke.example.test",), ()))
    assert not case.is_revoked(issued)
    case.issuer.revoke(issued.certificate_der, RevocationReason.key_compromise, utcnow())
    assert case.is_revoked(issued)
    case.issuer.revoke(issued.certificate_der, RevocationReason.key_compromise, utcnow())  # harmless
    assert case.is_revoked(issued)


def test_revoke_refuses_garbage(case: IssuerCase) -> None:
    with pytest.raises(IssuerError):
        case.issuer.revoke(b"not a certificate", RevocationReason.superseded, utcnow())
