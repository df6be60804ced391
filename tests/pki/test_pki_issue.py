"""Issuing agent and admin certificates, and reading identities back."""
from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.identity import make_key_and_csr
from collector.errors import PKIError
from collector.pki import (
    ADMIN_ROLES,
    CollectorCA,
    Identity,
    identity_from_certificate,
    identity_from_pem,
)

AGENT_ID = "3f1c2a9e-7b5d-4e8a-9c61-0d2f4b7a8e13"


def csr_for(key: object, cn: str = "whatever-the-host-wants") -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    ).add_extension(x509.SubjectAlternativeName([x509.DNSName("evil.example")]), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.DER)  # type: ignore[arg-type]


def uris(cert: x509.Certificate) -> list[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.UniformResourceIdentifier)


# -- CSR checks --------------------------------------------------------------------


def test_csr_with_bad_signature_is_refused(ca: CollectorCA, now: dt.datetime) -> None:
    _, der = make_key_and_csr()
    tampered = der.replace(b"certfleet-agent", b"certfleet-agenX")
    assert tampered != der
    with pytest.raises(PKIError, match="signature does not verify"):
        ca.issue_agent_certificate(tampered, AGENT_ID, now)


def test_weak_rsa_is_refused(ca: CollectorCA, now: dt.datetime) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(PKIError, match="1024 bits: at least 2048"):
        ca.issue_agent_certificate(csr_for(weak), AGENT_ID, now)


def test_other_curves_and_key_types_are_refused(ca: CollectorCA, now: dt.datetime) -> None:
    with pytest.raises(PKIError, match="secp521r1"):
        ca.issue_agent_certificate(csr_for(ec.generate_private_key(ec.SECP521R1())), AGENT_ID, now)
    with pytest.raises(PKIError, match="not accepted"):
        ca.issue_agent_certificate(csr_for(ed25519.Ed25519PrivateKey.generate()), AGENT_ID, now)


@pytest.mark.parametrize("garbage", [b"", b"\x30\x03\x02\x01\x00", b"-----BEGIN CERTIFICATE REQUEST-----"])
def test_garbage_csr_is_refused(ca: CollectorCA, now: dt.datetime, garbage: bytes) -> None:
    with pytest.raises(PKIError, match="not a valid DER"):
        ca.issue_agent_certificate(garbage, AGENT_ID, now)


@pytest.mark.parametrize("kind", ["ec-p256", "ec-p384", "rsa-2048"])
def test_accepted_key_kinds(ca: CollectorCA, now: dt.datetime, kind: str) -> None:
    key, der = make_key_and_csr(kind)
    cert = ca.issue_agent_certificate(der, AGENT_ID, now)
    assert cert.public_key() == key.public_key()
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment == kind.startswith("rsa")


@pytest.mark.parametrize("bad_id", ["", "a" * 65, "has space", "x:y", "../etc", "é", "abc\n", "-leading-dash"])
def test_bad_agent_ids_are_refused(ca: CollectorCA, now: dt.datetime, bad_id: str) -> None:
    _, der = make_key_and_csr()
    with pytest.raises(PKIError):
        ca.issue_agent_certificate(der, bad_id, now)


# -- agent certificates ---------------------------------------------------------


def test_agent_certificate_contents(ca: CollectorCA, now: dt.datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.issue_agent_certificate(csr_for(key, cn="admin"), AGENT_ID, now)

    assert cert.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, AGENT_ID)])  # CSR subject ignored
    assert cert.issuer == ca.certificate.subject
    assert uris(cert) == [f"certfleet:agent:{AGENT_ID}"]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == []  # requested SANs ignored
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert cert.not_valid_before_utc == now - dt.timedelta(minutes=5)
    assert cert.not_valid_after_utc == now + dt.timedelta(days=30)
    assert 0 < cert.serial_number < 2**128
    assert ca.issued(cert)


