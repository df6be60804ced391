"""Keys and CSRs made on the host for service certificates."""
from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from agent.errors import KeySpecError
from agent.keys import (
    KEY_SPECS, PKCS8, TRADITIONAL, key_spec_of, load_pem_private_key, make_csr, new_key, normalize_spec,
    pem_key_style, private_key_pem, same_public_key,
)


@pytest.mark.parametrize("spec", KEY_SPECS)
def test_every_key_spec(spec: str) -> None:
    key = new_key(spec)
    assert key_spec_of(key) == spec
    assert isinstance(key, rsa.RSAPrivateKey if spec.startswith("rsa") else ec.EllipticCurvePrivateKey)


@pytest.mark.parametrize("text,spec", [
    ("RSA2048", "rsa-2048"), ("rsa:4096", "rsa-4096"), ("ec-p-256", "ec-p256"), ("ecdsa-p384", "ec-p384"),
    ("P-256", "ec-p256"), ("secp384r1", "ec-p384"), ("prime256v1", "ec-p256"),
])
def test_spec_spellings(text: str, spec: str) -> None:
    assert normalize_spec(text) == spec


@pytest.mark.parametrize("bad", ["rsa-1024", "ec-p521", "ed25519", "", "dsa"])
def test_unknown_specs_are_refused(bad: str) -> None:
    with pytest.raises(KeySpecError, match="use one of rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384"):
        new_key(bad)


def test_csr_carries_every_name_in_the_san(tmp_path: Path) -> None:
    key = new_key("ec-p256")
    der = make_csr(key, "www.example.test", ["www.example.test", "example.test", "example.test"],
                   ["192.0.2.10", "2001:db8::1"])
    csr = x509.load_der_x509_csr(der)
    assert csr.is_signature_valid and same_public_key(key, csr.public_key())
    assert csr.subject.rfc4514_string() == "CN=www.example.test"
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["www.example.test", "example.test"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.0.2.10"),
                                                       ipaddress.ip_address("2001:db8::1")]
    # openssl agrees
    (tmp_path / "req.der").write_bytes(der)
    out = subprocess.run(["openssl", "req", "-inform", "DER", "-in", str(tmp_path / "req.der"), "-noout", "-verify",
                          "-text"], capture_output=True, text=True)
    assert out.returncode == 0 and "DNS:example.test" in out.stdout and "IP Address:2001:DB8" in out.stdout


def test_csr_needs_a_name() -> None:
    with pytest.raises(KeySpecError, match="needs a common name or at least one DNS name"):
        make_csr(new_key("ec-p256"), None)
    with pytest.raises(KeySpecError, match="not an IP address"):
        make_csr(new_key("ec-p256"), "x", [], ["not-an-ip"])


@pytest.mark.parametrize("style,encrypted,head", [
    (PKCS8, False, b"-----BEGIN PRIVATE KEY-----"),
    (PKCS8, True, b"-----BEGIN ENCRYPTED PRIVATE KEY-----"),
    (TRADITIONAL, False, b"-----BEGIN RSA PRIVATE KEY-----"),
    (TRADITIONAL, True, b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED"),
])
def test_key_serialisation_styles(tmp_path: Path, style: str, encrypted: bool, head: bytes) -> None:
    key = new_key("rsa-2048")
    password = "pa$$ word@`x`" if encrypted else None
    pem = private_key_pem(key, style, password)
    assert pem.startswith(head) and pem_key_style(pem) == (style, encrypted)
    assert same_public_key(load_pem_private_key(pem, password), key.public_key())
    # openssl reads it with the password given as a file (never on a command line)
    (tmp_path / "k.pem").write_bytes(pem)
    (tmp_path / "pw").write_text(password or "")
    args = ["openssl", "pkey", "-in", str(tmp_path / "k.pem"), "-noout"]
    if encrypted:
        args += ["-passin", f"file:{tmp_path / 'pw'}"]
    assert subprocess.run(args, capture_output=True).returncode == 0
