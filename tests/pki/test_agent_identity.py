"""The agent's identity on disk, the renewal decision and the crash-safe swap."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from agent.errors import AgentError, IdentityError
from agent.identity import (
    NOT_ENROLLED,
    AgentIdentity,
    load_identity,
    make_key_and_csr,
    needs_renewal,
    renewal_due_at,
    save_identity,
)
from collector.pki import CollectorCA

AGENT_ID = "0b7e2d4c-1a3f-4c5e-8d9a-6f1e2b3c4d5e"
ENDPOINT = "collector.example.org:7443"
T0 = dt.datetime(2030, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


# -- needs_renewal: a pure function with an injected clock ---------------------


def test_renewal_at_two_thirds_of_the_lifetime() -> None:
    nb, na = T0, T0 + dt.timedelta(days=30)
    due = nb + dt.timedelta(days=20)
    assert renewal_due_at(nb, na) == due
    assert not needs_renewal(nb, na, due - dt.timedelta(seconds=1))
    assert needs_renewal(nb, na, due)
    assert needs_renewal(nb, na, na + dt.timedelta(days=1))  # expired: certainly
    assert not needs_renewal(nb, na, nb - dt.timedelta(days=1))


def test_renewal_when_less_than_seven_days_left() -> None:
    nb, na = T0, T0 + dt.timedelta(days=12)  # two thirds = day 8, seven days left = day 5
    assert renewal_due_at(nb, na) == T0 + dt.timedelta(days=5)
    assert not needs_renewal(nb, na, T0 + dt.timedelta(days=5) - dt.timedelta(seconds=1))
    assert needs_renewal(nb, na, T0 + dt.timedelta(days=5))


def test_renewal_of_a_long_certificate() -> None:
    nb, na = T0, T0 + dt.timedelta(days=365)
    assert not needs_renewal(nb, na, T0 + dt.timedelta(days=243))
    assert needs_renewal(nb, na, T0 + dt.timedelta(days=243, hours=8))


def test_renewal_edge_cases() -> None:
    assert needs_renewal(T0, T0, T0 - dt.timedelta(days=1))  # empty lifetime
    naive = T0.replace(tzinfo=None)
    assert needs_renewal(naive, naive + dt.timedelta(days=3), naive)  # < 7 days from the start
    assert needs_renewal(T0, T0 + dt.timedelta(days=30), (T0 + dt.timedelta(days=21)).astimezone(
        dt.timezone(dt.timedelta(hours=-5))))


# -- keys and requests -----------------------------------------------------------


@pytest.mark.parametrize("kind, cls, size", [
    ("ec-p256", ec.EllipticCurvePrivateKey, 256), ("ec-p384", ec.EllipticCurvePrivateKey, 384),
    ("rsa-2048", rsa.RSAPrivateKey, 2048),
])
def test_make_key_and_csr(kind: str, cls: type, size: int) -> None:
    key, der = make_key_and_csr(kind)
    assert isinstance(key, cls) and key.key_size == size
    csr = x509.load_der_x509_csr(der)
    assert csr.is_signature_valid and csr.public_key() == key.public_key()


def test_unknown_key_kind() -> None:
    with pytest.raises(IdentityError, match="unknown key kind"):
        make_key_and_csr("dsa-1024")


# -- save and load ------------------------------------------------------------------


def enroll(ca: CollectorCA, directory: Path, now: dt.datetime, agent_id: str = AGENT_ID,
           lifetime: dt.timedelta = dt.timedelta(days=30)) -> tuple[AgentIdentity, x509.Certificate]:
    key, csr = make_key_and_csr()
    cert = ca.issue_agent_certificate(csr, agent_id, now, lifetime=lifetime)
    ident = save_identity(directory, key, cert.public_bytes(serialization.Encoding.DER), [ca.cert_der],
                          agent_id, ENDPOINT, now=now)
    return ident, cert


def test_not_enrolled(tmp_path: Path) -> None:
    for d in (tmp_path / "identity", tmp_path):
        with pytest.raises(IdentityError) as err:
            load_identity(d)
        assert str(err.value) == NOT_ENROLLED
        assert "certfleet-agent enroll" in str(err.value)
        assert isinstance(err.value, AgentError)


def test_save_and_load(ca: CollectorCA, tmp_path: Path, now: dt.datetime) -> None:
    d = tmp_path / "identity"
    ident, cert = enroll(ca, d, now)
    assert sorted(p.name for p in d.iterdir()) == ["agent.key", "agent.pem", "ca.pem", "collector.json"]
    assert stat.S_IMODE((d / "agent.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(d.stat().st_mode) == 0o700

    loaded = load_identity(d)
    assert loaded == ident
    assert loaded.agent_id == AGENT_ID and loaded.endpoint == ENDPOINT
    assert loaded.key_path == d / "agent.key" and loaded.cert_path == d / "agent.pem"
    assert loaded.not_after == cert.not_valid_after_utc and loaded.not_before == cert.not_valid_before_utc
    assert loaded.serial == format(cert.serial_number, "x")
    assert loaded.enrolled_at == now
    assert loaded.ca_pem == ca.cert_pem
    assert x509.load_pem_x509_certificates(loaded.cert_chain_pem) == [cert]
    key = serialization.load_pem_private_key(loaded.key_pem, None)
    assert key.public_key() == cert.public_key()
    assert "PRIVATE" not in repr(loaded)  # the key stays out of logs
    assert not loaded.needs_renewal(now) and loaded.needs_renewal(now + dt.timedelta(days=21))
    meta = json.loads((d / "collector.json").read_text())
    assert meta == {"agent_id": AGENT_ID, "endpoint": ENDPOINT, "enrolled_at": now.isoformat(),
                    "ca_fingerprint_sha256": ca.fingerprint_sha256}


def test_save_refuses_what_does_not_belong_together(ca: CollectorCA, tmp_path: Path, now: dt.datetime) -> None:
    d = tmp_path / "identity"
    key, csr = make_key_and_csr()
    cert_der = ca.issue_agent_certificate(csr, AGENT_ID, now).public_bytes(serialization.Encoding.DER)
    other_key, _ = make_key_and_csr()
    other_ca = CollectorCA.load_or_create(tmp_path / "other", now)
    with pytest.raises(IdentityError, match="not for this agent's key"):
        save_identity(d, other_key, cert_der, [ca.cert_der], AGENT_ID, ENDPOINT)
    with pytest.raises(IdentityError, match="does not name agent"):
        save_identity(d, key, cert_der, [ca.cert_der], "someone-else", ENDPOINT)
    with pytest.raises(IdentityError, match="not signed by the collector CA"):
        save_identity(d, key, cert_der, [other_ca.cert_der], AGENT_ID, ENDPOINT)
    with pytest.raises(IdentityError, match="no CA certificate"):
        save_identity(d, key, cert_der, [], AGENT_ID, ENDPOINT)
    with pytest.raises(IdentityError, match="not a valid DER"):
        save_identity(d, key, b"junk", [ca.cert_der], AGENT_ID, ENDPOINT)
    assert not d.exists()  # nothing written


def test_renewal_replaces_the_pair_and_keeps_enrolled_at(ca: CollectorCA, tmp_path: Path, now: dt.datetime) -> None:
    d = tmp_path / "identity"
    first, _ = enroll(ca, d, now)
    later = now + dt.timedelta(days=21)
    second, cert2 = enroll(ca, d, later)
    assert second.serial != first.serial and second.key_pem != first.key_pem
    assert load_identity(d).serial == format(cert2.serial_number, "x")
    meta = json.loads((d / "collector.json").read_text())
    assert meta["enrolled_at"] == now.isoformat() and meta["renewed_at"] == later.isoformat()
    assert sorted(p.name for p in d.iterdir()) == ["agent.key", "agent.pem", "ca.pem", "collector.json"]


def test_group_readable_agent_key_is_refused(ca: CollectorCA, tmp_path: Path, now: dt.datetime) -> None:
    d = tmp_path / "identity"
    enroll(ca, d, now)
    os.chmod(d / "agent.key", 0o640)
    with pytest.raises(IdentityError, match="chmod 600"):
        load_identity(d)


def test_inconsistent_files_are_reported(ca: CollectorCA, tmp_path: Path, now: dt.datetime) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    enroll(ca, a, now)
    enroll(ca, b, now, agent_id="other-agent")
    shutil.copy(b / "agent.key", a / "agent.key")  # the wrong key
    with pytest.raises(IdentityError, match="do not belong together"):
        load_identity(a)
    shutil.copy(b / "agent.pem", a / "agent.pem")  # right pair, but collector.json names another agent
    with pytest.raises(IdentityError, match=f"agent {AGENT_ID}"):
        load_identity(a)
    (a / "agent.pem").unlink()
    with pytest.raises(IdentityError, match=r"incomplete \(missing agent.pem\)"):
        load_identity(a)
    (b / "collector.json").write_text("{not json")
    with pytest.raises(IdentityError, match="not valid JSON"):
        load_identity(b)
    (b / "collector.json").unlink()
    with pytest.raises(IdentityError, match=r"incomplete \(missing collector.json\)"):
        load_identity(b)


# -- crash safety of the renewal swap ----------------------------------------------


def _renewal_files(ca: CollectorCA, d: Path, now: dt.datetime) -> tuple[bytes, bytes, x509.Certificate]:
    """What a renewal would write as agent.key.new / agent.pem.new."""
    key, csr = make_key_and_csr()
    cert = ca.issue_agent_certificate(csr, AGENT_ID, now + dt.timedelta(days=20))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM), cert


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    os.chmod(path, 0o600)


def test_crash_before_the_new_pair_is_complete_keeps_the_old_identity(
    ca: CollectorCA, tmp_path: Path, now: dt.datetime
) -> None:
    d = tmp_path / "identity"
    old, _ = enroll(ca, d, now)
    key_pem, _, _ = _renewal_files(ca, d, now)
    _write_private(d / "agent.key.new", key_pem)  # crashed before agent.pem.new
    loaded = load_identity(d)
    assert loaded.serial == old.serial and loaded.key_path == d / "agent.key"


def test_crash_with_a_complete_new_pair_prefers_it_and_finishes_the_swap(
    ca: CollectorCA, tmp_path: Path, now: dt.datetime
) -> None:
    d = tmp_path / "identity"
    enroll(ca, d, now)
    key_pem, cert_pem, cert = _renewal_files(ca, d, now)
    _write_private(d / "agent.key.new", key_pem)
    (d / "agent.pem.new").write_bytes(cert_pem)
    loaded = load_identity(d)
    assert loaded.serial == format(cert.serial_number, "x")
    assert loaded.key_pem == key_pem
    assert loaded.key_path == d / "agent.key" and loaded.cert_path == d / "agent.pem"
    assert not (d / "agent.key.new").exists() and not (d / "agent.pem.new").exists()
    assert (d / "agent.key").read_bytes() == key_pem and (d / "agent.pem").read_bytes() == cert_pem
    assert load_identity(d) == loaded


def test_crash_between_the_two_renames(ca: CollectorCA, tmp_path: Path, now: dt.datetime) -> None:
    d = tmp_path / "identity"
    enroll(ca, d, now)
    key_pem, cert_pem, cert = _renewal_files(ca, d, now)
    _write_private(d / "agent.key", key_pem)  # key.new already renamed over agent.key
    (d / "agent.pem.new").write_bytes(cert_pem)
    loaded = load_identity(d)
    assert loaded.serial == format(cert.serial_number, "x")
    assert (d / "agent.pem").read_bytes() == cert_pem and not (d / "agent.pem.new").exists()


def test_stale_or_corrupt_new_files_are_ignored(ca: CollectorCA, tmp_path: Path, now: dt.datetime) -> None:
    d = tmp_path / "identity"
    old, _ = enroll(ca, d, now)
    _, cert_pem, _ = _renewal_files(ca, d, now)
    (d / "agent.pem.new").write_bytes(cert_pem)  # its key never made it
    assert load_identity(d).serial == old.serial
    _write_private(d / "agent.key.new", b"half a key")
    assert load_identity(d).serial == old.serial
    (d / "agent.pem.new").write_bytes(b"-----BEGIN CERT")
    assert load_identity(d).serial == old.serial


def test_crash_after_metadata_of_a_re_enrollment_keeps_a_consistent_identity(
    ca: CollectorCA, tmp_path: Path, now: dt.datetime
) -> None:
    """A .new pair for a different agent id than collector.json names is not used."""
    d = tmp_path / "identity"
    old, _ = enroll(ca, d, now)
    key, csr = make_key_and_csr()
    cert = ca.issue_agent_certificate(csr, "new-agent-id", now)
    _write_private(d / "agent.key.new", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (d / "agent.pem.new").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    loaded = load_identity(d)  # collector.json still names the old agent
    assert loaded.agent_id == AGENT_ID and loaded.serial == old.serial