def test_serials_are_random(ca: CollectorCA, now: dt.datetime) -> None:
    _, der = make_key_and_csr()
    serials = {ca.issue_agent_certificate(der, AGENT_ID, now).serial_number for _ in range(20)}
    assert len(serials) == 20
    assert max(serials).bit_length() > 100  # 128 random bits, not a counter


def test_lifetime_is_capped_by_the_ca(ca: CollectorCA, now: dt.datetime) -> None:
    _, der = make_key_and_csr()
    late = ca.certificate.not_valid_after_utc - dt.timedelta(days=3)
    cert = ca.issue_agent_certificate(der, AGENT_ID, late, lifetime=dt.timedelta(days=30))
    assert cert.not_valid_after_utc == ca.certificate.not_valid_after_utc
    with pytest.raises(PKIError):
        ca.issue_agent_certificate(der, AGENT_ID, now, lifetime=dt.timedelta(0))


def test_naive_now_is_utc(ca: CollectorCA, now: dt.datetime) -> None:
    _, der = make_key_and_csr()
    cert = ca.issue_agent_certificate(der, AGENT_ID, now.replace(tzinfo=None), lifetime=dt.timedelta(days=1))
    assert cert.not_valid_after_utc == now + dt.timedelta(days=1)


# -- admin certificates -----------------------------------------------------------


@pytest.mark.parametrize("role", ADMIN_ROLES)
def test_admin_certificate_contents(ca: CollectorCA, now: dt.datetime, role: str) -> None:
    cert, key = ca.issue_admin_certificate("alice@example.org", role, now)
    assert cert.public_key() == key.public_key()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice@example.org"
    assert uris(cert) == [f"certfleet:admin:{role}:alice@example.org"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_after_utc == now + dt.timedelta(days=365)
    assert ca.issued(cert)
    assert identity_from_certificate(cert) == Identity(
        kind="admin", name="alice@example.org", role=role, serial=format(cert.serial_number, "x")
    )


def test_unknown_admin_role_is_refused(ca: CollectorCA, now: dt.datetime) -> None:
    with pytest.raises(PKIError, match="unknown role 'root'"):
        ca.issue_admin_certificate("bob", "root", now)


# -- identities ---------------------------------------------------------------------


def test_agent_identity_from_certificate_and_pem(ca: CollectorCA, now: dt.datetime) -> None:
    _, der = make_key_and_csr()
    cert = ca.issue_agent_certificate(der, AGENT_ID, now)
    ident = identity_from_certificate(cert)
    assert ident == Identity(kind="agent", name=AGENT_ID, role=None, serial=format(cert.serial_number, "x"))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    assert identity_from_pem(pem) == ident
    assert identity_from_pem(pem.decode()) == ident


def _self_signed_with(general_names: list[x509.GeneralName] | None) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "someone")])
    now = dt.datetime.now(dt.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)))
    if general_names is not None:
        b = b.add_extension(x509.SubjectAlternativeName(general_names), critical=False)
    return b.sign(key, hashes.SHA256())


@pytest.mark.parametrize("names, message", [
    (None, "no certfleet identity"),
    ([x509.DNSName("host.example")], "no certfleet identity"),
    ([x509.UniformResourceIdentifier("https://example.org/")], "no certfleet identity"),
    ([x509.UniformResourceIdentifier("certfleet:robot:x")], "unknown kind"),
    ([x509.UniformResourceIdentifier("certfleet:admin:root:bob")], "unknown role"),
    ([x509.UniformResourceIdentifier("certfleet:admin:bob")], "malformed"),
    ([x509.UniformResourceIdentifier("certfleet:agent:")], "malformed"),
    ([x509.UniformResourceIdentifier("certfleet:agent:a"),
      x509.UniformResourceIdentifier("certfleet:admin:admin:b")], "more than one"),
])
def test_unknown_identities_are_refused(names: list[x509.GeneralName] | None, message: str) -> None:
    with pytest.raises(PKIError, match=message):
        identity_from_certificate(_self_signed_with(names))


def test_identity_from_bad_pem() -> None:
    with pytest.raises(PKIError, match="not valid PEM"):
        identity_from_pem(b"garbage")
