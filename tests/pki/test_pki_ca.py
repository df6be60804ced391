"""The collector CA on disk and the collector's TLS server identity."""
from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from collector.errors import CollectorError, PKIError
from collector.pki import CollectorCA, write_private_file


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the CA --------------------------------------------------------------------


def test_ca_is_created_with_the_right_shape(ca: CollectorCA, ca_dir: Path, now: dt.datetime) -> None:
    cert = ca.certificate
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name in ("secp256r1", "secp384r1")
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "certfleet collector CA"
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    lifetime = cert.not_valid_after_utc - now
    assert dt.timedelta(days=3640) < lifetime <= dt.timedelta(days=3651)
    assert cert.not_valid_before_utc <= now
    cert.verify_directly_issued_by(cert)  # self-signed, signature good

    assert mode(ca_dir / "ca.key") == 0o600
    assert (ca_dir / "ca.pem").read_bytes() == ca.cert_pem
    assert sorted(p.name for p in ca_dir.iterdir()) == ["ca.key", "ca.pem"]  # no temp files left


def test_fingerprint_and_encodings(ca: CollectorCA) -> None:
    assert ca.cert_der == ca.certificate.public_bytes(serialization.Encoding.DER)
    assert ca.fingerprint_sha256 == hashlib.sha256(ca.cert_der).hexdigest()
    assert ca.fingerprint_sha256 == ca.fingerprint_sha256.lower() and len(ca.fingerprint_sha256) == 64
    assert x509.load_pem_x509_certificate(ca.cert_pem) == ca.certificate


def test_custom_common_name(tmp_path: Path, now: dt.datetime) -> None:
    ca = CollectorCA.load_or_create(tmp_path / "x", now, common_name="ACME fleet CA")
    assert ca.certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "ACME fleet CA"


def test_reload_gives_the_same_ca(ca: CollectorCA, ca_dir: Path, now: dt.datetime) -> None:
    key_before = (ca_dir / "ca.key").read_bytes()
    again = CollectorCA.load_or_create(ca_dir, now + dt.timedelta(days=400))
    assert again.fingerprint_sha256 == ca.fingerprint_sha256
    assert (ca_dir / "ca.key").read_bytes() == key_before
    # the reloaded CA signs with the same key
    cert, _ = again.issue_admin_certificate("alice", "auditor", now)
    assert ca.issued(cert)


def test_group_readable_ca_key_is_refused(ca_dir: Path, ca: CollectorCA, now: dt.datetime) -> None:
    os.chmod(ca_dir / "ca.key", 0o640)
    with pytest.raises(PKIError, match=r"mode 0640.*chmod 600") as err:
        CollectorCA.load_or_create(ca_dir, now)
    assert isinstance(err.value, CollectorError)
    assert "PRIVATE KEY" not in str(err.value)
    os.chmod(ca_dir / "ca.key", 0o604)
    with pytest.raises(PKIError, match="mode 0604"):
        CollectorCA.load_or_create(ca_dir, now)
    os.chmod(ca_dir / "ca.key", 0o600)
    assert CollectorCA.load_or_create(ca_dir, now).fingerprint_sha256 == ca.fingerprint_sha256


def test_half_a_ca_is_not_silently_replaced(ca_dir: Path, ca: CollectorCA, now: dt.datetime) -> None:
    (ca_dir / "ca.pem").unlink()
    with pytest.raises(PKIError, match="ca.pem is missing"):
        CollectorCA.load_or_create(ca_dir, now)
    assert (ca_dir / "ca.key").exists()


def test_key_that_does_not_match_the_certificate_is_refused(tmp_path: Path, now: dt.datetime) -> None:
    a = CollectorCA.load_or_create(tmp_path / "a", now)
    CollectorCA.load_or_create(tmp_path / "b", now)
    (tmp_path / "b" / "ca.pem").write_bytes(a.cert_pem)
    with pytest.raises(PKIError, match="does not belong"):
        CollectorCA.load_or_create(tmp_path / "b", now)


def test_corrupt_key_file_gives_a_clear_error(ca_dir: Path, ca: CollectorCA, now: dt.datetime) -> None:
    write_private_file(ca_dir / "ca.key", b"not a key")
    with pytest.raises(PKIError, match="not an unencrypted PEM private key"):
        CollectorCA.load_or_create(ca_dir, now)


def test_expired_ca_is_refused(ca_dir: Path, ca: CollectorCA, now: dt.datetime) -> None:
    with pytest.raises(PKIError, match="expired"):
        CollectorCA.load_or_create(ca_dir, now + dt.timedelta(days=3660))


def test_write_private_file_is_atomic_and_private(tmp_path: Path) -> None:
    target = tmp_path / "k"
    old_umask = os.umask(0)  # even with a permissive umask the file is 0600
    try:
        write_private_file(target, b"one")
        assert mode(target) == 0o600 and target.read_bytes() == b"one"
        os.chmod(target, 0o644)
        write_private_file(target, b"two")
        assert mode(target) == 0o600 and target.read_bytes() == b"two"
    finally:
        os.umask(old_umask)
    with pytest.raises(FileExistsError):
        write_private_file(target, b"three", replace=False)
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


# -- the server identity ---------------------------------------------------------


def _sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (set(san.get_values_for_type(x509.DNSName)),
            {str(ip) for ip in san.get_values_for_type(x509.IPAddress)})


