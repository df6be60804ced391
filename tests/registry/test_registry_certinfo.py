"""parse_certificate: the facts read from a DER, and robustness against odd certificates."""
from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ed448
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from collector.domain.certinfo import parse_certificate
from collector.errors import InvalidInput
from tests.helpers.registry_certs import ALL_SANS, T0, dn, intermediate_ca, issue, leaf, new_key, root_ca


def test_leaf_facts() -> None:
    root = root_ca()
    ca = intermediate_ca("Issuing CA", root)
    cert = leaf("www.example.com", ca, key_kind="rsa", sans=ALL_SANS,
                eku=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    f = parse_certificate(cert.der)
    assert f.fingerprint == hashlib.sha256(cert.der).hexdigest()
    assert f.subject == "CN=www.example.com"
    assert f.issuer == "CN=Issuing CA,O=certfleet tests"
    assert f.serial == format(cert.cert.serial_number, "x")
    assert f.sans == (("dns", "www.example.com"), ("ip", "192.0.2.10"), ("ip", "2001:db8::1"),
                      ("email", "ops@example.com"), ("uri", "spiffe://example.com/web"))
    assert f.not_before == T0 - dt.timedelta(days=1) and f.not_before.tzinfo == dt.timezone.utc
    assert f.not_after == T0 + dt.timedelta(days=89)
    assert (f.key_type, f.key_size, f.key_curve) == ("RSA", 2048, "")
    assert f.signature_algorithm == "ecdsa-with-SHA256"       # signed by the EC intermediate
    assert not f.is_ca and not f.self_signed
    assert f.key_usage == ("digital_signature", "key_encipherment")
    assert f.extended_key_usage == ("serverAuth", "clientAuth")
    assert f.authority_key_id == parse_certificate(ca.der).subject_key_id != ""


def test_root_is_ca_and_self_signed() -> None:
    f = parse_certificate(root_ca(key_kind="rsa").der)
    assert f.is_ca and f.self_signed
    assert f.signature_algorithm == "sha256WithRSAEncryption"
    assert f.key_usage == ("key_cert_sign", "crl_sign")


def test_self_issued_but_signed_by_another_key_is_not_self_signed() -> None:
    other = root_ca("Other")
    # subject == issuer, but the signature is made with another CA's key
    f = parse_certificate(issue("Same Name", issuer=other, issuer_name=dn("Same Name")).der)
    assert f.subject == f.issuer and not f.self_signed


@pytest.mark.parametrize("kind,expect", [
    ("ec", ("EC", 256, "secp256r1")),
    ("ec384", ("EC", 384, "secp384r1")),
    ("ed25519", ("Ed25519", 256, "")),
])
def test_key_types(kind: str, expect: tuple[str, int, str]) -> None:
    f = parse_certificate(root_ca(key_kind=kind).der)
    assert (f.key_type, f.key_size, f.key_curve) == expect
    assert f.self_signed
    if kind == "ed25519":
        assert f.signature_algorithm == "ed25519"


def test_ed448_and_dsa_keys() -> None:
    signer = root_ca()
    f = parse_certificate(issue("ed448", issuer=signer, key=ed448.Ed448PrivateKey.generate()).der)
    assert (f.key_type, f.key_size) == ("Ed448", 456)
    f = parse_certificate(issue("dsa", issuer=signer, key=dsa.generate_private_key(1024)).der)
    assert (f.key_type, f.key_size) == ("DSA", 1024)


def test_certificate_without_extensions() -> None:
    f = parse_certificate(issue("old v1 style", key_ids=False).der)
    assert f.sans == () and f.key_usage == () and f.extended_key_usage == ()
    assert f.subject_key_id == "" and f.authority_key_id == ""
    assert not f.is_ca and f.self_signed


def test_malformed_extension_skips_only_that_field() -> None:
    key = new_key()
    b = (
        x509.CertificateBuilder().subject_name(dn("odd")).issuer_name(dn("odd")).public_key(key.public_key())
        .serial_number(7).not_valid_before(T0).not_valid_after(T0 + dt.timedelta(days=1))
        .add_extension(x509.UnrecognizedExtension(ExtensionOID.KEY_USAGE, b"\x01\x02"), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("odd.example")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, x509.ObjectIdentifier("1.2.3.4")]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier(b"\x01\x02\x03"), critical=False)
    )
    der = b.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)
    with pytest.raises(Exception):
        x509.load_der_x509_certificate(der).extensions      # cryptography refuses the whole list
    f = parse_certificate(der)
    assert f.key_usage == ()
    assert f.sans == (("dns", "odd.example"),)
    assert f.is_ca
    assert f.extended_key_usage == ("clientAuth", "1.2.3.4")
    assert f.subject_key_id == "010203"


def test_negative_serial() -> None:
    der = issue("neg", serial=0x1234567890).der
    i = der.find(bytes.fromhex("02051234567890"))
    neg = der[:i + 2] + b"\x92" + der[i + 3:]          # same length, sign bit set
    f = parse_certificate(neg)
    assert f.serial == "-6dcba98770"
    assert f.subject == "CN=neg"


@pytest.mark.parametrize("der", [b"", b"not a certificate", b"\x30\x03\x02\x01\x01", b"\x30\x82\xff\xff"])
def test_garbage_raises_invalid_input(der: bytes) -> None:
    with pytest.raises(InvalidInput, match="not a parseable X.509 certificate"):
        parse_certificate(der)


def test_undecodable_name_is_shown_as_hex_and_the_rest_is_read() -> None:
    der = issue("zzzzqq", key_ids=False, sans=[x509.DNSName("still.example")]).der
    i = der.find(b"zzzzqq")                             # the issuer's UTF8String comes first
    bad = der[:i] + b"\xff\xfe" + der[i + 2:]           # invalid UTF-8
    f = parse_certificate(bad)
    assert f.issuer.startswith("#30") and "fffe" in f.issuer
    assert f.subject == "CN=zzzzqq"
    assert f.sans == (("dns", "still.example"),)
    assert not f.self_signed