def test_server_identity_is_a_chain_with_sans(
    ca: CollectorCA, ca_dir: Path, now: dt.datetime
) -> None:
    cert_path, key_path = ca.server_identity(
        ca_dir, ["collector.example.org", "LOCALHOST", "127.0.0.1", "::1", "localhost"], now
    )
    assert cert_path == ca_dir / "server.pem" and key_path == ca_dir / "server.key"
    assert mode(key_path) == 0o600
    chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    assert len(chain) == 2 and chain[1] == ca.certificate
    leaf = chain[0]
    assert ca.issued(leaf)
    assert _sans(leaf) == ({"collector.example.org", "localhost"}, {"127.0.0.1", "::1"})
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert key.public_key() == leaf.public_key()


def test_server_identity_is_reused_while_good(
    ca: CollectorCA, ca_dir: Path, now: dt.datetime
) -> None:
    names = ["localhost", "127.0.0.1"]
    cert_path, key_path = ca.server_identity(ca_dir, names, now)
    first = (cert_path.read_bytes(), key_path.read_bytes())
    ca.server_identity(ca_dir, ["127.0.0.1", "localhost", "localhost."], now + dt.timedelta(days=300))
    assert (cert_path.read_bytes(), key_path.read_bytes()) == first


def test_server_identity_renews_when_names_change(
    ca: CollectorCA, ca_dir: Path, now: dt.datetime
) -> None:
    cert_path, key_path = ca.server_identity(ca_dir, ["localhost"], now)
    first_key = key_path.read_bytes()
    ca.server_identity(ca_dir, ["localhost", "10.0.0.7"], now)
    leaf = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
    assert _sans(leaf) == ({"localhost"}, {"10.0.0.7"})
    assert key_path.read_bytes() != first_key


def test_server_identity_renews_within_30_days_of_expiry(
    ca: CollectorCA, ca_dir: Path, now: dt.datetime
) -> None:
    cert_path, _ = ca.server_identity(ca_dir, ["localhost"], now)
    first = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
    later = first.not_valid_after_utc - dt.timedelta(days=31)
    ca.server_identity(ca_dir, ["localhost"], later)
    assert x509.load_pem_x509_certificates(cert_path.read_bytes())[0] == first
    later = first.not_valid_after_utc - dt.timedelta(days=29)
    ca.server_identity(ca_dir, ["localhost"], later)
    renewed = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
    assert renewed != first and renewed.not_valid_after_utc > first.not_valid_after_utc


def test_server_identity_replaced_when_key_and_cert_disagree(
    ca: CollectorCA, ca_dir: Path, now: dt.datetime
) -> None:
    cert_path, key_path = ca.server_identity(ca_dir, ["localhost"], now)
    other = ec.generate_private_key(ec.SECP256R1())
    write_private_file(key_path, other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ca.server_identity(ca_dir, ["localhost"], now)
    leaf = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert key.public_key() == leaf.public_key()


def test_server_identity_from_another_ca_is_replaced(tmp_path: Path, now: dt.datetime) -> None:
    a = CollectorCA.load_or_create(tmp_path / "a", now)
    b = CollectorCA.load_or_create(tmp_path / "b", now)
    cert_path, _ = a.server_identity(tmp_path / "srv", ["localhost"], now)
    b.server_identity(tmp_path / "srv", ["localhost"], now)
    chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    assert chain[1] == b.certificate and b.issued(chain[0])


def test_server_key_readable_by_others_is_refused(
    ca: CollectorCA, ca_dir: Path, now: dt.datetime
) -> None:
    _, key_path = ca.server_identity(ca_dir, ["localhost"], now)
    os.chmod(key_path, 0o644)
    with pytest.raises(PKIError, match="chmod 600"):
        ca.server_identity(ca_dir, ["localhost"], now)


@pytest.mark.parametrize("names", [[], ["", "  "], ["not a name!"], ["under_score.example"]])
def test_server_identity_rejects_bad_names(ca: CollectorCA, ca_dir: Path, now: dt.datetime, names: list[str]) -> None:
    with pytest.raises(PKIError):
        ca.server_identity(ca_dir, names, now)


def test_ipv6_and_ipv4_are_ip_sans(ca: CollectorCA, ca_dir: Path, now: dt.datetime) -> None:
    cert_path, _ = ca.server_identity(ca_dir, ["[2001:db8::1]", "192.0.2.1"], now)
    leaf = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
    ips = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.IPAddress)
    assert set(ips) == {ipaddress.ip_address("2001:db8::1"), ipaddress.ip_address("192.0.2.1")}


def test_unwritable_directory_gives_a_clear_error(tmp_path: Path, now: dt.datetime) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(PKIError, match="cannot create the collector CA"):
        CollectorCA.load_or_create(blocker / "pki", now)


def test_concurrent_creators_end_with_one_ca(tmp_path: Path, now: dt.datetime) -> None:
    """Collectors starting at once on one directory: the CA key is published
    without clobbering, so every one that succeeds has the same CA."""
    import threading

    d = tmp_path / "pki"
    barrier = threading.Barrier(8)
    results: list[str] = []
    errors: list[PKIError] = []

    def start() -> None:
        barrier.wait()
        try:
            results.append(CollectorCA.load_or_create(d, now).fingerprint_sha256)
        except PKIError as e:
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results and len(results) + len(errors) == 8
    final = CollectorCA.load_or_create(d, now).fingerprint_sha256
    assert set(results) == {final}
    for e in errors:  # the losers are told to retry, not handed a different CA
        assert "another collector is starting" in str(e) or "is missing" in str(e)
